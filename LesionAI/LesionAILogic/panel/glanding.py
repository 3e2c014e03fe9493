"""The gland section: segment the prostate gland (a ``lesionai gland`` job), its volume, PSA and PSA density."""

from __future__ import annotations

from ..gland import SceneGland
from .views import GlandView


class GlandSection:
    """The TAPS gland of the shown T2: see :mod:`LesionAILogic.panel.controller` for the calling convention."""

    def __init__(self, panel):
        self.panel = panel
        self.status = ""
        self.progress = 0
        self._scene_gland = None

    @property
    def _gland(self) -> SceneGland:
        if self._scene_gland is None:
            self._scene_gland = SceneGland(self.panel.logic.scene, self.panel.logic.jobs)
        return self._scene_gland

    def segment(self) -> None:
        """Segment the gland of the shown T2 in a separate process, or cancel the running segmentation."""
        running = self.panel.job("gland")
        if running is not None:
            running.cancel()
            self.status = "Cancelling the gland segmentation…"
            return
        state = self.panel.state
        if not state.t2Volume or not self.panel.dependenciesReady():
            return
        shown = self._gland.glandOf(state.t2Volume)
        psa = shown.psaNgMl if shown is not None else None
        job = self.panel.attempt(
            "Cannot segment the gland", self._gland.startGlandSegmentation, state.t2Volume, psa, state.device
        )
        if job is not None:
            self.panel.startJob("gland", job, state.t2Volume)
            self.progress = 0
            self.status = "Segmenting the prostate gland…"

    def glandFinished(self, job, t2) -> None:
        state = job.state
        self.progress = int(100 * state.fraction)
        if not state.finished:
            return
        if state.status == "finished":
            gland = self._gland.loadGlandJobResult(job, t2)
            self.status = f"Prostate gland: {gland.volumeMl:.1f} ml ({gland.modelName})"
        elif state.status == "cancelled":
            self.status = "Gland segmentation cancelled."
        else:
            self.status = f"Gland segmentation failed: {state.error}"
            self.panel.host.showError(self.status)
        self.panel.logic.removeJobFolder(job)

    def setPsa(self, psa: float) -> None:
        """The patient's serum PSA in ng/ml (0: not known); the PSA density follows."""
        t2 = self.panel.state.t2Volume
        if t2 is not None:
            self.panel.attempt("Cannot set the PSA", self._gland.setPsa, t2, psa if psa > 0 else None)

    def view(self) -> GlandView:
        state = self.panel.state
        running = self.panel.job("gland") is not None
        gland = self._gland.glandOf(state.t2Volume) if state.t2Volume else None
        view = GlandView(
            segmentEnabled=bool(state.t2Volume) or running,
            segmentLabel="Cancel" if running else "Segment gland",
            running=running,
            progress=self.progress,
            status=self.status,
        )
        if gland is not None:
            view.volume = f"{gland.volumeMl:.1f} ml"
            view.psa = gland.psaNgMl or 0.0
            view.psaDensity = "–" if gland.psaDensityNgMl2 is None else f"{gland.psaDensityNgMl2:.3f} ng/ml²"
            view.warnings = list(gland.warnings)
        return view

"""The abnormality section: the synthesis model, the map layer beside the heatmap, the box viewer at the cursor."""

from __future__ import annotations

import os
from pathlib import Path

from LesionAILib.models.bundled import SYNTHESIS_PROSTATEX_MODEL as BUNDLED_SYNTHESIS_MODEL

from ..abnormality import MODEL_NAME_ATTRIBUTE
from .views import AbnormalityView

ROLE_LABELS = {"t2w": "T2", "adc": "ADC", "hbv": "high-b"}


def _ras(point) -> str:
    return "(" + ", ".join(f"{float(v):.1f}" for v in point) + ")"


class AbnormalitySection:
    """What a reader does with the abnormality map: see :mod:`LesionAILogic.panel.controller` for the calling
    convention. The map comes with an analysis run with "Analyze with abnormality map" (the analysis job gets
    ``--abnormality``); the viewer runs ``lesionai synthesis-view`` as a job (torch never loads in Slicer)."""

    def __init__(self, panel):
        self.panel = panel
        self.status = ""
        self.viewStatus = ""
        self.viewPng = ""
        self._viewFolder = None  # the job folder holding viewPng (removed when the next view replaces it)
        self._applied = None  # (node id, visible, opacity) last pushed to the slice views
        self.bundledModel: Path | None = BUNDLED_SYNTHESIS_MODEL if BUNDLED_SYNTHESIS_MODEL.is_file() else None

    # ------------------------------------------------------------------ the model and the analysis option
    def chooseModel(self, path: str) -> None:
        """Use the synthesis model file ``path`` ("" for none)."""
        self.panel.state.synthesisModel = str(path or "")

    def modelPath(self) -> str:
        """The chosen synthesis model file, else the bundled one ("" when neither)."""
        return self.panel.state.synthesisModel or (str(self.bundledModel) if self.bundledModel else "")

    def modelAvailable(self) -> bool:
        return os.path.isfile(self.modelPath())

    def analysisModel(self) -> str | None:
        """The synthesis model the analysis job gets (``--abnormality``), or ``None`` (option off or no model)."""
        return self.modelPath() if self.panel.state.analyzeWithAbnormality and self.modelAvailable() else None

    # ------------------------------------------------------------------ the layer
    def resultLoaded(self, folder, t2) -> None:
        """An analysis result of ``t2`` was loaded from ``folder``: load its abnormality map, or drop a stale one."""
        self._applied = None
        if not self.panel.logic.hasAbnormalityMap(folder):
            self.panel.logic.removeAbnormalityMap(t2)
            self.status = "" if self.analysisModel() is None else "This analysis wrote no abnormality map."
        elif self.panel.attempt("Cannot load the abnormality map", self.panel.logic.loadAbnormalityMap, folder, t2):
            model = self.panel.logic.abnormalityNode(t2).GetAttribute(MODEL_NAME_ATTRIBUTE) or "unnamed model"
            self.status = f"Abnormality map (synthesis) loaded — {model}"
        self.applyDisplay()

    def applyDisplay(self) -> None:
        """Push visibility and opacity to the slice views when they (or the shown map) changed."""
        state = self.panel.state
        node = self.panel.logic.abnormalityNode(state.t2Volume) if state.t2Volume else None
        wanted = (node.GetID() if node else None, state.abnormalityVisible, state.abnormalityOpacity)
        if wanted != self._applied:
            self._applied = wanted
            if state.t2Volume:
                self.panel.logic.showAbnormality(state.t2Volume, state.abnormalityVisible, state.abnormalityOpacity)

    def toggle(self) -> None:
        self.panel.state.abnormalityVisible = not self.panel.state.abnormalityVisible
        self.applyDisplay()

    # ------------------------------------------------------------------ the box viewer
    def viewAtCursor(self) -> None:
        """Synthesise the hidden box centred at the crosshair (a ``lesionai synthesis-view`` job; a stale one is
        cancelled)."""
        state = self.panel.state
        point = self.panel.logic.cursorPosition()
        if not state.inputsReady():
            self.viewStatus = "Choose the T2, ADC and high-b volumes first."
        elif not self.modelAvailable():
            self.viewStatus = "Choose a synthesis model file first (from `lesionai train-synthesis`)."
        elif point is None:
            self.viewStatus = "Place the cursor first (Shift + move the mouse over a view)."
        elif self.panel.dependenciesReady():
            stale = self.panel.job("synthesis-view")
            if stale is not None:
                stale.cancel(grace_s=0)
                self.panel.jobs.pop("synthesis-view")
            job = self.panel.attempt(
                "Cannot view the box",
                self.panel.logic.startSynthesisView,
                state.roleNodes(),
                point,
                self.modelPath(),
                device=state.device,
            )
            if job is not None:
                self.panel.startJob("synthesis-view", job, point)
                self.viewStatus = f"Synthesising the box at RAS {_ras(point)} mm…"

    def viewFinished(self, job, point) -> None:
        """The viewer job ended: show its PNG and the box's differences (or why there is none)."""
        state = job.state
        if not state.finished:
            return
        if state.status == "finished" and self.panel.logic.synthesisViewPng(job) is not None:
            if self._viewFolder is not None:
                self.panel.logic.jobs.removeFolder(self._viewFolder)
            self._viewFolder, self.viewPng = job.work_folder, str(self.panel.logic.synthesisViewPng(job))
            gaps = ", ".join(f"{ROLE_LABELS.get(r, r)} {v:.2f}" for r, v in state.result["difference"].items())
            z = self.panel.logic.abnormalityAt(self.panel.state.t2Volume, point) if self.panel.state.t2Volume else None
            here = "" if z is None else f"; map z {z:.1f} here"
            self.viewStatus = (
                f"Box at RAS {_ras(point)} mm: mean |real − synthesised| {gaps}{here} — {state.result['model']}"
            )
            return
        if state.status == "failed":
            self.viewStatus = f"Cannot view the box: {state.error}"
        self.panel.logic.removeJobFolder(job)

    # ------------------------------------------------------------------ view
    def view(self) -> AbnormalityView:
        state = self.panel.state
        running = self.panel.job("synthesis-view") is not None
        node = self.panel.logic.abnormalityNode(state.t2Volume) if state.t2Volume else None
        return AbnormalityView(
            modelPath=self.modelPath(),
            modelAvailable=self.modelAvailable(),
            analyzeWithAbnormality=state.analyzeWithAbnormality,
            mapLoaded=node is not None,
            visible=state.abnormalityVisible,
            opacity=state.abnormalityOpacity,
            status=self.status,
            viewEnabled=state.inputsReady() and self.modelAvailable(),
            viewRunning=running,
            viewPng=self.viewPng,
            viewStatus=self.viewStatus,
        )

"""The reading section: load a study, its roles, analyze/cancel, the candidate table, jumping, heatmap, points."""

from __future__ import annotations

import math
import shutil
from pathlib import Path

from LesionAILib.studies.roles import ROLES

from ..display import nodes_of_class
from ..jobs import ANALYSIS_FOLDER
from ..roles import OUTPUT_ATTRIBUTE, ROLE_REASON_ATTRIBUTE
from .views import ReadingView, RoleLine

OPACITY_STEP = 0.1


def _by_probability(rows: list[dict]) -> list[dict]:
    """Highest probability first (NaN last), ties by id."""
    def key(row):
        probability = row.get("probability")
        missing = probability is None or (isinstance(probability, float) and math.isnan(probability))
        return (missing, -(probability or 0.0), int(row["id"]))

    return sorted(rows, key=key)


def _keep_folder(source: Path, target: Path) -> Path:
    """Move ``source`` to ``target``, replacing an earlier ``target`` only once the new one is in place."""
    target.parent.mkdir(parents=True, exist_ok=True)
    earlier = target.with_name(f".{target.name}.replaced")
    shutil.rmtree(earlier, ignore_errors=True)
    if target.exists():
        target.rename(earlier)
    shutil.move(str(source), str(target))
    shutil.rmtree(earlier, ignore_errors=True)
    return target


class ReadingSection:
    """What a reader does: see :mod:`LesionAILogic.panel.controller` for the calling convention."""

    def __init__(self, panel):
        self.panel = panel
        self.status = ""
        self.pointResult = ""
        self.progress = 0
        self._appliedOpacity = None
        # when set, each finished analysis's result folder is kept in resultsFolder/<case id> (the browser page
        # offers it for download) instead of being deleted with the job's folder; keptResult is the last one
        self.resultsFolder: Path | None = None
        self.keptResult: Path | None = None

    @property
    def _logic(self):
        return self.panel.logic

    @property
    def _state(self):
        return self.panel.state

    # ------------------------------------------------------------------ inputs
    def loadStudy(self, folder: str | None = None, files: dict | None = None) -> None:
        """Load the study in ``folder`` (default: the state's study folder), or its per-role image ``files``
        (``{"t2w", "adc", "hbv": path}``: one case of a PI-CAI folder holding several): roles, reading layout,
        status line."""
        if folder is not None:
            self._state.studyFolder = str(folder)
        study = None if files else self._state.studyFolder
        volumes = self.panel.attempt("Cannot load the study", self._logic.loadStudy, study, files=files)
        if volumes is not None:
            self._useVolumes(volumes)
            self.status = f"Loaded {self._state.caseId}."

    def autoAssign(self) -> None:
        """Choose T2/ADC/high-b among the scene's volumes by the engine's role rules."""
        volumes = self.panel.attempt("Cannot assign the roles", self._logic.assignRoles)
        if volumes is not None:
            self._useVolumes(volumes)

    def _useVolumes(self, volumes: dict) -> None:
        state = self._state
        state.t2Volume, state.adcVolume, state.hbvVolume = (volumes[role] for role in ROLES)
        state.caseId = self._logic.suggestedCaseId(volumes["t2w"])
        state.selectedCandidate = 0
        self.showReading(align=True)

    def hiddenInputIds(self) -> list[str]:
        """IDs of volume nodes LesionAI made (heatmaps): never offered as T2/ADC/high-b."""
        nodes = nodes_of_class(self._logic.scene, "vtkMRMLVolumeNode")
        return [node.GetID() for node in nodes if node.GetAttribute(OUTPUT_ATTRIBUTE)]

    # ------------------------------------------------------------------ analysis
    def analyze(self) -> None:
        """Start the analysis of the chosen volumes, or cancel the running one (the same button)."""
        running = self.panel.job("analysis")
        if running is not None:
            running.cancel()
            self.status = "Cancelling the analysis…"
            return
        state = self._state
        if not state.inputsReady() or not self.panel.dependenciesReady():
            return
        job = self.panel.attempt(
            "Cannot start the analysis",
            self._logic.startAnalysis,
            state.t2Volume,
            state.adcVolume,
            state.hbvVolume,
            device=state.device,
            abnormalityModel=self.panel.abnormality.analysisModel(),
        )
        if job is not None:
            self.panel.startJob("analysis", job, state.t2Volume)
            self.progress = 0
            self.status = "Analysis started…"

    def analysisFinished(self, job, t2) -> None:
        """Progress of the analysis job; when it ends, its result (or why there is none)."""
        state = job.state
        self.progress = int(100 * state.fraction)
        if not state.finished:
            if state.status != "cancelling":
                self.status = state.describe()
            return
        self.progress = 100 if state.status == "finished" else self.progress
        if state.status == "cancelled":
            shown = " The previous result is still shown." if self._logic.resultSummary(t2) else ""
            self.status = "Analysis cancelled." + shown
        elif state.status == "failed":
            self.status = f"Analysis failed: {state.error}"
            self.panel.host.showError(f"Analysis failed: {state.error}")
        elif t2.GetScene() is not self._logic.scene:
            self.status = "The analysed T2 volume was removed; the result was not loaded."
        else:
            folder = job.work_folder / ANALYSIS_FOLDER
            if self.resultsFolder is not None:
                kept = Path(self.resultsFolder) / self._logic.suggestedCaseId(t2)
                folder = self.keptResult = _keep_folder(folder, kept)
            previous = self._logic.resultFolder(t2)
            analysis = self._logic.loadAnalysisResult(folder, t2, show=False)
            self.panel.abnormality.resultLoaded(folder, t2)
            rows = self.rows()
            self._state.selectedCandidate = int(rows[0]["id"]) if rows else 0
            self.showReading()
            self.status = f"{len(analysis.candidates)} candidate(s); case score {analysis.caseScore:.2f}"
            if previous is not None and previous.name == ANALYSIS_FOLDER and previous != folder.resolve():
                self._logic.jobs.removeFolder(previous.parent)  # the replaced result's job folder
            if self.resultsFolder is None:
                return  # the shown result stays in its job folder: Export to DICOM reads it
        self._logic.removeJobFolder(job)

    def exportDicom(self, outFolder: str) -> None:
        """Write the shown result as DICOM SEG, Parametric Map and SR into ``outFolder`` (the T2 must be DICOM)."""
        t2 = self._state.t2Volume
        folder = self._logic.resultFolder(t2) if t2 else None
        if folder is None:
            self.status = "Analyze the study first: there is no result to export."
            return
        from ..dicom_export import export_to_dicom  # highdicom: loaded when first exported

        written = self.panel.attempt("Cannot export to DICOM", export_to_dicom, t2, folder, outFolder)
        if written is not None:
            self.status = f"Wrote {len(written)} DICOM object(s) to {outFolder} (SEG, parametric map, SR)."

    # ------------------------------------------------------------------ the candidate table
    def rows(self) -> list[dict]:
        """The T2's candidate table (analysis candidates and classified points), highest probability first."""
        t2 = self._state.t2Volume
        return _by_probability(self._logic.candidateRows(t2)) if t2 else []

    def selectCandidate(self, candidateId: int) -> None:
        """Centre every view on a candidate and highlight its outline."""
        t2 = self._state.t2Volume
        if t2 is None:
            return
        if self.panel.attempt("Cannot show the candidate", self._logic.jumpToCandidate, t2, int(candidateId)):
            self._state.selectedCandidate = int(candidateId)

    def nextCandidate(self, step: int = 1) -> None:
        """Select the next (``step`` 1) or previous (-1) candidate in the table's order, wrapping around."""
        ids = [int(row["id"]) for row in self.rows()]
        if not ids:
            return
        current = self._state.selectedCandidate
        index = ids.index(current) + step if current in ids else (0 if step > 0 else -1)
        self.selectCandidate(ids[index % len(ids)])

    def previousCandidate(self) -> None:
        self.nextCandidate(-1)

    # ------------------------------------------------------------------ heatmap display
    def showReading(self, align: bool = False) -> None:
        """Put the chosen volumes and their heatmaps into the reading views (and apply opacity/threshold)."""
        state = self._state
        if not state.t2Volume:
            return
        volumes = {role: node for role, node in state.roleNodes().items() if node is not None}
        self._appliedOpacity = self.opacityShown()
        self._logic.showReading(volumes, self._appliedOpacity, align=align)
        self._logic.setHeatmapThreshold(state.t2Volume, state.heatmapThreshold)
        self.panel.abnormality.applyDisplay()

    def opacityShown(self) -> float:
        return self._state.heatmapOpacity if self._state.heatmapVisible else 0.0

    def applyDisplay(self) -> None:
        """After a state change: set the heatmap opacity only when it changed, and the threshold."""
        state = self._state
        if self.opacityShown() != self._appliedOpacity:
            self._appliedOpacity = self.opacityShown()
            self._logic.setHeatmapOpacity(self._appliedOpacity)
        if state.t2Volume:
            self._logic.setHeatmapThreshold(state.t2Volume, state.heatmapThreshold)
        self.panel.abnormality.applyDisplay()

    def toggleHeatmap(self) -> None:
        self._state.heatmapVisible = not self._state.heatmapVisible
        self.applyDisplay()

    def increaseOpacity(self, step: float = OPACITY_STEP) -> None:
        self._state.heatmapOpacity = round(min(1.0, max(0.0, self._state.heatmapOpacity + step)), 2)
        self._state.heatmapVisible = True
        self.applyDisplay()

    def decreaseOpacity(self) -> None:
        self.increaseOpacity(-OPACITY_STEP)

    # ------------------------------------------------------------------ point and classify
    def pointsChanged(self) -> None:
        """A point was placed or moved: classify every placed point in a separate process (stale job cancelled)."""
        state = self._state
        points = state.points
        if points is None or points.GetNumberOfControlPoints() == 0:
            return
        if not state.inputsReady():
            self.pointResult = "Choose the T2, ADC and high-b volumes to classify the points."
            return
        if not self.panel.dependenciesReady():
            return
        stale = self.panel.job("points")
        if stale is not None:  # the points changed again: that result would be stale
            stale.cancel(grace_s=0)
            self.panel.jobs.pop("points")
        job = self.panel.attempt(
            "Cannot classify the points", self._logic.startPointClassification, state.roleNodes(), points
        )
        if job is not None:
            self.panel.startJob("points", job)
            self.pointResult = "Classifying the points…"

    def pointsFinished(self, job, _context) -> None:
        state = job.state
        if not state.finished:
            return
        if state.status == "finished":
            scored = self._logic.putPointClassifications(job)
            labels = "; ".join(f"{point['label']}: p = {point['probability']:.2f}" for point in scored)
            self.pointResult = f"{labels} — {scored[0]['model']} ({scored[0]['intended_use']})"
        elif state.status == "failed":
            self.pointResult = f"Cannot classify the points: {state.error}"
        self._logic.removeJobFolder(job)

    # ------------------------------------------------------------------ view
    def view(self) -> ReadingView:
        state = self._state
        t2 = state.t2Volume
        running = self.panel.job("analysis")
        ready = state.inputsReady()
        summary = self._logic.resultSummary(t2) if t2 else None
        roles = [
            RoleLine(role, node.GetName(), node.GetAttribute(ROLE_REASON_ATTRIBUTE) or "chosen by hand")
            for role, node in state.roleNodes().items()
            if node is not None
        ]
        view = ReadingView(
            status=self.status,
            roles=roles,
            analyzeEnabled=running is not None or ready,
            analyzeLabel="Cancel" if running is not None else "Analyze",
            analyzeTooltip="" if ready or running is not None else "Choose the T2, ADC and high-b volumes first",
            analysisRunning=running is not None,
            analysisProgress=self.progress,
            rows=self.rows(),
            heatmapVisible=state.heatmapVisible,
            heatmapOpacity=state.heatmapOpacity,
            heatmapThreshold=state.heatmapThreshold,
            pointResult=self.pointResult,
            pointRunning=self.panel.job("points") is not None,
            exportEnabled=bool(t2) and self._logic.resultFolder(t2) is not None and running is None,
        )
        if summary is not None:
            view.caseScore = f"{summary['caseScore']:.2f}"
            view.modelName = summary["modelName"]
            view.demoNotice = summary["modelNotice"] if summary["isDemoModel"] else ""
        ids = {int(row["id"]) for row in view.rows}
        view.selectedCandidate = state.selectedCandidate if state.selectedCandidate in ids else None
        return view

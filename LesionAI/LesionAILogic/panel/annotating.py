"""The annotation section: outline lesions (optionally prefilled from the candidates), grade, save, next case."""

from __future__ import annotations

import os

from LesionAILib.errors import LesionAIError
from LesionAILib.studies.roles import ROLES

from .views import GRADE_CHOICES, AnnotationView, LesionLine


class AnnotationSection:
    """What an annotator does: see :mod:`LesionAILogic.panel.controller` for the calling convention."""

    def __init__(self, panel):
        self.panel = panel
        self.status = ""
        self._summaryFor = None
        self._summary = ""
        self.annotatedCases = 0

    @property
    def _logic(self):
        return self.panel.logic

    @property
    def _state(self):
        return self.panel.state

    def createAnnotation(self) -> None:
        """A new lesion segmentation on the T2, prefilled with the candidates (and their grades) when asked and
        analysed; the embedded Segment Editor edits it."""
        state = self._state
        if not state.t2Volume:
            return
        prefill = state.prefillFromCandidates and self._logic.resultSummary(state.t2Volume) is not None
        node = self.panel.attempt(
            "Cannot create the annotation", self._logic.createAnnotation, state.t2Volume, prefillFromCandidates=prefill
        )
        if node is not None:
            state.annotation = node
            if not state.caseId:
                state.caseId = self._logic.suggestedCaseId(state.t2Volume)
            lesions = len(self._logic.lesionGrades(node))
            self.status = f"Annotation created with {lesions} lesion(s) from the candidates." if prefill else (
                "Annotation created: outline each lesion as one segment."
            )

    def setGrade(self, segmentId: str, choice: int) -> None:
        """Grade a lesion: ``choice`` indexes :data:`~LesionAILogic.panel.views.GRADE_CHOICES` (0: not graded)."""
        if not 0 <= int(choice) < len(GRADE_CHOICES):
            raise ValueError(f"grade choice {choice} outside 0..{len(GRADE_CHOICES) - 1}")
        grade = None if choice == 0 else int(choice) - 1
        self.panel.attempt("Cannot set the grade", self._logic.setLesionGrade, self._state.annotation, segmentId, grade)

    def saveCase(self, annotated: bool = True) -> None:
        """Save the case into the deployment dataset: with its annotation, or unannotated into the pool."""
        state = self._state
        folder = self.panel.attempt(
            "Cannot save the case",
            self._logic.saveAnnotatedCase,
            state.datasetFolder,
            state.caseId,
            state.t2Volume,
            state.adcVolume,
            state.hbvVolume,
            state.annotation if annotated else None,
            state.annotator,
        )
        if folder is not None:
            what = "annotated case" if annotated else "unannotated case (pool)"
            self.status = f"Saved {what} {state.caseId} to {folder}"
            self._summaryFor = None

    def nextCase(self) -> None:
        """Look for the unannotated case the model is least sure about (a separate process)."""
        if self.panel.job("next-case") is not None or not self.panel.dependenciesReady():
            return
        state = self._state
        job = self.panel.attempt(
            "Cannot look for the next case", self._logic.startNextCaseSearch, state.datasetFolder, device=state.device
        )
        if job is not None:
            self.panel.startJob("next-case", job)
            self.status = "Ordering the unannotated cases by the model's uncertainty…"

    def nextCaseFinished(self, job, _context) -> None:
        state = job.state
        self.status = state.describe()
        if not state.finished:
            return
        if state.status == "finished":
            caseId = state.result.get("first")
            if caseId is None:
                self.status = "Every case of the dataset is annotated."
            else:
                self._openCase(caseId)
        elif state.status == "failed":
            self.status = f"Next case: {state.error}"
            self.panel.host.showError(f"Next case: {state.error}")
        self._logic.removeJobFolder(job)

    def _openCase(self, caseId: str) -> None:
        state = self._state
        volumes = self._logic.loadDeploymentCase(state.datasetFolder, caseId)
        state.t2Volume, state.adcVolume, state.hbvVolume = (volumes[role] for role in ROLES)
        state.caseId = caseId
        state.selectedCandidate = 0
        state.annotation = self._logic.createAnnotation(volumes["t2w"])
        self.panel.reading.showReading(align=True)
        self.status = f"Next case: {caseId} (the model is least sure about it)"

    def datasetSummary(self) -> str:
        """One line on the deployment dataset (re-read after a save or when the folder changes)."""
        folder = self._state.datasetFolder
        if folder == self._summaryFor:
            return self._summary
        self._summaryFor = folder
        self.annotatedCases = 0
        if not folder or not os.path.isdir(folder):
            self._summary = "choose a deployment dataset folder (Annotate section)"
            return self._summary
        try:
            s = self._logic.datasetSummary(folder)
        except LesionAIError as error:
            self._summary = str(error)
            return self._summary
        self.annotatedCases = s["annotated"]
        text = f"{s['annotated']} annotated and {s['unannotated']} unannotated case(s), {s['lesions']} lesion(s)"
        text += f" ({s['csPCa_lesions']} clinically significant)"
        if s["problems"]:
            text += f"; {s['problems']} case(s) skipped: " + "; ".join(s["problem_list"][:3])
        self._summary = text
        return text

    def refreshSummary(self) -> None:
        """Read the dataset again (after fine-tuning or an outside change)."""
        self._summaryFor = None

    def view(self) -> AnnotationView:
        state = self._state
        ready = state.inputsReady()
        lesions = []
        if state.annotation is not None:
            for row in self._logic.lesionGrades(state.annotation):
                choice = 0 if row["gradeGroup"] is None else row["gradeGroup"] + 1
                lesions.append(LesionLine(row["segmentId"], row["name"], choice, row["proposedByModel"]))
        summary = self.datasetSummary()
        return AnnotationView(
            createEnabled=bool(state.t2Volume),
            saveEnabled=ready and bool(state.annotation) and bool(state.datasetFolder),
            poolEnabled=ready and bool(state.datasetFolder),
            nextCaseEnabled=bool(state.datasetFolder) and self.panel.job("next-case") is None,
            nextCaseRunning=self.panel.job("next-case") is not None,
            lesions=lesions,
            status=self.status,
            datasetSummary=summary,
        )

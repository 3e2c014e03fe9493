"""LesionAI 3D Slicer module: the panel (widget), its parameter node and the in-Slicer self-test.

The work is done by :class:`LesionAILogic.LesionAILogic` (Qt-free; also scriptable from the Python
console and testable on the slicer-core wheel) and by the engine, :mod:`LesionAILib`. This file only
wires the panel to them. Analysis, point classification, next-case search and fine-tuning run the
``lesionai`` commands in separate processes (:class:`LesionAILib.jobs.runner.JobRunner`), followed by a
``QTimer`` on the main thread: the GUI never waits for torch, and no Qt or MRML call happens on another thread.
"""

import logging
import math
import os
import tempfile
from pathlib import Path
from typing import Annotated

import qt
import slicer
import vtk
from LesionAILogic import dependencies  # first: in a source checkout it puts LesionAILib on sys.path
from LesionAILogic.candidates import PANEL_COLUMNS
from LesionAILogic.jobs import ANALYSIS_FOLDER
from LesionAILogic.logic import LesionAILogic
from slicer import vtkMRMLMarkupsFiducialNode, vtkMRMLScalarVolumeNode, vtkMRMLSegmentationNode
from slicer.parameterNodeWrapper import Choice, Decimals, SingleStep, WithinRange, parameterNodeWrapper
from slicer.ScriptedLoadableModule import (
    ScriptedLoadableModule,
    ScriptedLoadableModuleTest,
    ScriptedLoadableModuleWidget,
)
from slicer.util import VTKObservationMixin

from LesionAILib.errors import LesionAIError
from LesionAILib.studies.roles import ROLES

# Installed, Resources/ sits next to this file; in a source checkout (module path <checkout>/LesionAI) one folder up.
_MODULE_DIR = Path(__file__).resolve().parent
RESOURCES = next(
    (d / "Resources" for d in (_MODULE_DIR, _MODULE_DIR.parent) if (d / "Resources" / "UI").is_dir()), None
)
GRADE_CHOICES = ("not graded", "GG0 benign", "GG1", "GG2", "GG3", "GG4", "GG5")
POLL_INTERVAL_MS = 200
POINT_EVENTS = (
    slicer.vtkMRMLMarkupsNode.PointPositionDefinedEvent,  # a point was placed
    slicer.vtkMRMLMarkupsNode.PointEndInteractionEvent,  # a point was moved
)


class LesionAI(ScriptedLoadableModule):
    """Module description (see Slicer's ScriptedLoadableModule)."""

    def __init__(self, parent):
        ScriptedLoadableModule.__init__(self, parent)
        self.parent.title = "LesionAI"
        self.parent.categories = ["Segmentation"]
        self.parent.dependencies = ["Segmentations"]
        self.parent.contributors = ["LesionAI developers"]
        self.parent.helpText = (
            "Finds, outlines and grades suspicious lesions in prostate mpMRI (axial T2, ADC, high-b DWI): "
            "a lesion heatmap over the T2 and a candidate table, annotation into a deployment dataset, and "
            "local fine-tuning. Research use only; the bundled demo model is trained on synthetic data and is "
            "not for clinical use. See https://github.com/lesionai/SlicerLesionAI"
        )
        if RESOURCES is not None and RESOURCES.parent != _MODULE_DIR:  # source checkout: Slicer did not find the icon
            self.parent.icon = qt.QIcon(str(RESOURCES / "Icons" / "LesionAI.png"))
        self.parent.acknowledgementText = (
            "LesionAI reads DICOM with pydicom and SimpleITK and runs its networks with PyTorch."
        )


@parameterNodeWrapper
class LesionAIParameterNode:
    """Everything the panel shows; saved with the scene, so reopening a scene restores the panel.

    Folders are strings (empty when unset); the ``SlicerParameterName`` of each bound widget in
    ``Resources/UI/LesionAI.ui`` is the field it shows.
    """

    studyFolder: str = ""
    t2Volume: vtkMRMLScalarVolumeNode
    adcVolume: vtkMRMLScalarVolumeNode
    hbvVolume: vtkMRMLScalarVolumeNode
    device: Annotated[str, Choice(["auto", "cpu", "cuda"])] = "auto"
    heatmapOpacity: Annotated[float, WithinRange(0.0, 1.0), Decimals(2), SingleStep(0.05)] = 0.6
    heatmapThreshold: Annotated[float, WithinRange(0.0, 1.0), Decimals(2), SingleStep(0.05)] = 0.2
    selectedCandidate: int = 0
    annotation: vtkMRMLSegmentationNode
    points: vtkMRMLMarkupsFiducialNode
    prefillFromCandidates: bool = True
    datasetFolder: str = ""
    caseId: str = ""
    annotator: str = ""
    finetuneEpochs: Annotated[int, WithinRange(1, 200)] = 8
    classifierEpochs: Annotated[int, WithinRange(0, 200)] = 4
    lastFinetunedVersion: str = ""


class LesionAIWidget(ScriptedLoadableModuleWidget, VTKObservationMixin):
    """The LesionAI panel: inputs, results, annotation, fine-tuning."""

    def __init__(self, parent=None) -> None:
        ScriptedLoadableModuleWidget.__init__(self, parent)
        VTKObservationMixin.__init__(self)
        self.logic = None
        self._parameterNode = None
        self._parameterNodeGuiTag = None
        self._jobs = {}  # kind ("analysis", "points", "next-case", "finetune") -> (JobRunner, context)
        self._timer = None
        self._segmentEditor = None
        self._observedAnnotation = None
        self._observedPoints = None
        self._shownLesionIds = []
        self._shownResultsFor = None
        self._summaryFolder = None
        self._updatingGui = False

    def resourcePath(self, filename: str) -> str:
        """A file of LesionAI's ``Resources/`` (installed next to this file, or one folder up in a checkout)."""
        return str((RESOURCES or _MODULE_DIR / "Resources") / filename)

    # ------------------------------------------------------------------ set-up
    def setup(self) -> None:
        ScriptedLoadableModuleWidget.setup(self)
        uiWidget = slicer.util.loadUI(self.resourcePath("UI/LesionAI.ui"))
        self.layout.addWidget(uiWidget)
        self.ui = slicer.util.childWidgetVariables(uiWidget)
        uiWidget.setMRMLScene(slicer.mrmlScene)
        self.logic = LesionAILogic(
            slicer.mrmlScene,
            slicer.modules.segmentations.logic(),
            workFolder=Path(slicer.app.temporaryPath) / "LesionAI",
        )
        self._timer = qt.QTimer()
        self._timer.setInterval(POLL_INTERVAL_MS)
        self._timer.connect("timeout()", self._pollJobs)
        self._setupCandidateTable()
        self._setupSegmentEditor()
        self.ui.lesionTable.setColumnCount(2)
        self.ui.lesionTable.setHorizontalHeaderLabels(["lesion", "grade group"])
        self.ui.lesionTable.horizontalHeader().setStretchLastSection(True)
        self.ui.studyPathLineEdit.settingKey = "LesionAI/StudyFolder"
        self.ui.datasetPathLineEdit.settingKey = "LesionAI/DatasetFolder"

        self.ui.loadStudyButton.connect("clicked(bool)", self.onLoadStudy)
        self.ui.autoAssignButton.connect("clicked(bool)", self.onAutoAssign)
        self.ui.modelSelector.connect("activated(int)", self.onModelChosen)
        self.ui.addModelButton.connect("clicked(bool)", self.onAddModel)
        self.ui.analyzeButton.connect("clicked(bool)", self.onAnalyze)
        self.ui.candidateTable.connect("itemSelectionChanged()", self.onCandidateSelected)
        self.ui.createAnnotationButton.connect("clicked(bool)", self.onCreateAnnotation)
        self.ui.saveCaseButton.connect("clicked(bool)", lambda: self.onSaveCase(annotated=True))
        self.ui.addToPoolButton.connect("clicked(bool)", lambda: self.onSaveCase(annotated=False))
        self.ui.nextCaseButton.connect("clicked(bool)", self.onNextCase)
        self.ui.finetuneButton.connect("clicked(bool)", self.onFinetune)
        self.ui.activateVersionButton.connect("clicked(bool)", self.onActivateNewVersion)
        self.ui.rollbackButton.connect("clicked(bool)", self.onRollback)
        self.ui.studyPathLineEdit.connect("currentPathChanged(QString)", self._onFolderEdited)
        self.ui.datasetPathLineEdit.connect("currentPathChanged(QString)", self._onFolderEdited)

        self.addObserver(slicer.mrmlScene, slicer.mrmlScene.StartCloseEvent, self.onSceneStartClose)
        self.addObserver(slicer.mrmlScene, slicer.mrmlScene.EndCloseEvent, self.onSceneEndClose)
        self.initializeParameterNode()
        self._refreshModels()

    def _setupCandidateTable(self) -> None:
        table = self.ui.candidateTable
        table.setColumnCount(len(PANEL_COLUMNS))
        table.setHorizontalHeaderLabels([name for name, _ in PANEL_COLUMNS])
        table.horizontalHeader().setSectionResizeMode(qt.QHeaderView.ResizeToContents)
        table.verticalHeader().setVisible(False)

    def _setupSegmentEditor(self) -> None:
        editor = slicer.qMRMLSegmentEditorWidget()
        editor.setMaximumNumberOfUndoStates(10)
        editor.setMRMLScene(slicer.mrmlScene)
        editorNode = slicer.mrmlScene.GetSingletonNode("LesionAISegmentEditor", "vtkMRMLSegmentEditorNode")
        if editorNode is None:
            editorNode = slicer.mrmlScene.AddNewNodeByClass("vtkMRMLSegmentEditorNode")
            editorNode.SetSingletonTag("LesionAISegmentEditor")
        editor.setMRMLSegmentEditorNode(editorNode)
        self.ui.segmentEditorPlaceholder.layout().addWidget(editor)
        self._segmentEditor = editor

    def cleanup(self) -> None:
        for job, _ in self._jobs.values():
            job.cancel()
        self._timer.stop()
        self.removeObservers()

    def enter(self) -> None:
        self.initializeParameterNode()
        self._segmentEditor.installKeyboardShortcuts()

    def exit(self) -> None:
        self._segmentEditor.setActiveEffect(None)
        self._segmentEditor.uninstallKeyboardShortcuts()
        if self._parameterNode:
            self._parameterNode.disconnectGui(self._parameterNodeGuiTag)
            self._parameterNodeGuiTag = None
            self.removeObserver(self._parameterNode, vtk.vtkCommand.ModifiedEvent, self._onParameterNodeModified)

    def onSceneStartClose(self, caller, event) -> None:
        self.setParameterNode(None)
        self._segmentEditor.setSegmentationNode(None)
        if self._observedAnnotation is not None:
            self.removeObservers(self._onAnnotationModified)
        self._observedAnnotation, self._shownLesionIds = None, []
        self._showPoints(None)
        self.ui.lesionTable.setRowCount(0)
        self._showResults()

    def onSceneEndClose(self, caller, event) -> None:
        if self.parent.isEntered:
            self.initializeParameterNode()

    # ------------------------------------------------------------------ parameter node
    def initializeParameterNode(self) -> None:
        self.setParameterNode(LesionAIParameterNode(self.logic.getParameterNode()))
        if not self._parameterNode.points:
            self._parameterNode.points = slicer.mrmlScene.AddNewNodeByClass(
                "vtkMRMLMarkupsFiducialNode", slicer.mrmlScene.GenerateUniqueName("LesionAI points")
            )

    def setParameterNode(self, parameterNode) -> None:
        if self._parameterNode:
            self._parameterNode.disconnectGui(self._parameterNodeGuiTag)
            self.removeObserver(self._parameterNode, vtk.vtkCommand.ModifiedEvent, self._onParameterNodeModified)
        self._parameterNode = parameterNode
        if self._parameterNode:
            self._parameterNodeGuiTag = self._parameterNode.connectGui(self.ui)
            self.addObserver(self._parameterNode, vtk.vtkCommand.ModifiedEvent, self._onParameterNodeModified)
            self._onParameterNodeModified()

    def _onParameterNodeModified(self, caller=None, event=None) -> None:
        """Bring everything not bound by name in sync with the parameter node (also after a scene load)."""
        if self._updatingGui or not self._parameterNode:
            return
        self._updatingGui = True
        try:
            p = self._parameterNode
            self.ui.studyPathLineEdit.currentPath = p.studyFolder
            self.ui.datasetPathLineEdit.currentPath = p.datasetFolder
            inputsReady = bool(p.t2Volume and p.adcVolume and p.hbvVolume)
            if "analysis" not in self._jobs:
                self.ui.analyzeButton.enabled = inputsReady
                self.ui.analyzeButton.toolTip = "" if inputsReady else "Choose the T2, ADC and high-b volumes first"
            self.ui.createAnnotationButton.enabled = bool(p.t2Volume)
            self.ui.saveCaseButton.enabled = inputsReady and bool(p.annotation) and bool(p.datasetFolder)
            self.ui.addToPoolButton.enabled = inputsReady and bool(p.datasetFolder)
            self.ui.nextCaseButton.enabled = bool(p.datasetFolder)
            if p.t2Volume:
                self.logic.setHeatmapThreshold(p.t2Volume, p.heatmapThreshold)
            self.logic.setHeatmapOpacity(p.heatmapOpacity)
            if p.t2Volume is not self._shownResultsFor:
                self._showResults()
            self._showAnnotation()
            self._showPoints(p.points)
            self._showDatasetSummary()
        finally:
            self._updatingGui = False

    def _onFolderEdited(self, _path) -> None:
        if self._parameterNode and not self._updatingGui:
            self._parameterNode.studyFolder = self.ui.studyPathLineEdit.currentPath
            self._parameterNode.datasetFolder = self.ui.datasetPathLineEdit.currentPath

    # ------------------------------------------------------------------ dependencies and models
    def _ensureDependencies(self) -> bool:
        """Offer to install what is missing (PyTorch through the PyTorch extension, pip packages); True when ready."""
        if not dependencies.describe_missing():
            return True
        try:
            torch = dependencies.torch_status()
            if not torch["installed"] or not torch["recent_enough"]:
                if not dependencies.install_torch(slicer.util.confirmOkCancelDisplay):
                    return False
            dependencies.install_missing_packages(slicer.util.confirmOkCancelDisplay)
        except LesionAIError as error:
            slicer.util.errorDisplay(str(error))
            return False
        missing = dependencies.describe_missing()
        if missing:
            slicer.util.errorDisplay(f"LesionAI cannot run yet: {missing}. Restart Slicer and try again.")
            return False
        self._refreshModels()
        return True

    def _refreshModels(self) -> None:
        selector = self.ui.modelSelector
        selector.clear()
        missing = dependencies.describe_missing()
        if missing:
            selector.addItem(f"({missing}: press Analyze to install)")
            return
        try:
            versions = self.logic.modelVersions()
        except LesionAIError as error:
            selector.addItem(f"(no model: {error})")
            return
        for version in versions:
            selector.addItem(version["label"], version["version"])
            if version["active"]:
                selector.currentIndex = selector.count - 1
                self.ui.demoNoticeLabel.visible = version["version"] == "demo"

    def onModelChosen(self, index: int) -> None:
        version = self.ui.modelSelector.itemData(index)
        if version:
            with slicer.util.tryWithErrorDisplay("Cannot switch the model.", waitCursor=True):
                self.logic.activateModelVersion(version)
            self._refreshModels()

    def onAddModel(self) -> None:
        path = qt.QFileDialog.getOpenFileName(None, "Add a LesionAI model", "", "LesionAI model (*.safetensors)")
        if path:
            with slicer.util.tryWithErrorDisplay("Cannot add the model.", waitCursor=True):
                version = self.logic.addModelFile(path, note=f"added from {path}")
                self.ui.statusLabel.text = f"Model added as version {version}; choose it above to use it."
            self._refreshModels()

    # ------------------------------------------------------------------ inputs
    def onLoadStudy(self) -> None:
        p = self._parameterNode
        with slicer.util.tryWithErrorDisplay("Cannot load the study.", waitCursor=True):
            volumes = self.logic.loadStudy(p.studyFolder)
            p.t2Volume, p.adcVolume, p.hbvVolume = (volumes[role] for role in ROLES)
            p.caseId = self.logic.suggestedCaseId(volumes["t2w"])
            slicer.util.setSliceViewerLayers(background=volumes["t2w"], foreground=None, fit=True)
            reasons = "; ".join(f"{role}: {volumes[role].GetAttribute('LesionAI.RoleReason')}" for role in ROLES)
            self.ui.statusLabel.text = f"Loaded {p.caseId}. {reasons}"

    def onAutoAssign(self) -> None:
        p = self._parameterNode
        with slicer.util.tryWithErrorDisplay("Cannot assign the roles.", waitCursor=True):
            volumes = self.logic.assignRoles()
            p.t2Volume, p.adcVolume, p.hbvVolume = (volumes[role] for role in ROLES)

    # ------------------------------------------------------------------ analysis
    def onAnalyze(self) -> None:
        if "analysis" in self._jobs:
            self._jobs["analysis"][0].cancel()
            return
        if not self._ensureDependencies():
            return
        p = self._parameterNode
        with slicer.util.tryWithErrorDisplay("Cannot start the analysis.", waitCursor=True):
            job = self.logic.startAnalysis(p.t2Volume, p.adcVolume, p.hbvVolume, device=p.device)
            self._startJob("analysis", job, p.t2Volume)
            self.ui.analyzeButton.text = "Cancel"
            self.ui.analyzeButton.enabled = True
            self.ui.analysisProgressBar.value = 0

    def _analysisProgress(self, job, t2) -> None:
        state = job.state
        self.ui.analysisProgressBar.value = int(100 * state.fraction)
        self.ui.statusLabel.text = state.describe()
        if not state.finished:
            return
        self.ui.analyzeButton.text = "Analyze"
        self._onParameterNodeModified()
        if state.status == "finished" and t2.GetScene() is not slicer.mrmlScene:
            self.ui.statusLabel.text = "The analysed T2 volume was removed; the result was not loaded."
        elif state.status == "finished":
            with slicer.util.tryWithErrorDisplay("Cannot show the analysis result.", waitCursor=True):
                analysis = self.logic.loadAnalysisResult(job.work_folder / ANALYSIS_FOLDER, t2)
                self.logic.showResult(t2, self._parameterNode.heatmapOpacity)
                self.logic.setHeatmapThreshold(t2, self._parameterNode.heatmapThreshold)
                found = len(analysis.candidates)
                self._parameterNode.selectedCandidate = 0
                self._showResults()
                self.ui.statusLabel.text = f"{found} candidate(s); case score {analysis.caseScore:.2f}"
        elif state.status == "failed":
            slicer.util.errorDisplay(f"Analysis failed: {state.error}")
        self.logic.removeJobFolder(job)

    def _showResults(self) -> None:
        """Case score, model, demo notice and candidate table of the selected T2 (last analysis, classified points)."""
        t2 = self._parameterNode.t2Volume if self._parameterNode else None
        self._shownResultsFor = t2
        summary = self.logic.resultSummary(t2) if t2 else None
        table = self.ui.candidateTable
        table.blockSignals(True)
        table.setSortingEnabled(False)
        table.setRowCount(0)
        table.blockSignals(False)
        if summary is None:
            self.ui.caseScoreLabel.text = "–"
            self.ui.modelNameLabel.text = "–"
        else:
            self.ui.caseScoreLabel.text = f"{summary['caseScore']:.2f}"
            self.ui.modelNameLabel.text = summary["modelName"]
            self.ui.demoNoticeLabel.visible = summary["isDemoModel"]
            if summary["isDemoModel"]:
                self.ui.demoNoticeLabel.text = f"<b>{summary['modelNotice']}</b>"
        rows = self.logic.candidateRows(t2) if t2 else []  # analysis candidates and classified points
        table.blockSignals(True)
        table.setRowCount(len(rows))
        for index, row in enumerate(rows):
            for column, (key, decimals) in enumerate(PANEL_COLUMNS):
                item = qt.QTableWidgetItem()
                value = row.get(key, "")
                if isinstance(value, float) and math.isnan(value):
                    value = ""  # a classified point has no region: no volume, no peak
                elif decimals:
                    value = round(value, decimals)
                item.setData(qt.Qt.DisplayRole, value)
                table.setItem(index, column, item)
            if int(row["id"]) == self._parameterNode.selectedCandidate:
                table.selectRow(index)  # restores the selection of a saved scene without moving the views
        table.setSortingEnabled(True)
        table.blockSignals(False)

    def onCandidateSelected(self) -> None:
        t2 = self._parameterNode.t2Volume
        selected = self.ui.candidateTable.selectedItems()
        if not t2 or not selected:
            return
        candidateId = int(self.ui.candidateTable.item(selected[0].row(), 0).data(qt.Qt.DisplayRole))
        with slicer.util.tryWithErrorDisplay("Cannot show the candidate."):
            self.logic.jumpToCandidate(t2, candidateId)
            self._parameterNode.selectedCandidate = candidateId

    # ------------------------------------------------------------------ point and classify
    def _showPoints(self, points) -> None:
        """Let the place widget add to ``points`` and classify its control points when placed or moved."""
        if points is self._observedPoints:
            return
        for event in POINT_EVENTS:
            if self._observedPoints is not None:
                self.removeObserver(self._observedPoints, event, self._onPointsChanged)
            if points is not None:
                self.addObserver(points, event, self._onPointsChanged)
        self._observedPoints = points
        self.ui.pointPlaceWidget.setCurrentNode(points)

    def _onPointsChanged(self, caller=None, event=None) -> None:
        """Classify every placed point (ProstateX-trained classifier, separate process); results go to the table."""
        p = self._parameterNode
        points = p.points if p else None
        if points is None or points.GetNumberOfControlPoints() == 0:
            return
        if not (p.t2Volume and p.adcVolume and p.hbvVolume):
            self.ui.pointResultLabel.text = "Choose the T2, ADC and high-b volumes to classify the points."
            return
        if not self._ensureDependencies():
            return
        if "points" in self._jobs:  # the points changed again: that result would be stale
            self._jobs.pop("points")[0].cancel(grace_s=0)
        volumes = {"t2w": p.t2Volume, "adc": p.adcVolume, "hbv": p.hbvVolume}
        with slicer.util.tryWithErrorDisplay("Cannot classify the points.", waitCursor=True):
            job = self.logic.startPointClassification(volumes, points)
            if job is not None:
                self._startJob("points", job, None)
                self.ui.pointResultLabel.text = "Classifying the points…"

    def _pointsProgress(self, job, _context) -> None:
        state = job.state
        if not state.finished:
            return
        if state.status == "finished":
            with slicer.util.tryWithErrorDisplay("Cannot show the point classification."):
                scored = self.logic.putPointClassifications(job)
                labels = "; ".join(f"{point['label']}: p = {point['probability']:.2f}" for point in scored)
                self.ui.pointResultLabel.text = f"{labels} — {scored[0]['model']} ({scored[0]['intended_use']})"
            self._showResults()
        elif state.status == "failed":
            self.ui.pointResultLabel.text = f"Cannot classify the points: {state.error}"
        self.logic.removeJobFolder(job)

    # ------------------------------------------------------------------ annotation
    def onCreateAnnotation(self) -> None:
        p = self._parameterNode
        with slicer.util.tryWithErrorDisplay("Cannot create the annotation.", waitCursor=True):
            prefill = p.prefillFromCandidates and self.logic.resultSummary(p.t2Volume) is not None
            p.annotation = self.logic.createAnnotation(p.t2Volume, prefillFromCandidates=prefill)
            if not p.caseId:
                p.caseId = self.logic.suggestedCaseId(p.t2Volume)

    def _showAnnotation(self) -> None:
        """Put the annotation segmentation into the embedded Segment Editor and follow its segments."""
        annotation = self._parameterNode.annotation
        if annotation is self._observedAnnotation:
            return
        events = (
            vtk.vtkCommand.ModifiedEvent,
            slicer.vtkSegmentation.SegmentAdded,
            slicer.vtkSegmentation.SegmentRemoved,
            slicer.vtkSegmentation.SegmentModified,
        )
        for event in events:
            if self._observedAnnotation is not None:
                self.removeObserver(self._observedAnnotation, event, self._onAnnotationModified)
            if annotation is not None:
                self.addObserver(annotation, event, self._onAnnotationModified)
        self._observedAnnotation = annotation
        self._segmentEditor.setSegmentationNode(annotation)
        self._segmentEditor.setSourceVolumeNode(self._parameterNode.t2Volume)
        self._onAnnotationModified()

    def _onAnnotationModified(self, caller=None, event=None) -> None:
        """One row per lesion: its name and a grade chooser (rebuilt only when segments come or go)."""
        table = self.ui.lesionTable
        annotation = self._parameterNode.annotation if self._parameterNode else None
        rows = self.logic.lesionGrades(annotation) if annotation else []
        ids = [row["segmentId"] for row in rows]
        if ids != self._shownLesionIds:
            self._shownLesionIds = ids
            table.setRowCount(len(rows))
            for index, row in enumerate(rows):
                table.setItem(index, 0, qt.QTableWidgetItem())
                combo = qt.QComboBox()
                combo.addItems(list(GRADE_CHOICES))
                combo.connect(
                    "activated(int)", lambda choice, segment=row["segmentId"]: self._setGrade(segment, choice)
                )
                table.setCellWidget(index, 1, combo)
        for index, row in enumerate(rows):
            table.item(index, 0).setText(
                row["name"] + (" (grade proposed by the model)" if row["proposedByModel"] else "")
            )
            combo = table.cellWidget(index, 1)
            combo.blockSignals(True)
            combo.currentIndex = 0 if row["gradeGroup"] is None else row["gradeGroup"] + 1
            combo.blockSignals(False)

    def _setGrade(self, segmentId: str, choice: int) -> None:
        grade = None if choice == 0 else choice - 1
        with slicer.util.tryWithErrorDisplay("Cannot set the grade."):
            self.logic.setLesionGrade(self._parameterNode.annotation, segmentId, grade)

    def onSaveCase(self, annotated: bool) -> None:
        p = self._parameterNode
        with slicer.util.tryWithErrorDisplay("Cannot save the case.", waitCursor=True):
            folder = self.logic.saveAnnotatedCase(
                p.datasetFolder,
                p.caseId,
                p.t2Volume,
                p.adcVolume,
                p.hbvVolume,
                p.annotation if annotated else None,
                p.annotator,
            )
            what = "annotated case" if annotated else "unannotated case (pool)"
            self.ui.annotationStatusLabel.text = f"Saved {what} {p.caseId} to {folder}"
            self._showDatasetSummary(force=True)

    def onNextCase(self) -> None:
        if "next-case" in self._jobs or not self._ensureDependencies():
            return
        p = self._parameterNode
        with slicer.util.tryWithErrorDisplay("Cannot look for the next case."):
            self._startJob("next-case", self.logic.startNextCaseSearch(p.datasetFolder, device=p.device), None)
            self.ui.annotationStatusLabel.text = "Ordering the unannotated cases by the model's uncertainty…"

    def _nextCaseProgress(self, job, _context) -> None:
        state = job.state
        self.ui.annotationStatusLabel.text = state.describe()
        if not state.finished:
            return
        if state.status == "finished":
            caseId = state.result.get("first")
            if caseId is None:
                self.ui.annotationStatusLabel.text = "Every case of the dataset is annotated."
            else:
                p = self._parameterNode
                with slicer.util.tryWithErrorDisplay("Cannot load the next case.", waitCursor=True):
                    volumes = self.logic.loadDeploymentCase(p.datasetFolder, caseId)
                    p.t2Volume, p.adcVolume, p.hbvVolume = (volumes[role] for role in ROLES)
                    p.caseId = caseId
                    p.annotation = self.logic.createAnnotation(volumes["t2w"])
                    slicer.util.setSliceViewerLayers(background=volumes["t2w"], foreground=None, fit=True)
                    self.ui.annotationStatusLabel.text = f"Next case: {caseId} (the model is least sure about it)"
        elif state.status == "failed":
            slicer.util.errorDisplay(f"Next case: {state.error}")
        self.logic.removeJobFolder(job)

    def _showDatasetSummary(self, force: bool = False) -> None:
        folder = self._parameterNode.datasetFolder
        if not force and folder == self._summaryFolder:
            return
        self._summaryFolder = folder
        if not folder or not os.path.isdir(folder):
            self.ui.datasetSummaryLabel.text = "choose a deployment dataset folder (Annotate section)"
            return
        try:
            s = self.logic.datasetSummary(folder)
        except LesionAIError as error:
            self.ui.datasetSummaryLabel.text = str(error)
            return
        text = f"{s['annotated']} annotated and {s['unannotated']} unannotated case(s), {s['lesions']} lesion(s)"
        text += f" ({s['csPCa_lesions']} clinically significant)"
        if s["problems"]:
            text += f"; {s['problems']} case(s) skipped: " + "; ".join(s["problem_list"][:3])
        self.ui.datasetSummaryLabel.text = text
        self.ui.finetuneButton.enabled = "finetune" in self._jobs or s["annotated"] > 0

    # ------------------------------------------------------------------ fine-tuning
    def onFinetune(self) -> None:
        if "finetune" in self._jobs:
            self._jobs["finetune"][0].cancel()
            return
        if not self._ensureDependencies():
            return
        p = self._parameterNode
        with slicer.util.tryWithErrorDisplay("Cannot start fine-tuning.", waitCursor=True):
            job = self.logic.startFinetuning(p.datasetFolder, p.finetuneEpochs, p.classifierEpochs, p.device)
            self._startJob("finetune", job, None)
            self.ui.finetuneButton.text = "Cancel fine-tuning"
            self.ui.epochProgressBar.value = 0
            self.ui.activateVersionButton.enabled = False

    def _finetuneProgress(self, job, _context) -> None:
        state = job.state
        self.ui.epochProgressBar.value = int(100 * state.epoch_fraction)
        self.ui.finetuneStatusLabel.text = state.describe()
        if state.validation_score is not None:
            self.ui.validationLabel.text = f"{state.validation_score:.3f} (held-out cases)"
        if not state.finished:
            return
        self.ui.finetuneButton.text = "Start fine-tuning"
        if state.status == "finished" and state.result:
            result = state.result
            before, after = result["validation_before"]["score"], result["validation_after"]["score"]
            activated = "now active" if result["activated"] else "saved but not activated (it validated worse)"
            self.ui.validationLabel.text = (
                f"version {result['version']}: {after:.3f} on held-out cases vs {before:.3f} for "
                f"{result['base']} — {activated}"
            )
            self._parameterNode.lastFinetunedVersion = result["version"]
            self.ui.activateVersionButton.enabled = not result["activated"]
            self._refreshModels()
        elif state.status == "failed":
            slicer.util.errorDisplay(f"Fine-tuning failed: {state.error}")

    def onActivateNewVersion(self) -> None:
        with slicer.util.tryWithErrorDisplay("Cannot switch the model."):
            self.logic.activateModelVersion(self._parameterNode.lastFinetunedVersion)
            self.ui.activateVersionButton.enabled = False
        self._refreshModels()

    def onRollback(self) -> None:
        with slicer.util.tryWithErrorDisplay("Cannot roll back."):
            version = self.logic.rollbackModel()
            self.ui.validationLabel.text = f"active model: {version}"
        self._refreshModels()

    # ------------------------------------------------------------------ jobs
    def _startJob(self, kind: str, job, context) -> None:
        self._jobs[kind] = (job, context)
        self._timer.start()

    def _pollJobs(self) -> None:
        handlers = {
            "analysis": self._analysisProgress,
            "points": self._pointsProgress,
            "next-case": self._nextCaseProgress,
            "finetune": self._finetuneProgress,
        }
        for kind, (job, context) in list(self._jobs.items()):
            job.poll()
            if job.state.finished:
                del self._jobs[kind]
            handlers[kind](job, context)
        if not self._jobs:
            self._timer.stop()


class LesionAITest(ScriptedLoadableModuleTest):
    """In-Slicer self-test: phantom case → load → analyze → table → annotate → save."""

    def setUp(self):
        slicer.mrmlScene.Clear()

    def runTest(self):
        self.setUp()
        self.test_LoadAnalyzeAnnotate()

    def _model(self, folder: Path) -> Path:
        """The bundled demo model, or (before it ships) a small untrained one: this test checks plumbing."""
        from LesionAILib.models.modelfile import DEMO_MODEL, ModelMetadata, save_model
        from LesionAILib.models.networks import LesionModel, ModelConfig
        from LesionAILib.preprocessing.pipeline import PreprocessConfig

        if DEMO_MODEL.exists():
            return DEMO_MODEL
        config = ModelConfig()
        grid = PreprocessConfig(shape=(16, 64, 64), spacing=(3.0, 1.5, 1.5))
        metadata = ModelMetadata("self-test (untrained)", config, grid)
        return save_model(LesionModel(config).eval(), metadata, folder / "untrained.safetensors")

    def test_LoadAnalyzeAnnotate(self):
        from LesionAILib.adaptation.deployment import read_deployment
        from LesionAILib.phantom.cases import generate_case

        self.delayDisplay("Generating a phantom case")
        folder = Path(tempfile.mkdtemp(prefix="LesionAITest-"))
        phantom = generate_case(seed=7, site="A", index=0)
        logic = LesionAILogic(slicer.mrmlScene, slicer.modules.segmentations.logic(), modelStore=folder / "store")
        volumes = {role: logic.addVolumeFromImage(getattr(phantom, role), f"phantom {role}") for role in ROLES}
        volumes = logic.assignRoles(list(volumes.values()), overrides=volumes)
        t2, adc, hbv = (volumes[role] for role in ROLES)

        self.delayDisplay("Analyzing")
        analysis = logic.analyze(t2, adc, hbv, model=self._model(folder), device="cpu")
        matrices = [vtk.vtkMatrix4x4(), vtk.vtkMatrix4x4()]
        t2.GetIJKToRASMatrix(matrices[0])
        analysis.heatmap.GetIJKToRASMatrix(matrices[1])
        for row in range(4):
            for column in range(4):
                self.assertAlmostEqual(matrices[0].GetElement(row, column), matrices[1].GetElement(row, column), 9)
        rows = logic.candidateRows(t2)
        self.assertEqual(len(rows), len(analysis.candidates))
        self.assertEqual(analysis.table.GetNumberOfRows(), len(rows))
        if rows:
            point = logic.jumpToCandidate(t2, rows[0]["id"])
            self.assertAlmostEqual(point[0], analysis.candidates[0].center_ras_mm[0], 6)

        self.delayDisplay("Annotating")
        annotation = logic.createAnnotation(t2, prefillFromCandidates=bool(rows))
        for lesion in logic.lesionGrades(annotation):
            logic.setLesionGrade(annotation, lesion["segmentId"], 2)
        logic.saveAnnotatedCase(folder / "dataset", logic.suggestedCaseId(t2), t2, adc, hbv, annotation, "self-test")
        dataset = read_deployment(folder / "dataset")
        self.assertEqual(len(dataset.annotated), 1)
        self.assertEqual(dataset.problems, [])
        logging.info("LesionAI self-test data in %s", folder)
        self.delayDisplay("Test passed")

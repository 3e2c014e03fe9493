"""LesionAI 3D Slicer module: the panel (widget), its parameter node and the in-Slicer self-test.

The panel decides nothing: :class:`LesionAILogic.panel.controller.PanelController` (Qt-free, tested
on the slicer-core wheel and shared with the browser page) holds its state and decisions. This
file binds widgets to it: each slot is one call into the controller followed by drawing
``controller.view()``. Analysis, point classification, next-case search and fine-tuning run the
``lesionai`` commands in separate processes, followed by a ``QTimer`` on the main thread: torch
never loads in Slicer, and no Qt or MRML call happens on another thread.
"""

import sys
import time
from pathlib import Path
from typing import Annotated

import qt
import slicer
from LesionAILogic.compatibility import slicer_version, unsupported_reason
from slicer.parameterNodeWrapper import Choice, Decimals, SingleStep, WithinRange, parameterNodeWrapper
from slicer.ScriptedLoadableModule import (
    ScriptedLoadableModule,
    ScriptedLoadableModuleTest,
    ScriptedLoadableModuleWidget,
)
from slicer.util import VTKObservationMixin

UNSUPPORTED = unsupported_reason(slicer_version(slicer), sys.version_info)
if UNSUPPORTED is None:  # the rest of LesionAI needs Python >= 3.10: import it only where it can run
    import LesionAILogic
    from LesionAILogic import dependencies  # first: in a source checkout it puts LesionAILib on sys.path
    from LesionAILogic.logic import LesionAILogic as SceneLogic
    from LesionAILogic.panel.controller import SHORTCUTS, PanelController
    from LesionAILogic.panel.state import PanelState
    from LesionAILogic.panel.views import GRADE_CHOICES

# Installed, Resources/ sits next to this file; in a source checkout (module path <checkout>/LesionAI) one folder up.
_MODULE_DIR = Path(__file__).resolve().parent
RESOURCES = next(
    (d / "Resources" for d in (_MODULE_DIR, _MODULE_DIR.parent) if (d / "Resources" / "UI").is_dir()), None
)
POLL_INTERVAL_MS = 200
INPUT_SELECTORS = ("t2Selector", "adcSelector", "hbvSelector")


class LesionAI(ScriptedLoadableModule):
    """Module description (see Slicer's ScriptedLoadableModule)."""

    def __init__(self, parent):
        ScriptedLoadableModule.__init__(self, parent)
        self.parent.title = "LesionAI"
        self.parent.categories = ["Segmentation"]
        self.parent.dependencies = ["Segmentations", "Markups"]
        self.parent.contributors = ["LesionAI developers"]
        self.parent.helpText = UNSUPPORTED or (
            "Finds, outlines and grades suspicious lesions in prostate mpMRI (axial T2, ADC, high-b DWI): "
            "T2, ADC and high-b side by side with their heatmaps, a candidate table, annotation into a "
            "deployment dataset, and local fine-tuning. Keys: Alt+Down/Alt+Up next/previous candidate, Alt+H "
            "heatmap on/off, Alt+Right/Alt+Left heatmap opacity. Research use only; the bundled demo model is "
            "trained on synthetic data and is not for clinical use."
        )
        if RESOURCES is not None and RESOURCES.parent != _MODULE_DIR:  # source checkout: Slicer did not find the icon
            self.parent.icon = qt.QIcon(str(RESOURCES / "Icons" / "LesionAI.png"))
        self.parent.acknowledgementText = (
            "LesionAI reads DICOM with pydicom and SimpleITK and runs its networks with PyTorch."
        )


@parameterNodeWrapper
class LesionAIParameterNode:
    """The widgets bound by name (``SlicerParameterName`` in ``Resources/UI/LesionAI.ui``) to the panel's fields.

    The same fields, names and formats as :data:`LesionAILogic.panel.state.PANEL_FIELDS` (a static
    test compares them): this wrapper binds the widgets, the controller reads the same parameter node.
    """

    studyFolder: str = ""
    t2Volume: slicer.vtkMRMLScalarVolumeNode
    adcVolume: slicer.vtkMRMLScalarVolumeNode
    hbvVolume: slicer.vtkMRMLScalarVolumeNode
    device: Annotated[str, Choice(["auto", "cpu", "cuda"])] = "auto"
    heatmapOpacity: Annotated[float, WithinRange(0.0, 1.0), Decimals(2), SingleStep(0.05)] = 0.6
    heatmapThreshold: Annotated[float, WithinRange(0.0, 1.0), Decimals(2), SingleStep(0.05)] = 0.2
    heatmapVisible: bool = True
    selectedCandidate: int = 0
    annotation: slicer.vtkMRMLSegmentationNode
    points: slicer.vtkMRMLMarkupsFiducialNode
    prefillFromCandidates: bool = True
    datasetFolder: str = ""
    caseId: str = ""
    annotator: str = ""
    finetuneEpochs: Annotated[int, WithinRange(1, 200)] = 8
    classifierEpochs: Annotated[int, WithinRange(0, 200)] = 4
    lastFinetunedVersion: str = ""
    synthesisModel: str = ""
    analyzeWithAbnormality: bool = False
    abnormalityVisible: bool = True
    abnormalityOpacity: Annotated[float, WithinRange(0.0, 1.0), Decimals(2), SingleStep(0.05)] = 0.5


class SlicerHost:
    """The controller's questions and messages as Slicer dialogs."""

    def confirm(self, message: str) -> bool:
        return slicer.util.confirmOkCancelDisplay(message)

    def showError(self, message: str) -> None:
        slicer.util.errorDisplay(message)


class LesionAIWidget(ScriptedLoadableModuleWidget, VTKObservationMixin):
    """The LesionAI panel: binds the widgets of ``Resources/UI/LesionAI.ui`` to a :class:`PanelController`."""

    def __init__(self, parent=None) -> None:
        ScriptedLoadableModuleWidget.__init__(self, parent)
        VTKObservationMixin.__init__(self)
        self.logic = None
        self.controller = None
        self._parameterNode = None
        self._parameterNodeGuiTag = None
        self._timer = None
        self._segmentEditor = None
        self._shortcuts = []
        self._shownLesionIds = None
        self._shownModels = None
        self._shownViewPng = ""
        self._observed = {}  # "points"/"annotation" -> node observed for changes

    def resourcePath(self, filename: str) -> str:
        """A file of LesionAI's ``Resources/`` (installed next to this file, or one folder up in a checkout)."""
        return str((RESOURCES or _MODULE_DIR / "Resources") / filename)

    # ------------------------------------------------------------------ set-up and binding
    def setup(self) -> None:
        ScriptedLoadableModuleWidget.setup(self)
        if UNSUPPORTED is not None:
            self.layout.addWidget(qt.QLabel(UNSUPPORTED))
            slicer.util.errorDisplay(UNSUPPORTED)
            return
        uiWidget = slicer.util.loadUI(self.resourcePath("UI/LesionAI.ui"))
        self.layout.addWidget(uiWidget)
        self.ui = slicer.util.childWidgetVariables(uiWidget)
        uiWidget.setMRMLScene(slicer.mrmlScene)
        self.logic = SceneLogic(
            slicer.mrmlScene,
            slicer.modules.segmentations.logic(),
            workFolder=Path(slicer.app.temporaryPath) / "LesionAI",
        )
        self._timer = qt.QTimer()
        self._timer.setInterval(POLL_INTERVAL_MS)
        self._timer.connect("timeout()", self.onTimer)
        self._setupWidgets()
        self._setupSegmentEditor()
        self._bindSignals()
        self.addObserver(slicer.mrmlScene, slicer.mrmlScene.StartCloseEvent, self.onSceneStartClose)
        self.addObserver(slicer.mrmlScene, slicer.mrmlScene.EndCloseEvent, self.onSceneEndClose)
        self.initializeParameterNode()

    def _setupWidgets(self) -> None:
        for name in INPUT_SELECTORS:
            getattr(self.ui, name).showChildNodeTypes = False  # no label maps among the inputs
        self.ui.lesionTable.setColumnCount(2)
        self.ui.lesionTable.setHorizontalHeaderLabels(["lesion", "grade group"])
        self.ui.lesionTable.horizontalHeader().setStretchLastSection(True)
        self.ui.candidateTable.setSelectionBehavior(qt.QAbstractItemView.SelectRows)
        self.ui.studyPathLineEdit.settingKey = "LesionAI/StudyFolder"
        self.ui.datasetPathLineEdit.settingKey = "LesionAI/DatasetFolder"
        self.ui.synthesisModelPathLineEdit.settingKey = "LesionAI/SynthesisModel"
        for keys in SHORTCUTS:
            shortcut = qt.QShortcut(qt.QKeySequence(keys), slicer.util.mainWindow())
            shortcut.setEnabled(False)
            shortcut.connect("activated()", lambda keys=keys: self._do(self.controller.shortcut, keys))
            self._shortcuts.append(shortcut)

    def _setupSegmentEditor(self) -> None:
        """The embedded Segment Editor, in Slicer's own order: its singleton node first, then the widget."""
        editorNode = slicer.mrmlScene.GetSingletonNode("LesionAISegmentEditor", "vtkMRMLSegmentEditorNode")
        if editorNode is None:
            editorNode = slicer.mrmlScene.CreateNodeByClass("vtkMRMLSegmentEditorNode")
            editorNode.UnRegister(None)
            editorNode.SetSingletonTag("LesionAISegmentEditor")  # before adding: one node per scene
            editorNode = slicer.mrmlScene.AddNode(editorNode)
        editor = slicer.qMRMLSegmentEditorWidget()
        editor.setMaximumNumberOfUndoStates(10)
        editor.setMRMLScene(slicer.mrmlScene)
        editor.setMRMLSegmentEditorNode(editorNode)
        self.ui.segmentEditorPlaceholder.layout().addWidget(editor)
        self._segmentEditor = editor

    def _bindSignals(self) -> None:
        ui = self.ui
        ui.loadStudyButton.connect("clicked(bool)", self.onLoadStudy)
        ui.autoAssignButton.connect("clicked(bool)", self.onAutoAssign)
        ui.modelSelector.connect("activated(int)", self.onModelChosen)
        ui.addModelButton.connect("clicked(bool)", self.onAddModel)
        ui.analyzeButton.connect("clicked(bool)", self.onAnalyze)
        ui.candidateTable.connect("clicked(QModelIndex)", self.onCandidateClicked)
        ui.exportDicomButton.connect("clicked(bool)", self.onExportDicom)
        ui.glandButton.connect("clicked(bool)", self.onSegmentGland)
        ui.psaSpinBox.connect("valueChanged(double)", self.onPsaChanged)
        ui.createAnnotationButton.connect("clicked(bool)", self.onCreateAnnotation)
        ui.saveCaseButton.connect("clicked(bool)", self.onSaveCase)
        ui.addToPoolButton.connect("clicked(bool)", self.onAddToPool)
        ui.nextCaseButton.connect("clicked(bool)", self.onNextCase)
        ui.finetuneButton.connect("clicked(bool)", self.onFinetune)
        ui.activateVersionButton.connect("clicked(bool)", self.onActivateNewVersion)
        ui.rollbackButton.connect("clicked(bool)", self.onRollback)
        ui.studyPathLineEdit.connect("currentPathChanged(QString)", self.onStudyFolderChosen)
        ui.datasetPathLineEdit.connect("currentPathChanged(QString)", self.onDatasetFolderChosen)
        ui.synthesisModelPathLineEdit.connect("currentPathChanged(QString)", self.onSynthesisModelChosen)
        ui.synthesisViewButton.connect("clicked(bool)", self.onViewSynthesisBox)

    def cleanup(self) -> None:
        """Module unload and Reload: stop every job's process tree, unbind, and let Reload import the logic afresh."""
        self._release()
        self.removeObservers()
        if UNSUPPORTED is None:
            LesionAILogic.forgetForReload()

    def _release(self) -> None:
        """Stop the jobs (whole process trees, waited for) and unbind the GUI from the scene's parameter node."""
        if self.controller is not None:
            self.controller.stopAll()
        if self._timer is not None:
            self._timer.stop()
        self._disconnectParameterNode()

    def enter(self) -> None:
        if UNSUPPORTED is not None:
            return
        self.initializeParameterNode()
        self._segmentEditor.updateEffectList()  # effects registered by modules loaded after ours
        self._segmentEditor.installKeyboardShortcuts()
        for shortcut in self._shortcuts:
            shortcut.setEnabled(True)

    def exit(self) -> None:
        if UNSUPPORTED is not None:
            return
        self._segmentEditor.setActiveEffect(None)
        self._segmentEditor.uninstallKeyboardShortcuts()
        for shortcut in self._shortcuts:
            shortcut.setEnabled(False)

    def onSceneStartClose(self, caller, event) -> None:
        self._release()
        self._segmentEditor.setSegmentationNode(None)

    def onSceneEndClose(self, caller, event) -> None:
        if self.parent.isEntered:
            self.initializeParameterNode()

    # ------------------------------------------------------------------ parameter node: once per scene
    def initializeParameterNode(self) -> None:
        """Bind the GUI to this scene's parameter node, once (a new scene gets a new binding)."""
        node = self.logic.getParameterNode()
        if self._parameterNode is not None and self._parameterNode.parameterNode is node:
            return
        self._disconnectParameterNode()
        self._parameterNode = LesionAIParameterNode(node)
        self._parameterNodeGuiTag = self._parameterNode.connectGui(self.ui)
        self.controller = PanelController(self.logic, PanelState(node), SlicerHost())
        if not self.controller.state.points:
            self.controller.state.points = slicer.mrmlScene.AddNewNodeByClass(
                "vtkMRMLMarkupsFiducialNode", slicer.mrmlScene.GenerateUniqueName("LesionAI points")
            )
        self.addObserver(node, slicer.vtkMRMLScriptedModuleNode.ModifiedEvent, self.onParameterNodeModified)
        self._render()

    def _disconnectParameterNode(self) -> None:
        if self._parameterNode is None:
            return
        self._parameterNode.disconnectGui(self._parameterNodeGuiTag)
        self.removeObserver(self._parameterNode.parameterNode, slicer.vtkMRMLScriptedModuleNode.ModifiedEvent,
                            self.onParameterNodeModified)
        self._parameterNode, self._parameterNodeGuiTag, self.controller = None, None, None

    # ------------------------------------------------------------------ slots: one call into the controller
    def _do(self, action, *args) -> None:
        """Run one controller action, then draw what it changed (and poll jobs while any run)."""
        action(*args)
        self._render()

    def onParameterNodeModified(self, caller=None, event=None) -> None:
        self._do(self.controller.reading.applyDisplay)

    def onTimer(self) -> None:
        self._do(self.controller.poll)

    def onStudyFolderChosen(self, path) -> None:
        self.controller.state.studyFolder = path
        self.ui.studyPathLineEdit.addCurrentPathToHistory()

    def onDatasetFolderChosen(self, path) -> None:
        self.controller.state.datasetFolder = path
        self.ui.datasetPathLineEdit.addCurrentPathToHistory()

    def onSynthesisModelChosen(self, path) -> None:
        self._do(self.controller.abnormality.chooseModel, path)
        self.ui.synthesisModelPathLineEdit.addCurrentPathToHistory()

    def onViewSynthesisBox(self) -> None:
        self._do(self.controller.abnormality.viewAtCursor)

    def onLoadStudy(self) -> None:
        self._do(self.controller.reading.loadStudy)

    def onAutoAssign(self) -> None:
        self._do(self.controller.reading.autoAssign)

    def onAnalyze(self) -> None:
        self._do(self.controller.reading.analyze)

    def onCandidateClicked(self, index) -> None:
        self._do(self.controller.reading.selectCandidate, int(float(index.sibling(index.row(), 0).data())))

    def onExportDicom(self) -> None:
        folder = qt.QFileDialog.getExistingDirectory(None, "Export the result to DICOM (an empty folder)")
        folder and self._do(self.controller.reading.exportDicom, folder)

    def onSegmentGland(self) -> None:
        self._do(self.controller.gland.segment)

    def onPsaChanged(self, value: float) -> None:
        self._do(self.controller.gland.setPsa, value)

    def onPointsChanged(self, caller=None, event=None) -> None:
        self._do(self.controller.reading.pointsChanged)

    def onModelChosen(self, index: int) -> None:
        self._do(self.controller.models.chooseModel, self.ui.modelSelector.itemData(index))

    def onAddModel(self) -> None:
        path = qt.QFileDialog.getOpenFileName(None, "Add a LesionAI model", "", "LesionAI model (*.safetensors)")
        path and self._do(self.controller.models.addModel, path)

    def onCreateAnnotation(self) -> None:
        self._do(self.controller.annotation.createAnnotation)

    def onGradeChosen(self, segmentId: str, choice: int) -> None:
        self._do(self.controller.annotation.setGrade, segmentId, choice)

    def onAnnotationModified(self, caller=None, event=None) -> None:
        self._render()

    def onSaveCase(self) -> None:
        self._do(self.controller.annotation.saveCase, True)

    def onAddToPool(self) -> None:
        self._do(self.controller.annotation.saveCase, False)

    def onNextCase(self) -> None:
        self._do(self.controller.annotation.nextCase)

    def onFinetune(self) -> None:
        self._do(self.controller.models.finetune)

    def onActivateNewVersion(self) -> None:
        self._do(self.controller.models.activateNewVersion)

    def onRollback(self) -> None:
        self._do(self.controller.models.rollback)

    # ------------------------------------------------------------------ drawing the controller's view
    def _render(self) -> None:
        if self.controller is None:
            return
        if self.controller.busy:
            self._timer.start()
        else:
            self._timer.stop()
        view = self.controller.view()
        self._renderReading(view.reading)
        self._renderAnnotation(view.annotation)
        self._renderModels(view.models)
        self._renderGland(view.gland)
        self._renderAbnormality(view.abnormality)

    def _renderReading(self, view) -> None:
        ui, state = self.ui, self.controller.state
        ui.statusLabel.text = view.status
        ui.rolesLabel.text = "<br>".join(f"<b>{line.role}</b>: {line.volume} — {line.reason}" for line in view.roles)
        ui.analyzeButton.text = view.analyzeLabel
        ui.analyzeButton.enabled = view.analyzeEnabled
        ui.analyzeButton.toolTip = view.analyzeTooltip
        ui.analysisProgressBar.value = view.analysisProgress
        ui.caseScoreLabel.text = view.caseScore
        ui.modelNameLabel.text = view.modelName
        ui.demoNoticeLabel.visible = bool(view.demoNotice)
        ui.demoNoticeLabel.text = f"<b>{view.demoNotice}</b>"
        ui.pointResultLabel.text = view.pointResult
        ui.exportDicomButton.enabled = view.exportEnabled
        table = self.logic.resultNodes(state.t2Volume)["table"] if state.t2Volume else None
        if ui.candidateTable.mrmlTableNode() is not table:
            ui.candidateTable.setMRMLTableNode(table)
        hidden = self.controller.reading.hiddenInputIds()
        for name in INPUT_SELECTORS:
            getattr(ui, name).sortFilterProxyModel().hiddenNodeIDs = hidden
        self._follow("points", state.points, self.onPointsChanged, (
            slicer.vtkMRMLMarkupsNode.PointPositionDefinedEvent,  # a point was placed
            slicer.vtkMRMLMarkupsNode.PointEndInteractionEvent,  # a point was moved
        ))
        ui.pointPlaceWidget.setCurrentNode(state.points)

    def _renderAnnotation(self, view) -> None:
        ui, state = self.ui, self.controller.state
        ui.createAnnotationButton.enabled = view.createEnabled
        ui.saveCaseButton.enabled = view.saveEnabled
        ui.addToPoolButton.enabled = view.poolEnabled
        ui.nextCaseButton.enabled = view.nextCaseEnabled
        ui.annotationStatusLabel.text = view.status
        ui.datasetSummaryLabel.text = view.datasetSummary
        if self._segmentEditor.segmentationNode() is not state.annotation:
            self._segmentEditor.setSegmentationNode(state.annotation)
            self._segmentEditor.setSourceVolumeNode(state.t2Volume)
        self._follow("annotation", state.annotation, self.onAnnotationModified, (
            slicer.vtkSegmentation.SegmentAdded, slicer.vtkSegmentation.SegmentRemoved,
            slicer.vtkSegmentation.SegmentModified,
        ))
        table = ui.lesionTable
        ids = [line.segmentId for line in view.lesions]
        if ids != self._shownLesionIds:  # rebuild only when segments come or go
            self._shownLesionIds = ids
            table.setRowCount(len(ids))
            for index, segmentId in enumerate(ids):
                table.setItem(index, 0, qt.QTableWidgetItem())
                combo = qt.QComboBox()
                combo.addItems(list(GRADE_CHOICES))
                combo.connect("activated(int)", lambda choice, segment=segmentId: self.onGradeChosen(segment, choice))
                table.setCellWidget(index, 1, combo)
        for index, line in enumerate(view.lesions):
            table.item(index, 0).setText(line.name + (" (grade proposed by the model)" if line.proposedByModel else ""))
            combo = table.cellWidget(index, 1)
            combo.blockSignals(True)
            combo.currentIndex = line.gradeChoice
            combo.blockSignals(False)

    def _renderModels(self, view) -> None:
        ui = self.ui
        models = [(line.label, line.version, line.active) for line in view.models] or [(view.unavailable, None, True)]
        if models != self._shownModels:
            self._shownModels = models
            ui.modelSelector.clear()
            for label, version, active in models:
                ui.modelSelector.addItem(label, version)
                if active:
                    ui.modelSelector.currentIndex = ui.modelSelector.count - 1
        ui.finetuneButton.text = view.finetuneLabel
        ui.finetuneButton.enabled = view.finetuneEnabled
        ui.epochProgressBar.value = view.finetuneProgress
        ui.finetuneStatusLabel.text = view.finetuneStatus
        ui.validationLabel.text = view.validation
        ui.activateVersionButton.enabled = view.activateEnabled

    def _renderGland(self, view) -> None:
        ui = self.ui
        ui.glandButton.text = view.segmentLabel
        ui.glandButton.enabled = view.segmentEnabled
        lines = [view.status, f"Gland volume {view.volume}; PSA density {view.psaDensity}", *view.warnings]
        ui.glandLabel.text = "<br>".join(line for line in lines if line)
        ui.psaSpinBox.blockSignals(True)
        ui.psaSpinBox.value = view.psa
        ui.psaSpinBox.blockSignals(False)

    def _renderAbnormality(self, view) -> None:
        ui = self.ui
        if ui.synthesisModelPathLineEdit.currentPath != view.modelPath:  # a reopened scene's model
            ui.synthesisModelPathLineEdit.blockSignals(True)
            ui.synthesisModelPathLineEdit.currentPath = view.modelPath
            ui.synthesisModelPathLineEdit.blockSignals(False)
        ui.analyzeWithAbnormalityCheckBox.enabled = view.modelAvailable
        ui.abnormalityVisibleCheckBox.enabled = view.mapLoaded
        ui.abnormalityOpacitySlider.enabled = view.mapLoaded
        ui.abnormalityStatusLabel.text = view.status
        ui.synthesisViewButton.enabled = view.viewEnabled and not view.viewRunning
        ui.synthesisViewStatusLabel.text = view.viewStatus
        if view.viewPng != self._shownViewPng:  # load the four panels once per new PNG
            self._shownViewPng = view.viewPng
            pixmap = qt.QPixmap(view.viewPng) if view.viewPng else qt.QPixmap()
            if not pixmap.isNull() and pixmap.width() > 480:
                pixmap = pixmap.scaledToWidth(480, qt.Qt.SmoothTransformation)
            ui.synthesisViewImageLabel.setPixmap(pixmap)

    def _follow(self, what: str, node, callback, events) -> None:
        """Observe ``events`` of ``node`` (instead of the node observed before for ``what``)."""
        previous = self._observed.get(what)
        if previous is node:
            return
        for event in events:
            if previous is not None:
                self.removeObserver(previous, event, callback)
            if node is not None:
                self.addObserver(node, event, callback)
        self._observed[what] = node


class _RecordingHost:
    """The self-test's stand-in for the dialogs: declines every question, records every error."""

    def __init__(self):
        self.errors = []

    def confirm(self, message: str) -> bool:
        return False

    def showError(self, message: str) -> None:
        self.errors.append(message)


class LesionAITest(ScriptedLoadableModuleTest):
    """In-Slicer self-test: phantom case → roles → analysis as the panel runs it (a job) → table → annotate → save.

    Skips, saying why, where PyTorch is not installed (a clean Slicer: install it from the panel's Analyze).
    """

    def setUp(self):
        slicer.mrmlScene.Clear()

    def runTest(self):
        self.setUp()
        if UNSUPPORTED is not None:
            self.skipTest(UNSUPPORTED)
        if not dependencies.torch_ready() or dependencies.missing_packages():
            missing = dependencies.describe_missing()
            self.delayDisplay(f"LesionAI self-test skipped: {missing} (press Analyze in the panel to install)")
            return
        self.test_LoadAnalyzeAnnotate()

    def test_LoadAnalyzeAnnotate(self):
        import tempfile

        from LesionAILib.adaptation.deployment import read_deployment
        from LesionAILib.phantom.cases import generate_case

        self.delayDisplay("Generating a phantom case")
        folder = Path(tempfile.mkdtemp(prefix="LesionAITest-"))
        phantom = generate_case(seed=7, site="A", index=0)
        logic = SceneLogic(slicer.mrmlScene, slicer.modules.segmentations.logic(), folder / "store", folder / "jobs")
        roles = ("t2w", "adc", "hbv")
        volumes = {role: logic.addVolumeFromImage(getattr(phantom, role), f"phantom {role}") for role in roles}
        host = _RecordingHost()
        panel = PanelController(logic, PanelState(logic.getParameterNode()), host)
        volumes = logic.assignRoles(overrides=volumes)
        panel.state.t2Volume, panel.state.adcVolume, panel.state.hbvVolume = (volumes[role] for role in roles)
        self.assertEqual([line.role for line in panel.view().reading.roles], ["t2w", "adc", "hbv"])

        self.delayDisplay("Analyzing (a lesionai job, as the panel runs it)")
        panel.reading.analyze()
        while panel.busy:
            panel.poll()
            time.sleep(0.2)
        view = panel.view().reading
        self.assertEqual(host.errors, [])
        self.assertGreaterEqual(len(view.rows), 1, view.status)
        table = logic.resultNodes(panel.state.t2Volume)["table"]
        self.assertEqual(table.GetNumberOfRows(), len(view.rows))
        panel.reading.selectCandidate(view.rows[0]["id"])
        self.assertEqual(panel.view().reading.selectedCandidate, view.rows[0]["id"])

        self.delayDisplay("Annotating")
        panel.annotation.createAnnotation()
        lesions = panel.view().annotation.lesions
        self.assertEqual(len(lesions), len([row for row in view.rows if row["id"] < 1000]))
        for lesion in lesions:
            panel.annotation.setGrade(lesion.segmentId, GRADE_CHOICES.index("GG2"))
        panel.state.datasetFolder = str(folder / "dataset")
        panel.annotation.saveCase(annotated=True)
        dataset = read_deployment(folder / "dataset")
        self.assertEqual((len(dataset.annotated), dataset.problems, host.errors), (1, [], []))
        self.delayDisplay("Test passed")

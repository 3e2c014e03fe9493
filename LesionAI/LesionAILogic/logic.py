"""``LesionAILogic``: LesionAI on an MRML scene — load, analyze, read, annotate, fine-tune. No Qt.

The same class serves the Slicer panel, Slicer's Python console and headless scripts on the
``slicer-core`` wheel: it takes the scene (and, optionally, the segmentations module logic)
explicitly and never reaches for ``slicer.mrmlScene``, ``slicer.app`` or Qt. It is a facade: each
method is that of one part, which a reader finds in its own module —

==============  ===================  ==================================================================
attribute       part                 methods
==============  ===================  ==================================================================
``inputs``      :mod:`.inputs`       loadStudy, loadDeploymentCase, addVolumeFromImage, assignRoles,
                                     caseFromNodes, suggestedCaseId
``models``      :mod:`.models`       modelStore, modelVersions, activeModelPath, activateModelVersion,
                                     rollbackModel, addModelFile
``results``     :mod:`.results`      analyze, loadAnalysisResult, resultNodes, resultSummary, showResult,
                                     showReading, heatmapNodes, resultFolder, setHeatmapOpacity, setHeatmapThreshold,
                                     candidateRows, jumpToCandidate
``points``      :mod:`.points`       classifyPoint, classifyControlPoint, putPointInTable,
                                     startPointClassification, putPointClassifications
``dataset``     :mod:`.dataset`      createAnnotation, addLesion, setLesionGrade, lesionGrades,
                                     saveAnnotatedCase, datasetSummary, nextCaseToAnnotate
``jobs``        :mod:`.jobs`         startAnalysis, startNextCaseSearch, startFinetuning, removeJobFolder
``abnormality`` :mod:`.abnormality_  loadAbnormalityMap, hasAbnormalityMap, abnormalityNode, removeAbnormalityMap,
                layer`               showAbnormality, abnormalityAt, cursorPosition, startSynthesisView,
                                     synthesisViewPng
==============  ===================  ==================================================================

Coordinates: the engine (:mod:`LesionAILib`) works in LPS mm; the scene in RAS mm. Geometry crosses
the boundary only in :mod:`LesionAILogic.volumes` (``F = diag(-1, -1, 1)``), so a point the engine
reports at LPS ``(x, y, z)`` is at RAS ``(-x, -y, z)`` in the scene, and volume nodes carry exactly
the SimpleITK geometry.

In Slicer::

    import LesionAILogic
    logic = LesionAILogic.LesionAILogic(slicer.mrmlScene, slicer.modules.segmentations.logic())
    volumes = logic.loadStudy("/data/ProstateX-0000")            # {"t2w": node, "adc": node, "hbv": node}
    analysis = logic.analyze(volumes["t2w"], volumes["adc"], volumes["hbv"])
    analysis.caseScore, analysis.modelName, logic.candidateRows(volumes["t2w"])
    logic.loadAnalysisResult("out/ProstateX-0000", volumes["t2w"])   # any `lesionai analyze` folder
    result = logic.classifyPoint(volumes, (-25.7457, -31.8707, -38.511))    # RAS mm
    logic.loadAbnormalityMap("out/ProstateX-0000", volumes["t2w"])  # `lesionai analyze --abnormality` folder
    logic.showAbnormality(volumes["t2w"], visible=True, opacity=0.5)   # beside the heatmap, own colours
    logic.abnormalityAt(volumes["t2w"], (-25.7457, -31.8707, -38.511))   # robust z at a RAS point (mm)

Heavy work (torch) runs in this process only in :meth:`analyze`, :meth:`classifyPoint` and
:meth:`nextCaseToAnnotate` (for scripts and tests); the panel uses the ``start…`` methods, which
run the ``lesionai`` commands in a separate process. Modules that need torch are imported when
first used, so the module loads (and can offer to install PyTorch) without it.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from pathlib import Path

import slicer

from LesionAILib.errors import LesionAIError

from .abnormality_layer import SceneAbnormality
from .dataset import SceneDataset
from .inputs import SceneInputs
from .jobs import SceneJobs
from .models import SceneModels
from .points import ScenePoints
from .results import SceneResults

MODULE_NAME = "LesionAI"


def _forward(part: str, method: Callable) -> Callable:
    """A facade method that calls ``method`` on ``self.<part>``, with its signature and docstring."""
    name = method.__name__

    @functools.wraps(method)
    def forwarded(self, *args, **kwargs):
        return getattr(getattr(self, part), name)(*args, **kwargs)

    return forwarded


class LesionAILogic:
    """LesionAI's scene logic (see module docstring).

    Args:
        scene: the ``vtkMRMLScene`` to work in.
        segmentationsLogic: the Segmentations module logic (``slicer.modules.segmentations.logic()``
            in Slicer, ``SlicerApp().segmentations_logic`` headless); optional — its label-map
            import/export methods are static.
        modelStore: model store folder (default ``$LESIONAI_HOME/models``).
        workFolder: where job inputs/outputs go (default: a new temporary folder).
    """

    def __init__(self, scene, segmentationsLogic=None, modelStore: str | Path | None = None, workFolder=None):
        if scene is None:
            raise LesionAIError("LesionAILogic needs an MRML scene")
        self.scene = scene
        self.segmentationsLogic = segmentationsLogic
        self.inputs = SceneInputs(scene)
        self.models = SceneModels(modelStore)
        self.results = SceneResults(scene, self.inputs, self.models)
        self.jobs = SceneJobs(self.inputs, self.models, workFolder)
        self.points = ScenePoints(self.inputs, self.results, self.jobs)
        self.dataset = SceneDataset(scene, self.inputs, self.models)
        self.abnormality = SceneAbnormality(scene, self.inputs, self.jobs)

    def getParameterNode(self):
        """The module's singleton ``vtkMRMLScriptedModuleNode`` (saved with the scene; the panel's state)."""
        node = self.scene.GetSingletonNode(MODULE_NAME, "vtkMRMLScriptedModuleNode")
        if node is None:
            node = slicer.vtkMRMLScriptedModuleNode()
            node.SetSingletonTag(MODULE_NAME)
            node.SetName(self.scene.GenerateUniqueName(MODULE_NAME))
            self.scene.AddNode(node)
        node.SetAttribute("ModuleName", MODULE_NAME)
        return node

    # inputs
    loadStudy = _forward("inputs", SceneInputs.loadStudy)
    loadDeploymentCase = _forward("inputs", SceneInputs.loadDeploymentCase)
    addVolumeFromImage = _forward("inputs", SceneInputs.addVolumeFromImage)
    assignRoles = _forward("inputs", SceneInputs.assignRoles)
    caseFromNodes = _forward("inputs", SceneInputs.caseFromNodes)
    suggestedCaseId = _forward("inputs", SceneInputs.suggestedCaseId)

    # models
    @property
    def modelStore(self):
        """The :class:`LesionAILib.models.store.ModelStore` this logic uses."""
        return self.models.modelStore

    modelVersions = _forward("models", SceneModels.modelVersions)
    activeModelPath = _forward("models", SceneModels.activeModelPath)
    activateModelVersion = _forward("models", SceneModels.activateModelVersion)
    rollbackModel = _forward("models", SceneModels.rollbackModel)
    addModelFile = _forward("models", SceneModels.addModelFile)

    # results: analysis, result folders, reading
    analyze = _forward("results", SceneResults.analyze)
    loadAnalysisResult = _forward("results", SceneResults.loadAnalysisResult)
    resultNodes = _forward("results", SceneResults.resultNodes)
    resultSummary = _forward("results", SceneResults.resultSummary)
    showResult = _forward("results", SceneResults.showResult)
    showReading = _forward("results", SceneResults.showReading)
    heatmapNodes = _forward("results", SceneResults.heatmapNodes)
    resultFolder = _forward("results", SceneResults.resultFolder)
    setHeatmapOpacity = _forward("results", SceneResults.setHeatmapOpacity)
    setHeatmapThreshold = _forward("results", SceneResults.setHeatmapThreshold)
    candidateRows = _forward("results", SceneResults.candidateRows)
    jumpToCandidate = _forward("results", SceneResults.jumpToCandidate)

    # point and classify
    classifyPoint = _forward("points", ScenePoints.classifyPoint)
    classifyControlPoint = _forward("points", ScenePoints.classifyControlPoint)
    putPointInTable = _forward("points", ScenePoints.putPointInTable)
    startPointClassification = _forward("points", ScenePoints.startPointClassification)
    putPointClassifications = _forward("points", ScenePoints.putPointClassifications)

    # annotation and the deployment dataset
    createAnnotation = _forward("dataset", SceneDataset.createAnnotation)
    addLesion = _forward("dataset", SceneDataset.addLesion)
    setLesionGrade = _forward("dataset", SceneDataset.setLesionGrade)
    lesionGrades = _forward("dataset", SceneDataset.lesionGrades)
    saveAnnotatedCase = _forward("dataset", SceneDataset.saveAnnotatedCase)
    datasetSummary = _forward("dataset", SceneDataset.datasetSummary)
    nextCaseToAnnotate = _forward("dataset", SceneDataset.nextCaseToAnnotate)

    # jobs in separate processes
    startAnalysis = _forward("jobs", SceneJobs.startAnalysis)
    startNextCaseSearch = _forward("jobs", SceneJobs.startNextCaseSearch)
    startFinetuning = _forward("jobs", SceneJobs.startFinetuning)
    removeJobFolder = _forward("jobs", SceneJobs.removeJobFolder)

    # the abnormality map (synthesis): layer, value at a point, the box viewer job
    loadAbnormalityMap = _forward("abnormality", SceneAbnormality.loadAbnormalityMap)
    hasAbnormalityMap = _forward("abnormality", SceneAbnormality.hasAbnormalityMap)
    abnormalityNode = _forward("abnormality", SceneAbnormality.abnormalityNode)
    removeAbnormalityMap = _forward("abnormality", SceneAbnormality.removeAbnormalityMap)
    showAbnormality = _forward("abnormality", SceneAbnormality.showAbnormality)
    abnormalityAt = _forward("abnormality", SceneAbnormality.abnormalityAt)
    cursorPosition = _forward("abnormality", SceneAbnormality.cursorPosition)
    startSynthesisView = _forward("abnormality", SceneAbnormality.startSynthesisView)
    synthesisViewPng = _forward("abnormality", SceneAbnormality.synthesisViewPng)

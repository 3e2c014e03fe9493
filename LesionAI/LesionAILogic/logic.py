"""``LesionAILogic``: LesionAI on an MRML scene — load, analyze, read, annotate, fine-tune. No Qt.

The same class serves the Slicer panel, Slicer's Python console and headless scripts on the
``slicer-core`` wheel: it takes the scene (and, optionally, the segmentations module logic)
explicitly and never reaches for ``slicer.mrmlScene``, ``slicer.app`` or Qt.

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

Point and classify: :meth:`classifyPoint` scores a RAS point with the ProstateX-trained patch
classifier (:mod:`LesionAILib.prostatex.point_classification`), and :meth:`classifyControlPoint` does it for a
markups control point and puts its probability, with the model's name, into the T2's candidate table
(row id ``POINT_ROW_ID_BASE + control point number``; no grade, volume or peak)::

    result = logic.classifyPoint(volumes, (-25.7457, -31.8707, -38.511))    # RAS mm
    result.probability, result.model_name

Heavy work (torch) runs in-process in :meth:`analyze` and :meth:`nextCaseToAnnotate` (for scripts and
tests); the panel uses :meth:`startAnalysis`, :meth:`startNextCaseSearch` and :meth:`startFinetuning`,
which run it in a separate process (:mod:`LesionAILogic.jobs`, :mod:`LesionAILogic.worker`).
Modules that need torch are imported when first used, so the module loads (and can offer to
install PyTorch) without it.
"""

from __future__ import annotations

import json
import logging
import os
import re
import shutil
import tempfile
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import SimpleITK as sitk
import slicer

from LesionAILib.errors import LesionAIError
from LesionAILib.geometry import Grid
from LesionAILib.studies.study import ROLE_NAMES, ROLES, Case, SeriesSource, make_case, open_case, open_files

from . import annotation, candidates, display, volumes, worker
from .jobs import JobRunner, python_executable
from .roles import OUTPUT_ATTRIBUTE, ROLE_ATTRIBUTE, ROLE_REASON_ATTRIBUTE, assign_roles

log = logging.getLogger(__name__)

MODULE_NAME = "LesionAI"
ROLE_LABELS = {"t2w": "T2", "adc": "ADC", "hbv": "high-b"}
CASE_ID_ATTRIBUTE = "LesionAI.CaseId"
SOURCE_ATTRIBUTE = "LesionAI.Source"
CASE_SCORE_ATTRIBUTE = "LesionAI.CaseScore"
MODEL_NAME_ATTRIBUTE = "LesionAI.ModelName"
MODEL_NOTICE_ATTRIBUTE = "LesionAI.ModelNotice"
DEMO_MODEL_ATTRIBUTE = "LesionAI.DemoModel"
DICOM_ATTRIBUTES = {
    "series_number": "DICOM.SeriesNumber",
    "series_description": "DICOM.SeriesDescription",
    "series_uid": "DICOM.SeriesInstanceUID",
    "b_value": "DICOM.DiffusionBValue",
}
POINT_ROW_ID_BASE = 1000  # candidate-table ids of classified points: 1000 + control point number (1, 2, ...)
# node references from the T2 volume to what LesionAI made for it
HEATMAP_REFERENCE = "LesionAI.Heatmap"
TABLE_REFERENCE = "LesionAI.CandidateTable"
CANDIDATES_REFERENCE = "LesionAI.Candidates"
ANNOTATION_REFERENCE = "LesionAI.Annotation"


@dataclass
class SceneAnalysis:
    """What an analysis put into the scene.

    Attributes:
        heatmap: scalar volume node, combined lesion heatmap (0–1) on exactly the T2 node's geometry.
        table: candidate table node (columns in :mod:`LesionAILogic.candidates`).
        candidateSegmentation: segmentation node, one outlined segment per candidate.
        candidates: the engine's :class:`~LesionAILib.inference.candidates.Candidate` list (LPS and RAS mm).
        caseScore: highest candidate probability (0–1); modelName/modelNotice: which model, and its notice.
        isDemoModel: the model was trained on synthetic data only (not for clinical use).
        result: the engine's :class:`~LesionAILib.inference.analyzer.Result` when analysed in this process.
    """

    heatmap: object
    table: object
    candidateSegmentation: object
    candidates: list
    caseScore: float
    modelName: str
    modelNotice: str
    isDemoModel: bool
    result: object = None
    timings: dict = field(default_factory=dict)


def _job_environment() -> dict[str, str]:
    """PYTHONPATH for job processes: the folders holding LesionAILib and LesionAILogic."""
    import LesionAILib

    folders = dict.fromkeys(
        [str(Path(LesionAILib.__file__).resolve().parents[1]), str(Path(__file__).resolve().parents[1])]
    )
    return {"PYTHONPATH": os.pathsep.join(folders)}


def _safe_case_id(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", text).strip("._") or "case"


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
        self._modelStoreFolder = Path(modelStore) if modelStore else None
        self._workFolder = Path(workFolder) if workFolder else None
        self._analyzer = None
        self._analyzerKey = None
        self._pointClassifier = None
        self._pointClassifierKey = None
        self._extractor = None
        self._extractorKey = None

    # ================================================================== parameter node
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

    # ================================================================== inputs
    def loadStudy(
        self,
        folder: str | Path | None = None,
        overrides: Mapping[str, str | int] | None = None,
        files: Mapping[str, str | Path] | None = None,
    ) -> dict:
        """Read a study with the engine and add its T2, ADC and high-b volumes to the scene.

        Args:
            folder: DICOM study folder (any nesting) or PI-CAI case folder.
            overrides: ``{role: series number or SeriesInstanceUID}`` (DICOM); always wins.
            files: ``{role: image file}``, replacing that role of ``folder`` (or all three without it).

        Returns:
            ``{"t2w", "adc", "hbv": vtkMRMLScalarVolumeNode}`` with exact geometry (IJKToRAS from the
            SimpleITK image after LPS→RAS), named ``"<patient> <role> (<series>: <description>)"``, and
            attributes: role and why it was chosen, DICOM series number/description/UID, b-value,
            case id and source. The ADC is in µm²/s (rescaled by the engine if stored in mm²/s).
        """
        case = open_case(folder, overrides, files)
        return self._addCase(case)

    def loadDeploymentCase(self, datasetFolder: str | Path, caseId: str) -> dict:
        """Add the three volumes of a case of a deployment dataset to the scene (as :meth:`loadStudy`)."""
        folder = Path(datasetFolder) / "cases" / caseId
        paths = {role: folder / f"{role}.nii.gz" for role in ROLES}
        case = open_files(paths["t2w"], paths["adc"], paths["hbv"], patient_id=caseId)
        return self._addCase(case)

    def _addCase(self, case: Case) -> dict:
        nodes = {}
        for role in ROLES:
            source = case.sources[role]
            series = f" ({source.series_number}: {source.series_description})" if source.series_number else ""
            attributes = {
                ROLE_REASON_ATTRIBUTE: source.reason,
                CASE_ID_ATTRIBUTE: case.case_id,
                "DICOM.PatientID": case.patient_id,
                "DICOM.StudyID": case.study_id,
                SOURCE_ATTRIBUTE: source.to_dict()["source"],
            }
            for key, attribute in DICOM_ATTRIBUTES.items():
                value = getattr(source, key)
                if value not in (None, ""):
                    attributes[attribute] = f"{value:g}" if isinstance(value, float) else str(value)
            name = f"{case.patient_id} {ROLE_LABELS[role]}{series}"
            nodes[role] = self.addVolumeFromImage(case.image(role), name, role, attributes)
        return nodes

    def addVolumeFromImage(self, image: sitk.Image, name: str, role: str | None = None, attributes=None):
        """Add a 3D SimpleITK image (LPS geometry) as a scalar volume node with exact geometry."""
        node = self.scene.AddNewNodeByClass("vtkMRMLScalarVolumeNode", name)
        volumes.set_node_from_image(node, image)
        if role:
            node.SetAttribute(ROLE_ATTRIBUTE, role)
        for key, value in (attributes or {}).items():
            node.SetAttribute(key, str(value))
        node.CreateDefaultDisplayNodes()
        node.GetScalarVolumeDisplayNode().AutoWindowLevelOn()
        return node

    def assignRoles(self, volumeNodes: Sequence | None = None, overrides: Mapping[str, object] | None = None) -> dict:
        """Pick T2/ADC/high-b among ``volumeNodes`` (default: every scalar volume in the scene).

        Roles recorded by :meth:`loadStudy` win, then names/DICOM descriptions (see
        :mod:`LesionAILogic.roles`); ``overrides`` (``{role: node}``) always win. The chosen nodes get
        the role and the reason as attributes. Returns ``{role: node}``.
        """
        if volumeNodes is None:
            volumeNodes = display.nodes_of_class(self.scene, "vtkMRMLScalarVolumeNode")
            volumeNodes = [n for n in volumeNodes if n.GetClassName() == "vtkMRMLScalarVolumeNode"]
        chosen, reasons = assign_roles(volumeNodes, overrides)
        for role, node in chosen.items():
            node.SetAttribute(ROLE_ATTRIBUTE, role)
            node.SetAttribute(ROLE_REASON_ATTRIBUTE, reasons[role])
        return chosen

    def caseFromNodes(self, t2, adc, hbv) -> Case:
        """An engine :class:`~LesionAILib.studies.study.Case` from three volume nodes (exact geometry, RAS→LPS).

        Raises :class:`LesionAIError` for a missing role, the same volume in two roles, a non-scalar
        volume, or sequences that cannot belong together (e.g. an ADC far from the T2).
        """
        given = {"t2w": t2, "adc": adc, "hbv": hbv}
        missing = [ROLE_NAMES[role] for role, node in given.items() if node is None]
        if missing:
            raise LesionAIError(
                f"missing {', '.join(missing)}", hint="load a study or choose the T2, ADC and high-b volumes"
            )
        ids = {}
        for role, node in given.items():
            if node.GetID() in ids:
                raise LesionAIError(
                    f"'{node.GetName()}' is selected as both {ROLE_NAMES[ids[node.GetID()]]} and {ROLE_NAMES[role]}"
                )
            ids[node.GetID()] = role
        images, sources = {}, {}
        for role, node in given.items():
            images[role] = volumes.image_from_node(node)
            b_value = node.GetAttribute(DICOM_ATTRIBUTES["b_value"])
            number = node.GetAttribute(DICOM_ATTRIBUTES["series_number"])
            sources[role] = SeriesSource(
                role=role,
                reason=node.GetAttribute(ROLE_REASON_ATTRIBUTE) or f"Slicer volume '{node.GetName()}'",
                paths=[node.GetName()],
                series_number=int(number) if number and number.isdigit() else None,
                series_description=node.GetAttribute(DICOM_ATTRIBUTES["series_description"]) or "",
                series_uid=node.GetAttribute(DICOM_ATTRIBUTES["series_uid"]) or "",
                b_value=float(b_value) if b_value else None,
            )
        patient = t2.GetAttribute("DICOM.PatientID") or t2.GetAttribute(CASE_ID_ATTRIBUTE) or t2.GetName()
        study = t2.GetAttribute("DICOM.StudyID") or ""
        return make_case(images, patient, study, sources, None)

    def suggestedCaseId(self, t2) -> str:
        """A deployment-dataset case id for the study of ``t2`` (letters, digits, ``-``, ``_``, ``.``)."""
        return _safe_case_id(t2.GetAttribute(CASE_ID_ATTRIBUTE) or t2.GetName())

    # ================================================================== models
    @property
    def modelStore(self):
        """The :class:`LesionAILib.models.store.ModelStore` this logic uses."""
        from LesionAILib.models.store import ModelStore

        return ModelStore(self._modelStoreFolder)

    def modelVersions(self) -> list[dict]:
        """Every model version: ``{"version", "path", "active", "validation_score", "note", "label"}``."""
        rows = []
        for version in self.modelStore.versions():
            score = (version.validation or {}).get("after", {}).get("score")
            if version.version == "demo":
                kind = "bundled demo model (synthetic data)"
            else:
                kind = f"fine-tuned from {version.parent}" if version.parent else "added model"
            label = f"{version.version} — {kind}"
            if score is not None:
                label += f" — validation {score:.3f}"
            if version.active:
                label += " (active)"
            rows.append({**version.to_dict(), "validation_score": score, "label": label})
        return rows

    def activeModelPath(self) -> Path:
        """The active model version's file."""
        return self.modelStore.active_path()

    def activateModelVersion(self, version: str) -> None:
        """Make ``version`` the active model (atomic; :meth:`rollbackModel` undoes it)."""
        self.modelStore.activate(version)

    def rollbackModel(self) -> str:
        """Re-activate the previously active model version; returns it."""
        return self.modelStore.rollback()

    def addModelFile(self, path: str | Path, note: str = "user model") -> str:
        """Copy a model file into the store as a new (inactive) version; returns the version name."""
        return self.modelStore.add(path, note=note)

    def _modelPath(self, model: str | Path | None) -> Path:
        if model is None:
            return self.activeModelPath()
        path = Path(model)
        if not path.exists() and re.fullmatch(r"demo|v\d+", str(model)):
            return self.modelStore.path(str(model))
        return path

    def _analyzerFor(self, model, device: str):
        from LesionAILib.inference.analyzer import Analyzer

        path = self._modelPath(model)
        key = (str(path), path.stat().st_mtime if path.exists() else None, device)
        if self._analyzerKey != key:
            self._analyzer, self._analyzerKey = Analyzer(path, device=device), key
        return self._analyzer

    # ================================================================== analysis
    def analyze(
        self,
        t2,
        adc,
        hbv,
        model: str | Path | None = None,
        device: str = "auto",
        progress: Callable[[str, float], None] | None = None,
        show: bool = True,
    ) -> SceneAnalysis:
        """Analyze in this process and put the result into the scene (creating or updating its nodes).

        Args:
            t2, adc, hbv: scalar volume nodes.
            model: model file, model version name (``"demo"``, ``"v3"``) or ``None`` for the active version.
            device: ``"auto"`` (CUDA when available), ``"cpu"`` or ``"cuda"``.
            progress: ``progress(stage, fraction 0–1)`` after each analysis stage.
            show: T2 as background and the heatmap as foreground in every slice view.
        """
        from LesionAILib.models.modelfile import DEMO_NOTICE

        case = self.caseFromNodes(t2, adc, hbv)
        analyzer = self._analyzerFor(model, device)
        result = analyzer.analyze(case, progress=progress)
        analysis = self._putResult(
            t2,
            result.heatmap,
            result.candidate_map,
            result.candidates,
            result.case_score,
            result.model_name,
            result.model_notice,
            result.model_notice == DEMO_NOTICE,
        )
        analysis.result, analysis.timings = result, dict(result.timings)
        if show:
            self.showResult(t2)
        return analysis

    def startAnalysis(
        self, t2, adc, hbv, model: str | Path | None = None, device: str = "auto", python: str | None = None
    ) -> JobRunner:
        """Start the analysis in a separate process (returns at once); see :mod:`LesionAILogic.worker`.

        The inputs are checked and written to the job's folder first (errors raise here). Poll the
        returned :class:`~LesionAILogic.jobs.JobRunner`; when it has finished, call
        :meth:`loadAnalysisResult` with ``job.work_folder / "result"`` on the main thread.
        """
        case = self.caseFromNodes(t2, adc, hbv)
        folder = Path(tempfile.mkdtemp(prefix="analysis-", dir=self._jobsFolder()))
        inputs = {role: folder / "inputs" / f"{role}.nrrd" for role in ROLES}
        inputs["t2w"].parent.mkdir(parents=True)
        for role, path in inputs.items():
            sitk.WriteImage(case.image(role), str(path), False)
        command = [python or python_executable(), "-m", "LesionAILogic.worker", "analyze"]
        command += [arg for role in ROLES for arg in (f"--{role}", str(inputs[role]))]
        command += ["--out", str(folder / "result"), "--case-id", case.case_id]
        command += ["--model", str(self._modelPath(model)), "--device", device]
        return JobRunner(command, folder, _job_environment()).start()

    def loadAnalysisResult(self, resultFolder: str | Path, t2, show: bool = True) -> SceneAnalysis:
        """Put what a worker analysis wrote (``heatmap.nrrd``, ``candidates.nrrd``, ``result.json``) into the scene."""
        from LesionAILib.inference.candidates import Candidate

        folder = Path(resultFolder)
        try:
            summary = json.loads((folder / worker.RESULT_FILE).read_text(encoding="utf-8"))
            heatmap = sitk.ReadImage(str(folder / worker.HEATMAP_FILE))
            candidate_map = sitk.ReadImage(str(folder / worker.CANDIDATE_MAP_FILE))
        except (OSError, RuntimeError, json.JSONDecodeError) as error:
            raise LesionAIError(f"analysis result is incomplete ({type(error).__name__})", folder) from None
        found = [Candidate(**item) for item in summary["candidates"]]
        analysis = self._putResult(
            t2,
            heatmap,
            candidate_map,
            found,
            summary["case_score"],
            summary["model_name"],
            summary["model_notice"],
            bool(summary["demo_model"]),
        )
        analysis.timings = summary.get("timings_s", {})
        if show:
            self.showResult(t2)
        return analysis

    def _jobsFolder(self) -> Path:
        if self._workFolder is None:
            self._workFolder = Path(tempfile.mkdtemp(prefix="LesionAI-"))
        self._workFolder.mkdir(parents=True, exist_ok=True)
        return self._workFolder

    def _referenced(self, t2, reference: str, class_name: str, name: str):
        node = t2.GetNodeReference(reference)
        if node is None or node.GetScene() is not self.scene:
            node = self.scene.AddNewNodeByClass(class_name, self.scene.GenerateUniqueName(name))
            t2.SetNodeReferenceID(reference, node.GetID())
        return node

    def _putResult(self, t2, heatmap, candidate_map, found, case_score, model_name, notice, is_demo):
        """Create or update the heatmap, table and candidate segmentation of ``t2`` (images in T2 geometry, LPS)."""
        expected = volumes.ijk_to_ras_of_node(t2)
        actual = volumes.ijk_to_ras_of_image(heatmap)
        if tuple(heatmap.GetSize()) != tuple(t2.GetImageData().GetDimensions()) or not np.allclose(
            actual, expected, atol=1e-3
        ):
            raise LesionAIError(f"the analysis result is not on the grid of '{t2.GetName()}'; analyze it again")
        base = t2.GetName()
        heatmap_node = self._referenced(t2, HEATMAP_REFERENCE, "vtkMRMLScalarVolumeNode", f"{base} LesionAI heatmap")
        fresh = heatmap_node.GetDisplayNode() is None
        volumes.set_node_from_array(heatmap_node, sitk.GetArrayFromImage(heatmap).astype(np.float32), t2)
        if fresh:
            display.style_heatmap(heatmap_node)
        table = self._referenced(t2, TABLE_REFERENCE, "vtkMRMLTableNode", f"{base} LesionAI candidates")
        candidates.fill_table(table, found, model_name)
        outlines = self._referenced(
            t2, CANDIDATES_REFERENCE, "vtkMRMLSegmentationNode", f"{base} LesionAI candidate outlines"
        )
        candidates.fill_candidate_segmentation(outlines, candidate_map, found, t2)
        attributes = {
            OUTPUT_ATTRIBUTE: "heatmap",
            CASE_SCORE_ATTRIBUTE: f"{float(case_score):.6f}",
            MODEL_NAME_ATTRIBUTE: model_name,
            MODEL_NOTICE_ATTRIBUTE: notice,
            DEMO_MODEL_ATTRIBUTE: "true" if is_demo else "false",
        }
        for node in (heatmap_node, table, outlines):
            for key, value in attributes.items():
                node.SetAttribute(key, value)
        return SceneAnalysis(heatmap_node, table, outlines, list(found), float(case_score), model_name, notice, is_demo)

    # ================================================================== point and classify
    def _pointClassifierFor(self, model):
        from LesionAILib.prostatex.classifier import bundled_classifier_path
        from LesionAILib.prostatex.point_classification import PointClassifier

        path = Path(model) if model is not None else bundled_classifier_path()
        key = (str(path), path.stat().st_mtime if path.exists() else None)
        if self._pointClassifierKey != key:
            self._pointClassifier, self._pointClassifierKey = PointClassifier(path), key
        return self._pointClassifier

    def _extractorFor(self, t2, adc, hbv):
        """A patch extractor of the three volumes, reused while their voxels and geometry stay the same."""
        from LesionAILib.prostatex.patches import PatchExtractor

        nodes = (t2, adc, hbv)
        key = None  # a missing volume: caseFromNodes says which
        if all(node is not None and node.GetImageData() is not None for node in nodes):
            key = tuple(
                (node.GetID(), node.GetImageData().GetMTime(), *np.round(volumes.ijk_to_ras_of_node(node), 6).ravel())
                for node in nodes
            )
        if key is None or self._extractorKey != key:
            self._extractor, self._extractorKey = PatchExtractor(self.caseFromNodes(*nodes)), key
        return self._extractor

    @staticmethod
    def _roleNodes(volumeNodes) -> tuple:
        if isinstance(volumeNodes, Mapping):
            return tuple(volumeNodes.get(role) for role in ROLES)
        return tuple(volumeNodes)

    def classifyPoint(self, volumeNodes, rasPoint: Sequence[float], model: str | Path | None = None, zone=None):
        """Probability of clinically significant cancer at a RAS point (mm), from the ProstateX-trained classifier.

        Args:
            volumeNodes: ``{"t2w", "adc", "hbv": volume node}`` (as :meth:`loadStudy` returns) or ``(t2, adc, hbv)``.
            rasPoint: the point in world RAS millimetres.
            model: a patch-classifier file (default: the bundled ProstateX classifier).
            zone: ``"PZ"``, ``"TZ"``, ``"AS"``, ``"SV"`` or ``None`` (unknown: averaged over the zones).

        Returns:
            :class:`LesionAILib.prostatex.point_classification.PointClassification` (``probability``,
            ``model_name``, ``intended_use``, the ``patches`` with the point in LPS and RAS). Raises
            :class:`LesionAIError` (one line) for a missing volume or a point outside a volume.
        """
        extractor = self._extractorFor(*self._roleNodes(volumeNodes))
        return self._pointClassifierFor(model).classify(extractor, rasPoint, ras=True, zone=zone)

    def classifyControlPoint(self, volumeNodes, markupsNode, index: int, model: str | Path | None = None, zone=None):
        """Classify control point ``index`` of ``markupsNode`` (its world position) and show it in the candidate table.

        The T2's candidate table (created if the T2 has not been analysed) gets a row with id
        ``POINT_ROW_ID_BASE + index + 1`` (replaced when the point is classified again): the probability,
        the point in RAS and the model name; the control point's description becomes the probability and
        the model. Returns the :meth:`classifyPoint` result.
        """
        position = [0.0, 0.0, 0.0]
        markupsNode.GetNthControlPointPositionWorld(index, position)
        result = self.classifyPoint(volumeNodes, position, model, zone)
        t2 = self._roleNodes(volumeNodes)[0]
        self.putPointInTable(t2, POINT_ROW_ID_BASE + index + 1, result.probability, position, result.model_name)
        markupsNode.SetNthControlPointDescription(index, f"p = {result.probability:.2f} ({result.model_name})")
        return result

    def putPointInTable(self, t2, rowId: int, probability: float, rasPoint: Sequence[float], modelName: str) -> None:
        """Add or replace row ``rowId`` of ``t2``'s candidate table for a classified point (no grade, volume, peak)."""
        table = self._referenced(t2, TABLE_REFERENCE, "vtkMRMLTableNode", f"{t2.GetName()} LesionAI candidates")
        if table.GetTable().GetColumnByName("id") is None:
            candidates.fill_table(table, [], modelName)
        values = {
            "id": int(rowId),
            "probability": float(probability),
            "grade group": "",
            "volume ml": float("nan"),
            "R mm": float(rasPoint[0]),
            "A mm": float(rasPoint[1]),
            "S mm": float(rasPoint[2]),
            "peak": float("nan"),
            "model": modelName,
        }
        cells = table.GetTable()
        ids = cells.GetColumnByName("id")
        row = next((r for r in range(cells.GetNumberOfRows()) if ids.GetValue(r) == int(rowId)), None)
        disabled = table.StartModify()
        if row is None:
            row = cells.InsertNextBlankRow()
        for name, value in values.items():
            cells.GetColumnByName(name).SetValue(row, value)
        cells.Modified()
        table.Modified()
        table.EndModify(disabled)

    # ================================================================== reading
    def resultNodes(self, t2) -> dict:
        """``{"heatmap", "table", "candidates", "annotation"}`` nodes LesionAI made for ``t2`` (``None`` if absent)."""
        return {
            "heatmap": t2.GetNodeReference(HEATMAP_REFERENCE),
            "table": t2.GetNodeReference(TABLE_REFERENCE),
            "candidates": t2.GetNodeReference(CANDIDATES_REFERENCE),
            "annotation": t2.GetNodeReference(ANNOTATION_REFERENCE),
        }

    def resultSummary(self, t2) -> dict | None:
        """``{"caseScore", "modelName", "modelNotice", "isDemoModel"}`` of ``t2``'s last analysis, or ``None``."""
        heatmap = t2.GetNodeReference(HEATMAP_REFERENCE)
        if heatmap is None or heatmap.GetAttribute(CASE_SCORE_ATTRIBUTE) is None:
            return None
        return {
            "caseScore": float(heatmap.GetAttribute(CASE_SCORE_ATTRIBUTE)),
            "modelName": heatmap.GetAttribute(MODEL_NAME_ATTRIBUTE) or "",
            "modelNotice": heatmap.GetAttribute(MODEL_NOTICE_ATTRIBUTE) or "",
            "isDemoModel": heatmap.GetAttribute(DEMO_MODEL_ATTRIBUTE) == "true",
        }

    def showResult(self, t2, opacity: float = display.DEFAULT_OPACITY) -> None:
        """T2 as background, its heatmap as foreground (``opacity``), candidate outlines, in every slice view."""
        nodes = self.resultNodes(t2)
        display.show_in_slice_views(self.scene, t2, nodes["heatmap"], opacity)

    def setHeatmapOpacity(self, opacity: float) -> None:
        """Foreground (heatmap) opacity 0–1 in every slice view."""
        display.set_foreground_opacity(self.scene, opacity)

    def setHeatmapThreshold(self, t2, threshold: float) -> None:
        """Hide heatmap values of ``t2``'s heatmap below ``threshold`` (0–1)."""
        heatmap = t2.GetNodeReference(HEATMAP_REFERENCE)
        if heatmap is not None:
            display.set_heatmap_threshold(heatmap, threshold)

    def candidateRows(self, t2) -> list[dict]:
        """The candidate table of ``t2`` as dicts (``id``, ``probability``, ``grade group``, ``R mm``, …)."""
        table = t2.GetNodeReference(TABLE_REFERENCE)
        return candidates.read_table(table) if table is not None else []

    def jumpToCandidate(self, t2, candidateId: int, highlight: bool = True) -> tuple[float, float, float]:
        """Centre every slice view on a candidate (and highlight its outline); returns its RAS centre (mm)."""
        row = next((r for r in self.candidateRows(t2) if int(r["id"]) == int(candidateId)), None)
        if row is None:
            raise LesionAIError(f"no candidate {candidateId} for '{t2.GetName()}'")
        point = (row["R mm"], row["A mm"], row["S mm"])
        display.jump_slices_to(self.scene, point)
        outlines = t2.GetNodeReference(CANDIDATES_REFERENCE)
        if highlight and outlines is not None:
            display.outline_segmentation(outlines, candidates.segment_of_candidate(outlines, candidateId))
        return point

    # ================================================================== annotation
    def createAnnotation(self, t2, prefillFromCandidates: bool = False):
        """A segmentation node on ``t2``'s geometry for outlining lesions (one segment per lesion).

        With ``prefillFromCandidates``, every candidate outline of ``t2``'s last analysis becomes a
        lesion with the predicted grade pre-filled (tagged as model-proposed until confirmed).
        """
        node = self.scene.AddNewNodeByClass(
            "vtkMRMLSegmentationNode", self.scene.GenerateUniqueName(f"{t2.GetName()} lesions")
        )
        node.SetReferenceImageGeometryParameterFromVolumeNode(t2)
        node.SetAttribute("LesionAI.Annotation", "1")
        t2.SetNodeReferenceID(ANNOTATION_REFERENCE, node.GetID())
        node.CreateDefaultDisplayNodes()
        if prefillFromCandidates:
            source = t2.GetNodeReference(CANDIDATES_REFERENCE)
            if source is None:
                raise LesionAIError(f"'{t2.GetName()}' has not been analysed", hint="press Analyze first")
            annotation.copy_candidates(node, source)
        return node

    def addLesion(self, segmentationNode, gradeGroup: int | None = None) -> str:
        """Add an empty lesion segment (to paint); returns its segment id."""
        return annotation.add_lesion(segmentationNode, gradeGroup)

    def setLesionGrade(self, segmentationNode, segmentId: str, gradeGroup: int | None, zone: str | None = None):
        """Set a lesion's ISUP grade group (0–5, ``None`` clears it) and optionally its zone."""
        annotation.set_grade(segmentationNode, segmentId, gradeGroup, zone)

    def lesionGrades(self, segmentationNode) -> list[dict]:
        """``[{"segmentId", "name", "gradeGroup" (or None), "proposedByModel"}]`` in segment order."""
        segmentation = segmentationNode.GetSegmentation()
        rows = []
        for index in range(segmentation.GetNumberOfSegments()):
            segment = segmentation.GetNthSegment(index)
            rows.append(
                {
                    "segmentId": segmentation.GetNthSegmentID(index),
                    "name": segment.GetName(),
                    "gradeGroup": annotation.grade_of(segment),
                    "proposedByModel": candidates.segment_tag(segment, annotation.GRADE_SOURCE_TAG) == "model",
                }
            )
        return rows

    def saveAnnotatedCase(
        self, datasetFolder: str | Path, caseId: str, t2, adc, hbv, segmentationNode, annotator: str = ""
    ) -> Path:
        """Write the case and its lesions into a deployment dataset (atomically; replaces that case).

        Each non-empty segment of ``segmentationNode`` is one lesion and must carry a grade group;
        the lesion mask is exported on exactly the T2 grid. ``segmentationNode=None`` adds the case
        unannotated (to the pool that :meth:`nextCaseToAnnotate` orders). Returns the case folder.
        """
        from LesionAILib.adaptation.deployment import save_case

        case = self.caseFromNodes(t2, adc, hbv)
        mask_image, lesions = None, None
        if segmentationNode is not None:
            mask, lesions, skipped = annotation.lesion_mask(segmentationNode, t2)
            if skipped:
                log.info("not saved (nothing painted): %s", ", ".join(skipped))
            mask_image = Grid.from_image(case.t2w).image_from_array(mask)
        sources = {
            role: node.GetAttribute(SOURCE_ATTRIBUTE) or node.GetName()
            for role, node in zip(ROLES, (t2, adc, hbv), strict=True)
        }
        folder = save_case(
            datasetFolder,
            caseId,
            dict(zip(ROLES, (case.t2w, case.adc, case.hbv), strict=True)),
            mask_image,
            lesions,
            annotator,
            sources,
        )
        if segmentationNode is not None:
            segmentationNode.SetAttribute("LesionAI.SavedTo", str(folder))
        return folder

    def datasetSummary(self, datasetFolder: str | Path) -> dict:
        """Counts of a deployment dataset (cases, annotated, unannotated, lesions, csPCa lesions) and its problems."""
        from LesionAILib.adaptation.deployment import read_deployment

        dataset = read_deployment(datasetFolder)
        return {**dataset.summary(), "problem_list": list(dataset.problems)}

    def nextCaseToAnnotate(
        self, poolFolder: str | Path, model: str | Path | None = None, device: str = "auto", samples: int = 8
    ) -> str | None:
        """The unannotated case of a deployment dataset the model is least sure about (``None`` if none left)."""
        from LesionAILib.adaptation.deployment import read_deployment
        from LesionAILib.adaptation.ordering import order_by_uncertainty

        pool = read_deployment(poolFolder).unannotated
        if not pool:
            return None
        ordered = order_by_uncertainty(self._analyzerFor(model, device), [c.record() for c in pool], samples)
        return ordered[0].case_id

    def startNextCaseSearch(
        self,
        poolFolder: str | Path,
        model: str | Path | None = None,
        device: str = "auto",
        samples: int = 8,
        python: str | None = None,
    ) -> JobRunner:
        """:meth:`nextCaseToAnnotate` in a separate process; the job's result is ``{"case", "order"}``."""
        folder = Path(tempfile.mkdtemp(prefix="next-case-", dir=self._jobsFolder()))
        command = [python or python_executable(), "-m", "LesionAILogic.worker", "next-case"]
        command += ["--dataset", str(poolFolder), "--model", str(self._modelPath(model)), "--device", device]
        command += ["--samples", str(int(samples))]
        return JobRunner(command, folder, _job_environment()).start()

    # ================================================================== fine-tuning
    def startFinetuning(
        self,
        datasetFolder: str | Path,
        epochs: int = 8,
        classifierEpochs: int = 4,
        device: str = "auto",
        force: bool = False,
        base: str | None = None,
        runFolder: str | Path | None = None,
        python: str | None = None,
    ) -> JobRunner:
        """Start ``lesionai finetune`` on a deployment dataset in a separate process (returns at once).

        The job validates the base and the fine-tuned model on held-out cases and stores a new
        version, activated only if it validates at least as well (or ``force``). Follow it with
        ``job.poll()``: ``job.state`` has the stage, epoch (of ``epochs``/``classifierEpochs``),
        loss and validation score; ``job.state.result`` the final ``{"version", "activated",
        "validation_before", "validation_after", ...}``. ``job.cancel()`` stops it, leaving the
        store unchanged; rerunning with the same ``runFolder`` resumes.
        """
        command = [python or python_executable(), "-m", "LesionAILib.cli.main", "finetune", "--json-events"]
        command += ["--dataset", str(datasetFolder), "--store", str(self.modelStore.root), "--device", device]
        command += ["--epochs", str(int(epochs)), "--classifier-epochs", str(int(classifierEpochs))]
        if runFolder:
            command += ["--run", str(runFolder)]
        if base:
            command += ["--base", base]
        if force:
            command.append("--force")
        folder = Path(tempfile.mkdtemp(prefix="finetune-", dir=self._jobsFolder()))
        return JobRunner(command, folder, _job_environment(), epochs={1: int(epochs), 2: int(classifierEpochs)}).start()

    def removeJobFolder(self, job: JobRunner) -> None:
        """Delete a finished job's folder (inputs, outputs, logs)."""
        if job.state.finished and self._workFolder and job.work_folder.parent == self._workFolder:
            shutil.rmtree(job.work_folder, ignore_errors=True)

"""Analysis results in the scene: heatmap, candidate table and outlines of a T2 node, and how they are shown.

A result comes either from an analysis in this process (:meth:`SceneResults.analyze`, for scripts
and tests) or from any folder ``lesionai analyze`` wrote (:meth:`SceneResults.loadAnalysisResult`,
read by :func:`LesionAILib.inference.results.read_result`, the one reader). Either way the T2 node
references the nodes made for it (:data:`HEATMAP_REFERENCE`, …), which carry the case score and
the model as attributes, so a saved scene shows them again.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import SimpleITK as sitk

from LesionAILib.errors import LesionAIError

from . import candidates, display, volumes
from .roles import OUTPUT_ATTRIBUTE

CASE_SCORE_ATTRIBUTE = "LesionAI.CaseScore"
MODEL_NAME_ATTRIBUTE = "LesionAI.ModelName"
MODEL_NOTICE_ATTRIBUTE = "LesionAI.ModelNotice"
DEMO_MODEL_ATTRIBUTE = "LesionAI.DemoModel"
# node references from the T2 volume to what LesionAI made for it
HEATMAP_REFERENCE = "LesionAI.Heatmap"
SEQUENCE_HEATMAP_REFERENCE = "LesionAI.Heatmap."  # + role: the per-sequence maps
RESULT_FOLDER_ATTRIBUTE = "LesionAI.ResultFolder"  # on the heatmap: the result folder it was loaded from
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


class SceneResults:
    """Puts analysis results into ``scene`` on top of their T2 node, reads them back and shows them."""

    def __init__(self, scene, inputs, models):
        self.scene = scene
        self._inputs = inputs
        self._models = models

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
        """Analyze in this process (loads torch) and put the result into the scene (creating or updating its nodes).

        Args:
            t2, adc, hbv: scalar volume nodes.
            model: model file, model version name (``"demo"``, ``"v3"``) or ``None`` for the active version.
            device: ``"auto"`` (CUDA when available), ``"cpu"`` or ``"cuda"``.
            progress: ``progress(stage, fraction 0–1)`` after each analysis stage.
            show: T2 as background and the heatmap as foreground in every slice view.
        """
        case = self._inputs.caseFromNodes(t2, adc, hbv)
        analyzer = self._models.analyzerFor(model, device)
        result = analyzer.analyze(case, progress=progress)
        analysis = self._put(
            t2,
            result.heatmap,
            result.candidate_map,
            result.candidates,
            result.case_score,
            result.model_name,
            result.model_notice,
            analyzer.metadata.synthetic_training_data,
            result.sequence_heatmaps,
        )
        analysis.result, analysis.timings = result, dict(result.timings)
        if show:
            self.showResult(t2)
        return analysis

    def loadAnalysisResult(self, resultFolder: str | Path, t2, show: bool = True) -> SceneAnalysis:
        """Open a folder ``lesionai analyze`` wrote (for this T2 series) onto the node ``t2``.

        Raises :class:`LesionAIError` (one line) for a folder that is not a result of this format
        version, or whose maps are not on ``t2``'s grid.
        """
        from LesionAILib.inference.results import read_result

        stored = read_result(resultFolder)
        analysis = self._put(
            t2,
            stored.heatmap,
            stored.candidate_map,
            stored.candidates,
            stored.case_score,
            stored.model_name,
            stored.model_notice,
            stored.demo_model,
            stored.sequence_heatmaps,
        )
        analysis.timings = stored.timings
        analysis.heatmap.SetAttribute(RESULT_FOLDER_ATTRIBUTE, str(Path(resultFolder).resolve()))
        if show:
            self.showResult(t2)
        return analysis

    def referenced(self, t2, reference: str, class_name: str, name: str):
        """The node ``t2`` references as ``reference``, created (of ``class_name``, named ``name``) if missing."""
        node = t2.GetNodeReference(reference)
        if node is None or node.GetScene() is not self.scene:
            node = self.scene.AddNewNodeByClass(class_name, self.scene.GenerateUniqueName(name))
            t2.SetNodeReferenceID(reference, node.GetID())
        return node

    def _put(
        self, t2, heatmap, candidate_map, found, case_score, model_name, notice, is_demo, sequence_maps=None
    ) -> SceneAnalysis:
        """Create or update the heatmap(s), table and candidate segmentation of ``t2`` (images in T2 geometry, LPS).

        ``sequence_maps`` (role -> image) become the per-sequence heatmap nodes the reading layout shows on the
        ADC and high-b views (:data:`SEQUENCE_HEATMAP_REFERENCE` + role)."""
        expected = volumes.ijk_to_ras_of_node(t2)
        actual = volumes.ijk_to_ras_of_image(heatmap)
        if tuple(heatmap.GetSize()) != tuple(t2.GetImageData().GetDimensions()) or not np.allclose(
            actual, expected, atol=1e-3
        ):
            raise LesionAIError(f"the analysis result is not on the grid of '{t2.GetName()}'; analyze it again")
        base = t2.GetName()
        heatmap_node = self.referenced(t2, HEATMAP_REFERENCE, "vtkMRMLScalarVolumeNode", f"{base} LesionAI heatmap")
        fresh = heatmap_node.GetDisplayNode() is None
        volumes.set_node_from_array(heatmap_node, sitk.GetArrayFromImage(heatmap).astype(np.float32), t2)
        if fresh:
            display.style_heatmap(heatmap_node)
        made = [heatmap_node]
        for role, image in (sequence_maps or {}).items():
            node = self.referenced(
                t2, SEQUENCE_HEATMAP_REFERENCE + role, "vtkMRMLScalarVolumeNode", f"{base} LesionAI heatmap ({role})"
            )
            fresh_map = node.GetDisplayNode() is None
            volumes.set_node_from_array(node, sitk.GetArrayFromImage(image).astype(np.float32), t2)
            if fresh_map:
                display.style_heatmap(node)
            made.append(node)
        table = self.referenced(t2, TABLE_REFERENCE, "vtkMRMLTableNode", f"{base} LesionAI candidates")
        candidates.fill_table(table, found, model_name)
        outlines = self.referenced(
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
        for node in (*made, table, outlines):
            for key, value in attributes.items():
                node.SetAttribute(key, value)
        return SceneAnalysis(heatmap_node, table, outlines, list(found), float(case_score), model_name, notice, is_demo)

    # ------------------------------------------------------------------ reading
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
        display.show_in_slice_views(self.scene, t2, t2.GetNodeReference(HEATMAP_REFERENCE), opacity)

    def resultFolder(self, t2) -> Path | None:
        """The result folder ``t2``'s heatmap was loaded from (:meth:`loadAnalysisResult`), if it still exists."""
        heatmap = t2.GetNodeReference(HEATMAP_REFERENCE)
        folder = heatmap.GetAttribute(RESULT_FOLDER_ATTRIBUTE) if heatmap is not None else None
        return Path(folder) if folder and Path(folder).is_dir() else None

    def heatmapNodes(self, t2) -> dict:
        """``{"combined", "t2w", "adc", "hbv"}`` heatmap nodes of ``t2`` (``None`` where absent)."""
        maps = {"combined": t2.GetNodeReference(HEATMAP_REFERENCE)}
        for role in ("t2w", "adc", "hbv"):
            maps[role] = t2.GetNodeReference(SEQUENCE_HEATMAP_REFERENCE + role)
        return maps

    def showReading(self, volumeNodes: dict, opacity: float = display.DEFAULT_OPACITY, align: bool = False) -> None:
        """The reading layout: T2, ADC and high-b views (layout names Red, Yellow, Green), linked, each with its
        heatmap (combined map on T2; per-sequence maps on ADC and high-b), candidate outlines on all.

        Args:
            volumeNodes: ``{"t2w", "adc", "hbv"}`` volume nodes.
            opacity: heatmap opacity 0–1 (0: T2/ADC/high-b only).
            align: also put every view into the T2's acquisition plane, centred on it (after loading a study).
        """
        t2 = volumeNodes["t2w"]
        display.use_reading_layout(self.scene)
        display.show_reading(self.scene, volumeNodes, self.heatmapNodes(t2), opacity)
        if align:
            display.align_slice_views(self.scene, t2)

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

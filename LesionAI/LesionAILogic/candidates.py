"""Lesion candidates in the scene: the candidate table node and one outlined segment per candidate.

Table columns (one row per candidate, highest probability first, as the engine orders them):

=============  ======  ==========================================================
column         type    meaning
=============  ======  ==========================================================
id             int     candidate id (also its value in the engine's candidate map)
probability    double  probability of clinically significant cancer (0–1)
grade group    string  most likely ISUP grade group "0"–"5" ("" without a classifier)
volume ml      double  candidate region volume, millilitres
R mm, A mm,    double  region centroid, Slicer RAS millimetres
S mm
peak           double  highest heatmap value in the region (0–1)
model          string  the model that produced the probability
=============  ======  ==========================================================
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import SimpleITK as sitk
import slicer
import vtk

from LesionAILib.palette import OUTLINE_COLORS

from .display import outline_segmentation
from .volumes import set_node_from_array

COLUMNS = ("id", "probability", "grade group", "volume ml", "R mm", "A mm", "S mm", "peak", "model")
_COLUMN_TYPES = {"id": vtk.vtkIntArray, "grade group": vtk.vtkStringArray, "model": vtk.vtkStringArray}
_DESCRIPTIONS = {
    "id": ("candidate id", ""),
    "probability": ("probability of clinically significant cancer", ""),
    "grade group": ("most likely ISUP grade group", ""),
    "volume ml": ("candidate volume", "ml"),
    "R mm": ("centroid, right", "mm"),
    "A mm": ("centroid, anterior", "mm"),
    "S mm": ("centroid, superior", "mm"),
    "peak": ("highest heatmap value in the candidate", ""),
    "model": ("model that scored the candidate", ""),
}
CANDIDATE_ID_TAG = "LesionAI.CandidateId"
PROBABILITY_TAG = "LesionAI.Probability"
GRADE_TAG = "LesionAI.GradeGroup"


def candidate_row(candidate, model_name: str) -> dict:
    """One table row (column name → value) for an engine :class:`~LesionAILib.inference.candidates.Candidate`."""
    r, a, s = (float(v) for v in candidate.center_ras_mm)
    return {
        "id": int(candidate.candidate_id),
        "probability": float(candidate.probability),
        "grade group": "" if candidate.grade_group is None else str(int(candidate.grade_group)),
        "volume ml": float(candidate.volume_ml),
        "R mm": r,
        "A mm": a,
        "S mm": s,
        "peak": float(candidate.peak),
        "model": candidate.score_model or model_name,
    }


def fill_table(table_node, candidates: Sequence, model_name: str) -> None:
    """Replace the rows of ``table_node`` with ``candidates`` (engine order)."""
    rows = [candidate_row(c, model_name) for c in candidates]
    disabled = table_node.StartModify()
    table = table_node.GetTable()
    table.Initialize()
    for name in COLUMNS:
        column = _COLUMN_TYPES.get(name, vtk.vtkDoubleArray)()
        column.SetName(name)
        column.SetNumberOfValues(len(rows))
        for index, row in enumerate(rows):
            column.SetValue(index, row[name])
        table.AddColumn(column)
        description, unit = _DESCRIPTIONS[name]
        table_node.SetColumnDescription(name, description)
        if unit:
            table_node.SetColumnUnitLabel(name, unit)
    table_node.SetUseColumnTitleAsColumnHeader(True)
    table_node.SetLocked(True)
    table_node.Modified()
    table_node.EndModify(disabled)


def read_table(table_node) -> list[dict]:
    """The rows of a candidate table node as dicts (column name → value), in table order."""
    table = table_node.GetTable()
    rows = []
    for index in range(table.GetNumberOfRows()):
        row = {}
        for name in COLUMNS:
            column = table.GetColumnByName(name)
            if column is not None:
                value = column.GetValue(index)
                row[name] = value if name in _COLUMN_TYPES else float(value)
        rows.append(row)
    return rows


def fill_candidate_segmentation(segmentation_node, candidate_map: sitk.Image, candidates: Sequence, t2_node) -> None:
    """One segment per candidate (named, coloured, tagged with id/probability/grade) from the candidate map.

    ``candidate_map`` is the engine's label map in T2 geometry (voxel value = candidate id). A
    candidate whose region vanished when resampled to the T2 grid gets no segment.
    """
    scene = segmentation_node.GetScene()
    labels = scene.AddNewNodeByClass("vtkMRMLLabelMapVolumeNode", "LesionAI candidate labels (temporary)")
    try:
        set_node_from_array(labels, sitk.GetArrayFromImage(candidate_map).astype(np.uint8), t2_node)
        segmentation = segmentation_node.GetSegmentation()
        disabled = segmentation_node.StartModify()
        segmentation.RemoveAllSegments()
        segmentation_node.SetReferenceImageGeometryParameterFromVolumeNode(t2_node)
        slicer.vtkSlicerSegmentationsModuleLogic.ImportLabelmapToSegmentationNode(labels, segmentation_node)
        by_label = {
            segmentation.GetNthSegment(i).GetLabelValue(): segmentation.GetNthSegmentID(i)
            for i in range(segmentation.GetNumberOfSegments())
        }
        for rank, candidate in enumerate(candidates):
            segment_id = by_label.get(int(candidate.candidate_id))
            if segment_id is None:
                continue
            segment = segmentation.GetSegment(segment_id)
            segment.SetName(f"Candidate {candidate.candidate_id} (p = {candidate.probability:.2f})")
            segment.SetColor(*OUTLINE_COLORS[rank % len(OUTLINE_COLORS)])
            segment.SetTag(CANDIDATE_ID_TAG, str(candidate.candidate_id))
            segment.SetTag(PROBABILITY_TAG, f"{candidate.probability:.6f}")
            if candidate.grade_group is not None:
                segment.SetTag(GRADE_TAG, str(int(candidate.grade_group)))
        segmentation_node.EndModify(disabled)
    finally:
        scene.RemoveNode(labels)
    outline_segmentation(segmentation_node)


def segment_tag(segment, name: str) -> str | None:
    """A segment's tag value (``None`` when it has no such tag)."""
    value = vtk.reference("")
    return str(value) if segment.GetTag(name, value) else None


def segment_of_candidate(segmentation_node, candidate_id: int) -> str | None:
    """The segment id that outlines candidate ``candidate_id`` (``None`` if it has none)."""
    segmentation = segmentation_node.GetSegmentation()
    for index in range(segmentation.GetNumberOfSegments()):
        if segment_tag(segmentation.GetNthSegment(index), CANDIDATE_ID_TAG) == str(int(candidate_id)):
            return segmentation.GetNthSegmentID(index)
    return None

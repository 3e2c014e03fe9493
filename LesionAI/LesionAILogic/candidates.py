"""Lesion candidates in the scene: the candidate table node and one outlined segment per candidate.

The table's columns are the engine's candidate fields that have a ``scene_name``
(:data:`LesionAILib.inference.candidates.CANDIDATE_FIELDS`: id, probability, grade group, peak,
volume ml, R/A/S mm, model), in that order, with their descriptions and units on the table node;
one row per candidate, highest probability first, as the engine orders them. Classified points
(:func:`point_row`) are rows with an id of their own and no grade, peak or volume.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import SimpleITK as sitk
import slicer
import vtk

from LesionAILib.inference.candidates import CANDIDATE_FIELDS
from LesionAILib.palette import OUTLINE_COLORS

from .display import outline_segmentation
from .volumes import set_node_from_array

SCENE_FIELDS = tuple(spec for spec in CANDIDATE_FIELDS if spec.scene_name)
COLUMNS = tuple(spec.scene_name for spec in SCENE_FIELDS)
# (column, decimals shown; None for text) for the panel's table
PANEL_COLUMNS = tuple((spec.scene_name, spec.decimals if spec.type is float else None) for spec in SCENE_FIELDS)
CANDIDATE_ID_TAG = "LesionAI.CandidateId"
PROBABILITY_TAG = "LesionAI.Probability"
GRADE_TAG = "LesionAI.GradeGroup"


def _is_text(spec) -> bool:
    """Text columns: strings, and optional integers (an empty cell when unset, e.g. no grade group)."""
    return spec.type is str or spec.optional


def _empty(spec):
    return "" if _is_text(spec) else float("nan")


def candidate_row(candidate, model_name: str) -> dict:
    """One table row (column name → value) for an engine :class:`~LesionAILib.inference.candidates.Candidate`."""
    row = {}
    for spec in SCENE_FIELDS:
        value = spec.value(candidate)
        row[spec.scene_name] = spec.format(value) if _is_text(spec) else value
    row["model"] = candidate.score_model or model_name
    return row


def point_row(row_id: int, probability: float, ras_point: Sequence[float], model_name: str) -> dict:
    """The row of a classified point: its id, probability, RAS position (mm) and model; no region fields."""
    row = {spec.scene_name: _empty(spec) for spec in SCENE_FIELDS}
    r, a, s = (float(v) for v in ras_point)
    row.update({"id": int(row_id), "probability": float(probability), "R mm": r, "A mm": a, "S mm": s})
    row["model"] = model_name
    return row


def fill_table(table_node, candidates: Sequence, model_name: str) -> None:
    """Replace the rows of ``table_node`` with ``candidates`` (engine order)."""
    rows = [candidate_row(c, model_name) for c in candidates]
    disabled = table_node.StartModify()
    table = table_node.GetTable()
    table.Initialize()
    for spec in SCENE_FIELDS:
        if _is_text(spec):
            column = vtk.vtkStringArray()
        else:
            column = vtk.vtkIntArray() if spec.type is int else vtk.vtkDoubleArray()
        column.SetName(spec.scene_name)
        column.SetNumberOfValues(len(rows))
        for index, row in enumerate(rows):
            column.SetValue(index, row[spec.scene_name])
        table.AddColumn(column)
        table_node.SetColumnDescription(spec.scene_name, spec.description)
        if spec.unit:
            table_node.SetColumnUnitLabel(spec.scene_name, spec.unit)
    table_node.SetUseColumnTitleAsColumnHeader(True)
    table_node.SetLocked(True)
    table_node.Modified()
    table_node.EndModify(disabled)


def set_row(table_node, values: Mapping[str, object]) -> None:
    """Replace the row whose id is ``values["id"]`` (or add it) with ``values`` (column name → value)."""
    cells = table_node.GetTable()
    ids = cells.GetColumnByName("id")
    row = next((r for r in range(cells.GetNumberOfRows()) if ids.GetValue(r) == int(values["id"])), None)
    disabled = table_node.StartModify()
    if row is None:
        row = cells.InsertNextBlankRow()
    for name, value in values.items():
        cells.GetColumnByName(name).SetValue(row, value)
    cells.Modified()
    table_node.Modified()
    table_node.EndModify(disabled)


def read_table(table_node) -> list[dict]:
    """The rows of a candidate table node as dicts (column name → value), in table order."""
    table = table_node.GetTable()
    rows = []
    for index in range(table.GetNumberOfRows()):
        row = {}
        for spec in SCENE_FIELDS:
            column = table.GetColumnByName(spec.scene_name)
            if column is not None:
                value = column.GetValue(index)
                row[spec.scene_name] = value if _is_text(spec) or spec.type is int else float(value)
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

"""Annotations: a segmentation node on the T2 with one graded segment per lesion, and its lesion mask.

A lesion is a segment; its ISUP grade group (0 = benign … 5) is the segment tag :data:`GRADE_TAG`,
with optional :data:`ZONE_TAG` and :data:`COMMENT_TAG`. :func:`lesion_mask` turns the segments into
the deployment dataset's instance mask on the exact T2 grid (``[K, J, I]`` uint8, 0 background,
lesion ``n`` = the n-th non-empty segment in segment order), exporting each segment with the static
``vtkSlicerSegmentationsModuleLogic.ExportSegmentsToLabelmapNode`` against the T2 volume (works on
slicer-core and in the application).
"""

from __future__ import annotations

import numpy as np
import slicer
import vtk

from LesionAILib.errors import LesionAIError
from LesionAILib.palette import OUTLINE_COLORS

from .candidates import GRADE_TAG, segment_tag

ZONE_TAG = "LesionAI.Zone"
COMMENT_TAG = "LesionAI.Comment"
GRADE_SOURCE_TAG = "LesionAI.GradeSource"  # "model" while a pre-filled grade has not been confirmed


def copy_candidates(annotation_node, candidate_node) -> None:
    """Copy every candidate segment into the annotation as a lesion, its predicted grade pre-filled."""
    source = candidate_node.GetSegmentation()
    target = annotation_node.GetSegmentation()
    for index in range(source.GetNumberOfSegments()):
        segment_id = source.GetNthSegmentID(index)
        target.CopySegmentFromSegmentation(source, segment_id)
        segment = target.GetNthSegment(target.GetNumberOfSegments() - 1)
        segment.SetName(f"Lesion {target.GetNumberOfSegments()}")
        if segment_tag(segment, GRADE_TAG) is not None:
            segment.SetTag(GRADE_SOURCE_TAG, "model")


def add_lesion(annotation_node, grade_group: int | None = None, name: str | None = None) -> str:
    """Add an empty lesion segment (to paint in the Segment Editor); returns its segment id."""
    segmentation = annotation_node.GetSegmentation()
    number = segmentation.GetNumberOfSegments() + 1
    segment_id = segmentation.AddEmptySegment("", name or f"Lesion {number}", OUTLINE_COLORS[(number - 1) % 5])
    if grade_group is not None:
        set_grade(annotation_node, segment_id, grade_group)
    return segment_id


def set_grade(annotation_node, segment_id: str, grade_group: int | None, zone: str | None = None) -> None:
    """Set (or, with ``None``, clear) a lesion's ISUP grade group 0–5; optionally its zone (e.g. PZ, TZ)."""
    segment = annotation_node.GetSegmentation().GetSegment(segment_id)
    if segment is None:
        raise LesionAIError(f"no segment {segment_id!r} in '{annotation_node.GetName()}'")
    if grade_group is None:
        segment.RemoveTag(GRADE_TAG)
    else:
        if not 0 <= int(grade_group) <= 5:
            raise LesionAIError(f"grade group must be 0–5, got {grade_group}")
        segment.SetTag(GRADE_TAG, str(int(grade_group)))
    segment.RemoveTag(GRADE_SOURCE_TAG)
    if zone is not None:
        segment.SetTag(ZONE_TAG, zone)
    annotation_node.Modified()


def grade_of(segment) -> int | None:
    """A segment's grade group, or ``None`` when it has not been graded."""
    value = segment_tag(segment, GRADE_TAG)
    return int(value) if value not in (None, "") else None


def _segment_mask(annotation_node, segment_id: str, t2_node) -> np.ndarray:
    """One segment as a boolean ``[K, J, I]`` array on the T2 volume's grid."""
    scene = annotation_node.GetScene()
    # the export adds a colour table for the label map each time: remove whatever the export added
    existing = {scene.GetNthNode(i).GetID() for i in range(scene.GetNumberOfNodes())}
    labelmap = scene.AddNewNodeByClass("vtkMRMLLabelMapVolumeNode", "LesionAI export (temporary)")
    try:
        ids = vtk.vtkStringArray()
        ids.InsertNextValue(segment_id)
        exported = slicer.vtkSlicerSegmentationsModuleLogic.ExportSegmentsToLabelmapNode(
            annotation_node, ids, labelmap, t2_node
        )
        if not exported:
            raise LesionAIError(f"segment '{segment_id}' could not be exported onto the T2 grid")
        mask = slicer.util.arrayFromVolume(labelmap) > 0
        expected = tuple(reversed(t2_node.GetImageData().GetDimensions()))
        if mask.shape != expected:
            raise LesionAIError(f"exported lesion mask has shape {mask.shape}, the T2 {expected}")
        return mask.copy()
    finally:
        added = [scene.GetNthNode(i) for i in range(scene.GetNumberOfNodes())]
        for node in [n for n in added if n.GetID() not in existing]:
            scene.RemoveNode(node)


def lesion_mask(annotation_node, t2_node) -> tuple[np.ndarray, list, list[str]]:
    """The lesion instance mask on the T2 grid and one :class:`LesionAnnotation` per lesion.

    Returns:
        ``(mask, lesions, skipped)``: ``mask`` ``[K, J, I]`` uint8 (0 background, 1..n lesions, a
        later segment wins where two overlap), ``lesions`` one
        :class:`~LesionAILib.adaptation.deployment.LesionAnnotation` per lesion with ids 1..n, ``skipped`` the names of
        empty segments (nothing painted: not a lesion).

    Raises:
        LesionAIError: a painted segment has no grade, or is entirely covered by later segments.
    """
    from LesionAILib.adaptation.deployment import LesionAnnotation  # the deployment module needs torch: load it on use

    segmentation = annotation_node.GetSegmentation()
    dimensions = tuple(reversed(t2_node.GetImageData().GetDimensions()))
    mask = np.zeros(dimensions, dtype=np.uint8)
    lesions, skipped, names = [], [], {}
    for index in range(segmentation.GetNumberOfSegments()):
        segment_id = segmentation.GetNthSegmentID(index)
        segment = segmentation.GetSegment(segment_id)
        voxels = _segment_mask(annotation_node, segment_id, t2_node)
        if not voxels.any():
            skipped.append(segment.GetName())
            continue
        grade = grade_of(segment)
        if grade is None:
            raise LesionAIError(
                f"lesion '{segment.GetName()}' has no grade group", hint="set its grade (0–5) before saving"
            )
        lesion_id = len(lesions) + 1
        mask[voxels] = lesion_id
        names[lesion_id] = segment.GetName()
        lesions.append(
            LesionAnnotation(
                lesion_id, grade, segment_tag(segment, ZONE_TAG) or "", segment_tag(segment, COMMENT_TAG) or ""
            )
        )
    present = set(np.unique(mask).tolist())
    hidden = [names[lesion.id] for lesion in lesions if lesion.id not in present]
    if hidden:
        raise LesionAIError(
            f"lesion(s) {', '.join(hidden)} are completely covered by later segments",
            hint="erase the overlap or delete the duplicate segment",
        )
    return mask, lesions, skipped

"""The DICOM Segmentation of a result: one binary segment per candidate (and the gland), on the source T2 slices.

Each candidate's segment is its region of the result's candidate label map (T2 grid, voxel value =
candidate id). Its label says which candidate; its description the probability, the grade group,
the model and the research-use notice; its tracking identifier (``candidate <id>``) and tracking
UID are what the SR's finding of the same candidate carries. Frames exist only on the T2 slices a
segment touches (``omit_empty_frames``), each referencing its source T2 instance. A candidate
without a voxel on the T2 grid (possible for tiny regions after resampling) gets no segment.
"""

from __future__ import annotations

from dataclasses import dataclass

import highdicom as hd
import numpy as np
import SimpleITK as sitk

from LesionAILib.dicom_out import vocabulary
from LesionAILib.dicom_out.sources import SourceSeries
from LesionAILib.inference.candidates import Candidate
from LesionAILib.inference.results import StoredResult

GLAND_TRACKING_ID = "prostate gland"


@dataclass(frozen=True)
class SegmentOf:
    """Which segment of the SEG holds what: ``candidate_id`` (``None`` for the gland), its number and tracking."""

    segment_number: int
    candidate_id: int | None
    tracking_id: str
    tracking_uid: str
    voxels: int


def tracking_id(candidate: Candidate) -> str:
    return f"candidate {candidate.candidate_id}"


def _candidate_description(candidate: Candidate, stored: StoredResult) -> str:
    x, y, z = candidate.center_lps_mm
    grade = "" if candidate.grade_group is None else f", ISUP grade group {candidate.grade_group}"
    scorer = f" ({candidate.score_model})" if candidate.score_model else ""
    return vocabulary.ascii_text(
        f"LesionAI candidate {candidate.candidate_id}: probability of clinically significant cancer "
        f"{candidate.probability:.3f}{scorer}{grade}; localization peak {candidate.peak:.3f}; centre LPS "
        f"({x:.1f}, {y:.1f}, {z:.1f}) mm; "
        f"model {vocabulary.model_name(stored)} {vocabulary.model_version(stored)}; {vocabulary.notice(stored)}"
    )


@dataclass(frozen=True)
class _Planned:
    """A segment to write: its voxels ([Z, Y, X] bool on the T2 grid) and what describes it."""

    mask: np.ndarray
    label: str
    description: str
    category: object
    property_type: object
    tracking_id: str
    candidate_id: int | None = None
    anatomic_region: object = None


def _planned_segments(stored: StoredResult, gland: sitk.Image | None) -> list[_Planned]:
    labels = sitk.GetArrayViewFromImage(stored.candidate_map)  # [Z, Y, X], voxel value = candidate id
    planned = [
        _Planned(
            mask=labels == candidate.candidate_id,
            label=f"LesionAI candidate {candidate.candidate_id} p={candidate.probability:.2f}",
            description=_candidate_description(candidate, stored),
            category=vocabulary.CANDIDATE_CATEGORY,
            property_type=vocabulary.CANDIDATE_TYPE,
            tracking_id=tracking_id(candidate),
            candidate_id=candidate.candidate_id,
            anatomic_region=vocabulary.ZONES.get(candidate.zone or "", vocabulary.GLAND_TYPE),
        )
        for candidate in stored.candidates
    ]
    if gland is not None:
        planned.append(
            _Planned(
                mask=sitk.GetArrayViewFromImage(gland) > 0,
                label="prostate gland",
                description=vocabulary.ascii_text(f"prostate gland (LesionAI); {vocabulary.notice(stored)}"),
                category=vocabulary.GLAND_CATEGORY,
                property_type=vocabulary.GLAND_TYPE,
                tracking_id=GLAND_TRACKING_ID,
            )
        )
    return [segment for segment in planned if segment.mask.any()]


def candidate_segmentation(
    stored: StoredResult, source: SourceSeries, gland: sitk.Image | None = None
) -> tuple[hd.seg.Segmentation | None, list[SegmentOf]]:
    """The SEG of ``stored``'s candidates (and ``gland``: a mask on the T2 grid) on the T2 series ``source``.

    ``source`` must already have been checked against the result's grid
    (:meth:`SourceSeries.check_on_grid`): frame ``k`` of the arrays is ``source.datasets[k]``.
    Returns the SEG and, per segment, what it holds; ``(None, [])`` when there is nothing to segment (a SEG
    needs at least one segment).
    """
    planned = _planned_segments(stored, gland)
    if not planned:
        return None, []
    segments, descriptions = [], []
    for number, plan in enumerate(planned, start=1):
        segment = SegmentOf(number, plan.candidate_id, plan.tracking_id, hd.UID(), int(plan.mask.sum()))
        description = hd.seg.SegmentDescription(
            segment_number=number,
            segment_label=plan.label,
            segmented_property_category=plan.category,
            segmented_property_type=plan.property_type,
            algorithm_type=hd.seg.SegmentAlgorithmTypeValues.AUTOMATIC,
            algorithm_identification=vocabulary.algorithm_identification(stored),
            tracking_uid=segment.tracking_uid,
            tracking_id=segment.tracking_id,
            anatomic_regions=[plan.anatomic_region] if plan.anatomic_region is not None else None,
        )
        description.SegmentDescription = plan.description
        segments.append(segment)
        descriptions.append(description)
    segmentation = hd.seg.Segmentation(
        source_images=source.datasets,
        pixel_array=np.stack([plan.mask for plan in planned], axis=-1),  # [T2 slices, rows, columns, segments]
        segmentation_type=hd.seg.SegmentationTypeValues.BINARY,
        segment_descriptions=descriptions,
        series_number=vocabulary.SEGMENTATION_SERIES_NUMBER,
        content_description=vocabulary.ascii_text(f"LesionAI candidates, {vocabulary.RESEARCH_NOTICE}", 64),
        content_label="LESIONAI_SEG",
        series_description="LesionAI candidates (research use only)",
        **vocabulary.new_instance(),
    )
    return segmentation, segments

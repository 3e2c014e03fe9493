"""The TID 1500 measurement report of a result (Comprehensive 3D SR): one finding per candidate, and the gland.

Each candidate's measurement group (TID 1411, volumetric ROI) references its segment of the SEG and
carries the candidate's tracking identifier and UID (the same as the segment's), the finding site
(the prostate, or its zone when known), the model that produced it (TID 4019: name, version = the
model file's sha256 prefix) and three measurements: the segment's volume on the T2 grid (mL), the
probability of clinically significant cancer (0–1) and the predicted ISUP grade group. Its location
is the referenced segment (exact voxels, in the T2's frame of reference) and the coded finding site;
TID 1411 allows no coordinates beside a segment, so the centre (LPS mm) is in the segment's
description. A candidate without a segment (no voxel on the T2 grid) is a TID 1501 group with
finding site, probability and grade only.
The research-use notice is a text comment in the report's Qualitative Evaluations (with a second
one when there is no candidate, and then the case's score as the one TID 1501 group the report
needs); the document is complete but unverified (no person has checked it).
"""

from __future__ import annotations

import highdicom as hd
from pydicom.sr.codedict import codes
from pydicom.uid import generate_uid

from LesionAILib.dicom_out import vocabulary
from LesionAILib.dicom_out.segmentation import SegmentOf, tracking_id
from LesionAILib.dicom_out.sources import SourceSeries
from LesionAILib.geometry import Grid
from LesionAILib.inference.candidates import Candidate
from LesionAILib.inference.results import StoredResult

QUALITATIVE_EVALUATIONS = hd.sr.CodedConcept("C0034375", "UMLS", "Qualitative Evaluations")


def _finding_site(candidate: Candidate | None) -> hd.sr.FindingSite:
    zone = vocabulary.ZONES.get(candidate.zone or "") if candidate is not None else None
    return hd.sr.FindingSite(anatomic_location=zone or vocabulary.GLAND_TYPE)


def _volume(segment: SegmentOf, grid: Grid) -> hd.sr.Measurement:
    return hd.sr.Measurement(
        name=vocabulary.VOLUME, value=segment.voxels * grid.voxel_volume_ml(), unit=vocabulary.MILLILITRE
    )


def _scores(candidate: Candidate) -> list[hd.sr.Measurement]:
    rescored = candidate.detector_probability is not None  # the probability is another model's (the classifier)
    scorer = (
        hd.sr.AlgorithmIdentification(name=vocabulary.ascii_text(candidate.score_model, 64), version="see model")
        if rescored
        else None
    )
    measurements = [
        hd.sr.Measurement(
            name=vocabulary.PROBABILITY,
            value=float(candidate.probability),
            unit=vocabulary.NO_UNITS,
            algorithm_id=scorer,
        )
    ]
    if candidate.grade_group is not None:
        measurements.append(
            hd.sr.Measurement(name=vocabulary.GRADE_GROUP, value=int(candidate.grade_group), unit=vocabulary.NO_UNITS)
        )
    return measurements


def _model(stored: StoredResult) -> hd.sr.AlgorithmIdentification:
    return hd.sr.AlgorithmIdentification(
        name=vocabulary.ascii_text(vocabulary.model_name(stored), 64), version=vocabulary.model_version(stored)
    )


def _case_group(stored: StoredResult) -> hd.sr.MeasurementsAndQualitativeEvaluations:
    """The case as a whole (TID 1501): its score, for a report without a candidate or gland."""
    return hd.sr.MeasurementsAndQualitativeEvaluations(
        tracking_identifier=hd.sr.TrackingIdentifier(uid=hd.UID(), identifier="case"),
        algorithm_id=_model(stored),
        finding_sites=[_finding_site(None)],
        measurements=[
            hd.sr.Measurement(name=vocabulary.PROBABILITY, value=float(stored.case_score), unit=vocabulary.NO_UNITS)
        ],
    )


def _referenced_segment(segmentation: hd.seg.Segmentation, segment_number: int) -> hd.sr.ReferencedSegment:
    """The SR's reference to one segment of the SEG, and to the T2 series it was made from.

    Built from the SEG's own UIDs rather than ``ReferencedSegment.from_segmentation``, which reads the
    segment number of each frame from the per-frame functional groups and fails on a SEG with a single
    segment (highdicom then stores it once, in the shared functional groups).
    """
    return hd.sr.ReferencedSegment(
        sop_class_uid=segmentation.SOPClassUID,
        sop_instance_uid=segmentation.SOPInstanceUID,
        segment_number=segment_number,
        source_series=hd.sr.SourceSeriesForSegmentation(segmentation.ReferencedSeriesSequence[0].SeriesInstanceUID),
    )


def _segment_group(
    segment: SegmentOf,
    segmentation: hd.seg.Segmentation,
    stored: StoredResult,
    candidate: Candidate | None,
) -> hd.sr.VolumetricROIMeasurementsAndQualitativeEvaluations:
    """The TID 1411 group of one segment: a candidate's (with its scores), or the gland's (``candidate`` None)."""
    volume = _volume(segment, Grid.from_image(stored.candidate_map))
    return hd.sr.VolumetricROIMeasurementsAndQualitativeEvaluations(
        tracking_identifier=hd.sr.TrackingIdentifier(uid=segment.tracking_uid, identifier=segment.tracking_id),
        referenced_segment=_referenced_segment(segmentation, segment.segment_number),
        finding_type=vocabulary.CANDIDATE_TYPE if candidate is not None else vocabulary.GLAND_TYPE,
        finding_category=vocabulary.CANDIDATE_CATEGORY if candidate is not None else vocabulary.GLAND_CATEGORY,
        algorithm_id=_model(stored),
        finding_sites=[_finding_site(candidate)],
        measurements=[volume, *(_scores(candidate) if candidate is not None else [])],
    )


def _findings(
    stored: StoredResult, segmentation: hd.seg.Segmentation | None, segments: list[SegmentOf]
) -> list[hd.sr.MeasurementsAndQualitativeEvaluations | hd.sr.VolumetricROIMeasurementsAndQualitativeEvaluations]:
    """One group per candidate (in the result's order), then the gland's."""
    by_candidate = {s.candidate_id: s for s in segments}
    groups = []
    for candidate in stored.candidates:
        segment = by_candidate.get(candidate.candidate_id)
        if segment is not None:
            groups.append(_segment_group(segment, segmentation, stored, candidate))
            continue
        groups.append(
            hd.sr.MeasurementsAndQualitativeEvaluations(
                tracking_identifier=hd.sr.TrackingIdentifier(uid=hd.UID(), identifier=tracking_id(candidate)),
                finding_type=vocabulary.CANDIDATE_TYPE,
                algorithm_id=_model(stored),
                finding_sites=[_finding_site(candidate)],
                measurements=_scores(candidate),
            )
        )
    if None in by_candidate:
        groups.append(_segment_group(by_candidate[None], segmentation, stored, None))
    return groups


def measurement_report(
    stored: StoredResult,
    source: SourceSeries,
    segmentation: hd.seg.Segmentation | None,
    segments: list[SegmentOf],
) -> hd.sr.Comprehensive3DSR:
    """The SR of ``stored`` on the T2 series ``source``, referencing ``segmentation``'s ``segments``."""
    groups = _findings(stored, segmentation, segments)
    device = hd.sr.DeviceObserverIdentifyingAttributes(
        uid=generate_uid(entropy_srcs=[vocabulary.MANUFACTURER, stored.model_sha256]),  # one device UID per model
        name=vocabulary.MANUFACTURER,
        manufacturer_name=vocabulary.MANUFACTURER,
        model_name=vocabulary.ascii_text(vocabulary.model_name(stored), 64),
    )
    content = hd.sr.MeasurementReport(
        observation_context=hd.sr.ObservationContext(
            observer_device_context=hd.sr.ObserverContext(
                observer_type=codes.cid270.Device, observer_identifying_attributes=device
            )
        ),
        procedure_reported=vocabulary.PROCEDURE,
        imaging_measurements=groups or [_case_group(stored)],  # the report needs one group: the case's score
        referenced_images=source.datasets,
    )
    notice = hd.sr.ContainerContentItem(
        name=QUALITATIVE_EVALUATIONS, relationship_type=hd.sr.RelationshipTypeValues.CONTAINS
    )
    comments = [vocabulary.notice(stored)] + ([] if stored.candidates else ["LesionAI found no lesion candidate"])
    notice.ContentSequence = [
        hd.sr.TextContentItem(
            name=codes.DCM.Comment, value=comment, relationship_type=hd.sr.RelationshipTypeValues.CONTAINS
        )
        for comment in comments
    ]
    content[0].ContentSequence.append(notice)
    evidence = [*source.datasets, *([segmentation] if segmentation is not None else [])]
    return hd.sr.Comprehensive3DSR(
        evidence=evidence,
        content=content[0],
        series_instance_uid=hd.UID(),
        series_number=vocabulary.REPORT_SERIES_NUMBER,
        sop_instance_uid=hd.UID(),
        instance_number=1,
        manufacturer=vocabulary.MANUFACTURER,
        is_complete=True,
        is_final=False,
        is_verified=False,
        series_description="LesionAI findings (research use only)",
        coding_schemes=[vocabulary.coding_scheme_identification()],
    )

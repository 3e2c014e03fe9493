"""DICOM studies in: find a folder's series, choose their roles by the engine's rules, report or read them.

:func:`inspect_study` reads headers only and reports, for every series, what it was taken for and
why; :func:`open_dicom_study` reads the chosen series into a :class:`~LesionAILib.studies.case.Case`.
:func:`series_of_files` gives the series a known set of files forms (a volume Slicer's DICOM module
loaded), for the same rules.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Mapping
from pathlib import Path

from LesionAILib.errors import StudyError
from LesionAILib.studies.case import MIN_SLICES, Case, SeriesReport, SeriesSource, StudyReport, make_case
from LesionAILib.studies.dicom_series import DicomSeries, SkippedFile, scan_folder
from LesionAILib.studies.dicom_volume import check_series, read_volume
from LesionAILib.studies.roles import RoleDecision, assign_roles


def _scan(root: Path) -> tuple[list[DicomSeries], list[SkippedFile]]:
    root = Path(root)
    if not root.exists():
        raise StudyError("no such file or folder", root)
    if not root.is_dir():
        raise StudyError("is a file, not a study folder", root, "give single files with --t2w/--adc/--hbv")
    series_list, skipped = scan_folder(root)
    series_list = [s for s in series_list if s.modality in ("MR", "")]
    if not series_list:
        what = f"{len(skipped)} file(s), none a DICOM MR image" if skipped else "the folder is empty"
        raise StudyError(
            f"no DICOM MR series found ({what})", root, "point to the folder that holds the study's DICOM files"
        )
    return series_list, skipped


def _decide(
    root: Path, overrides: Mapping[str, str | int] | None
) -> tuple[list[DicomSeries], list[SkippedFile], RoleDecision]:
    series_list, skipped = _scan(root)
    decision = assign_roles([s.descriptor() for s in series_list], root, overrides)
    return series_list, skipped, decision


def _report(
    root: Path, series_list: list[DicomSeries], skipped: list[SkippedFile], decision: RoleDecision
) -> StudyReport:
    by_uid = {s.uid: s for s in series_list}
    roles = {}
    for role, choice in decision.chosen.items():
        series = by_uid[choice.series.key]
        files = series.files_for_b_value(choice.b_value) if len(series.b_values) > 1 else series.files
        roles[role] = SeriesSource(
            role=role,
            reason=choice.reason,
            paths=[str(f.path) for f in files],
            series_number=series.number,
            series_description=series.description,
            series_uid=series.uid,
            b_value=choice.b_value,
        )
    role_of = {choice.series.key: role for role, choice in decision.chosen.items()}
    reports = [
        SeriesReport(
            number=s.number,
            description=s.description,
            uid=s.uid,
            plane=s.plane,
            files=len(s.files),
            slices=s.slice_count(),
            in_plane_mm=s.pixel_spacing,
            b_values=s.b_values,
            image_type=s.image_type,
            kind=decision.kinds[s.uid],
            role=role_of.get(s.uid),
            note=roles[role_of[s.uid]].reason if s.uid in role_of else decision.notes.get(s.uid, ""),
        )
        for s in series_list
    ]
    first = by_uid[decision.chosen["t2w"].series.key]
    return StudyReport(
        path=str(root),
        patient_id=first.patient_id,
        study_id=first.study_id or first.study_date,
        roles=roles,
        series=reports,
        skipped_files=skipped,
    )


def inspect_study(root: str | Path, overrides: Mapping[str, str | int] | None = None) -> StudyReport:
    """Discover a DICOM study's series and choose the roles, reading headers only.

    Args:
        root: folder holding the study (any nesting).
        overrides: optional ``{role: series number or SeriesInstanceUID}``; always wins.
    """
    root = Path(root)
    series_list, skipped, decision = _decide(root, overrides)
    by_uid = {s.uid: s for s in series_list}
    for choice in decision.chosen.values():
        check_series(by_uid[choice.series.key], choice.b_value, MIN_SLICES)
    return _report(root, series_list, skipped, decision)


def open_dicom_study(root: str | Path, overrides: Mapping[str, str | int] | None = None) -> Case:
    """Open a DICOM study folder as a :class:`Case` (roles chosen as in :func:`inspect_study`)."""
    root = Path(root)
    series_list, skipped, decision = _decide(root, overrides)
    report = _report(root, series_list, skipped, decision)
    by_uid = {s.uid: s for s in series_list}
    images = {
        role: read_volume(by_uid[choice.series.key], choice.b_value, MIN_SLICES)
        for role, choice in decision.chosen.items()
    }
    return make_case(images, report.patient_id, report.study_id, report.roles, report)


def series_of_files(paths: Iterable[str | Path]) -> DicomSeries | None:
    """The DICOM series that exactly ``paths`` form (headers only), or ``None`` if none of them is an image.

    The folders holding the files are scanned (a DICOM database keeps one folder per series) and
    the series is cut down to the files given, so its b-values and slices are those of the files a
    viewer loaded. When the files belong to several series, the one holding most of them wins.
    """
    wanted = {Path(p).resolve() for p in paths}
    folders = {p.parent for p in wanted}
    # scan_folder descends into subfolders: scan only the outermost folders, so each file is read once
    outermost = sorted(f for f in folders if not any(g in f.parents for g in folders))
    by_uid: dict[str, DicomSeries] = {}
    for folder in outermost:
        for series in scan_folder(folder)[0]:
            files = [f for f in series.files if f.path.resolve() in wanted]
            if not files:
                continue
            previous = by_uid.get(series.uid)
            if previous is None:
                by_uid[series.uid] = dataclasses.replace(series, files=files)
                continue
            times = [t for t in (previous.acquisition_seconds, series.acquisition_seconds) if t is not None]
            previous.files.extend(files)
            previous.acquisition_seconds = min(times, default=None)
    return max(by_uid.values(), key=lambda s: len(s.files), default=None)

"""Open a study from whatever a path is: a DICOM folder, a PI-CAI case folder, or per-role image files."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

from LesionAILib.errors import StudyError
from LesionAILib.studies.case import Case, SeriesSource, check_case
from LesionAILib.studies.dicom_study import open_dicom_study
from LesionAILib.studies.files import open_files, read_image_file
from LesionAILib.studies.picai import looks_like_picai, open_picai_case
from LesionAILib.studies.roles import ROLE_NAMES, ROLES


def open_case(
    path: str | Path | None = None,
    overrides: Mapping[str, str | int] | None = None,
    files: Mapping[str, str | Path] | None = None,
) -> Case:
    """Open a study from a DICOM folder, a PI-CAI case folder, or per-role files.

    Args:
        path: DICOM study folder or PI-CAI case folder.
        overrides: ``{role: series number or UID}`` for DICOM studies.
        files: ``{role: file}``; a file given here replaces that role of ``path`` (or, without
            ``path``, all three roles must be given).
    """
    files = {k: v for k, v in (files or {}).items() if v}
    if path is None:
        missing = [r for r in ROLES if r not in files]
        if missing:
            raise StudyError(
                f"missing {', '.join(ROLE_NAMES[r] for r in missing)}",
                hint="give a study folder or all of --t2w, --adc and --hbv",
            )
        return open_files(files["t2w"], files["adc"], files["hbv"])
    path = Path(path)
    if path.is_file():
        raise StudyError("is a single file", path, "give a study folder, or --t2w/--adc/--hbv files")
    case = open_picai_case(path) if looks_like_picai(path) else open_dicom_study(path, overrides)
    for role, file in files.items():
        setattr(case, role, read_image_file(file, role))
        case.sources[role] = SeriesSource(role=role, reason=f"given as the {ROLE_NAMES[role]} file", paths=[str(file)])
    check_case(case)
    return case

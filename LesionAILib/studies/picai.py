"""PI-CAI folders in: find ``<patient>_<study>_{t2w,adc,hbv}.mha`` cases and open one as a Case."""

from __future__ import annotations

from pathlib import Path

from LesionAILib.errors import StudyError
from LesionAILib.studies.case import Case
from LesionAILib.studies.files import open_files
from LesionAILib.studies.roles import ROLE_NAMES, ROLES


def find_picai_cases(folder: str | Path) -> list[tuple[str, str, Path]]:
    """``(patient_id, study_id, directory)`` for every ``<patient>_<study>_t2w.mha`` under ``folder``."""
    folder = Path(folder)
    cases = []
    for t2 in sorted(folder.rglob("*_t2w.mha")):
        stem = t2.name[: -len("_t2w.mha")]
        patient, _, study = stem.rpartition("_")
        if patient:
            cases.append((patient, study, t2.parent))
    return cases


def open_picai_case(folder: str | Path, case_id: str | None = None, labels: str | Path | None = None) -> Case:
    """Open a case stored in the PI-CAI layout ``<patient>_<study>_{t2w,adc,hbv}.mha``.

    Args:
        folder: a patient folder, or an ``images/`` tree with several cases.
        case_id: ``<patient>_<study>``; needed when ``folder`` holds more than one case.
        labels: optional folder of ``<patient>_<study>.nii.gz`` lesion masks (T2 grid).
    """
    folder = Path(folder)
    cases = find_picai_cases(folder)
    if case_id is not None:
        cases = [c for c in cases if f"{c[0]}_{c[1]}" == case_id]
    if not cases:
        raise StudyError(
            "no PI-CAI case found" + (f" with id {case_id}" if case_id else ""),
            folder,
            "expected <patient>_<study>_t2w.mha, _adc.mha and _hbv.mha",
        )
    if len(cases) > 1:
        ids = ", ".join(f"{p}_{s}" for p, s, _ in cases[:5])
        raise StudyError(f"{len(cases)} PI-CAI cases found ({ids}, ...)", folder, "choose one with its case id")
    patient, study, directory = cases[0]
    stem = directory / f"{patient}_{study}"
    paths = {role: Path(f"{stem}_{role}.mha") for role in ROLES}
    for role, path in paths.items():
        if not path.exists():
            raise StudyError(f"PI-CAI case {patient}_{study} has no {ROLE_NAMES[role]} file", path)
    mask_path = None
    if labels is not None:
        candidates = [Path(labels) / f"{patient}_{study}{suffix}" for suffix in (".nii.gz", ".mha", ".nii")]
        mask_path = next((p for p in candidates if p.exists()), None)
    return open_files(paths["t2w"], paths["adc"], paths["hbv"], patient, study, mask_path)


def looks_like_picai(folder: Path) -> bool:
    """Whether ``folder`` holds a PI-CAI case (a ``*_t2w.mha`` file directly inside it)."""
    return folder.is_dir() and any(True for _ in folder.glob("*_t2w.mha"))

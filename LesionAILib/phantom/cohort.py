"""Writing phantom cohorts in the PI-CAI public layout: images, masks, marksheet, lesion table, cohort.json.

Images are written as uncompressed .mha (float noise does not compress); ground-truth masks are uint8
.nii.gz on the T2 grid.
"""

from __future__ import annotations

import csv
from collections.abc import Callable
from io import StringIO
from pathlib import Path

import numpy as np

from LesionAILib.atomic_io import write_image_atomic, write_json_atomic, write_text_atomic
from LesionAILib.phantom.cases import GENERATOR_VERSION, PhantomCase, generate_case
from LesionAILib.phantom.profiles import SiteProfile, site_profile

_GLEASON = {0: "0+0", 1: "3+3", 2: "3+4", 3: "4+3", 4: "4+4", 5: "4+5"}  # per ISUP grade group
# marksheet.csv: the columns of the PI-CAI public marksheet
MARKSHEET_COLUMNS = [
    "patient_id",
    "study_id",
    "mri_date",
    "patient_age",
    "psa",
    "psad",
    "prostate_volume",
    "histopath_type",
    "lesion_GS",
    "lesion_ISUP",
    "case_ISUP",
    "case_csPCa",
    "center",
]
# lesions.csv: one row per lesion of PhantomLesion (centre in LPS mm)
LESION_COLUMNS = [
    "patient_id",
    "study_id",
    "lesion_id",
    "grade_group",
    "kind",
    "zone",
    "center_x_mm",
    "center_y_mm",
    "center_z_mm",
    "diameter_mm",
    "volume_ml",
]


def _csv_text(columns: list[str], rows: list[dict[str, object]]) -> str:
    """CSV with a header line and "\\n" line ends."""
    buffer = StringIO()
    writer = csv.DictWriter(buffer, fieldnames=columns, lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    return buffer.getvalue()


def write_case(case: PhantomCase, out_dir: Path) -> None:
    """Write one case's images and masks in the PI-CAI layout under out_dir (atomic per file):
    images/<pid>/<pid>_<sid>_{t2w,adc,hbv}.mha, labels/, lesions/ and zones/<pid>_<sid>.nii.gz."""
    out_dir = Path(out_dir)
    stem = f"{case.patient_id}_{case.study_id}"
    image_dir = out_dir / "images" / case.patient_id
    for folder in (image_dir, out_dir / "labels", out_dir / "lesions", out_dir / "zones"):
        folder.mkdir(parents=True, exist_ok=True)
    for name, image in (("t2w", case.t2w), ("adc", case.adc), ("hbv", case.hbv)):
        write_image_atomic(image, image_dir / f"{stem}_{name}.mha", compress=False)  # float noise: incompressible
    write_image_atomic(case.cspca_mask, out_dir / "labels" / f"{stem}.nii.gz")
    write_image_atomic(case.lesion_instances, out_dir / "lesions" / f"{stem}.nii.gz")
    write_image_atomic(case.zones, out_dir / "zones" / f"{stem}.nii.gz")


def _marksheet_row(case: PhantomCase, rng: np.random.Generator) -> dict[str, object]:
    """The case's marksheet row; `rng` draws the histopathology type (biopsy or none)."""
    grades = [lesion.grade_group for lesion in case.lesions]
    case_isup = max(grades, default=0)
    if grades:
        histopath = str(rng.choice(["MRBx", "SysBx+MRBx"]))
    elif rng.random() < 0.4:  # negative systematic biopsy
        histopath, grades = "SysBx", [0]
    else:  # no biopsy (negative follow-up): no histopathology fields, as in PI-CAI
        histopath = ""
    return {
        "patient_id": case.patient_id,
        "study_id": case.study_id,
        "mri_date": case.mri_date,
        "patient_age": case.patient_age,
        "psa": case.psa,
        "psad": round(case.psa / case.prostate_volume_ml, 3) if case.prostate_volume_ml > 0 else "",
        "prostate_volume": case.prostate_volume_ml,
        "histopath_type": histopath,
        "lesion_GS": ",".join(_GLEASON[g] for g in grades),
        "lesion_ISUP": ",".join(str(g) for g in grades),
        "case_ISUP": case_isup,
        "case_csPCa": "YES" if case_isup >= 2 else "NO",
        "center": case.site,
    }


def _lesion_rows(case: PhantomCase) -> list[dict[str, object]]:
    return [
        {
            "patient_id": case.patient_id,
            "study_id": case.study_id,
            "lesion_id": lesion.lesion_id,
            "grade_group": lesion.grade_group,
            "kind": lesion.kind,
            "zone": lesion.zone,
            "center_x_mm": round(lesion.center_lps_mm[0], 3),
            "center_y_mm": round(lesion.center_lps_mm[1], 3),
            "center_z_mm": round(lesion.center_lps_mm[2], 3),
            "diameter_mm": lesion.diameter_mm,
            "volume_ml": lesion.volume_ml,
        }
        for lesion in case.lesions
    ]


def write_cohort(
    out_dir: Path | str,
    n_cases: int,
    site: str | SiteProfile = "A",
    seed: int = 0,
    progress: Callable[[int, int], None] | None = None,
) -> list[str]:
    """Generate and write cases 0..n_cases-1 of (seed, site) in the PI-CAI layout plus marksheet.csv,
    lesions.csv and cohort.json (written last). progress(done, total) is called after each case.
    Returns the case ids."""
    profile = site_profile(site)
    if n_cases < 1:
        raise ValueError(f"n_cases must be >= 1 (got {n_cases})")
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    marksheet: list[dict[str, object]] = []
    lesion_rows: list[dict[str, object]] = []
    case_ids: list[str] = []
    for index in range(n_cases):
        case = generate_case(seed, site, index)
        write_case(case, out_dir)
        # clinical fields that need no image: their own generator, so the images do not depend on them
        marksheet.append(_marksheet_row(case, np.random.default_rng([seed, index, profile.site_id, 1])))
        lesion_rows += _lesion_rows(case)
        case_ids.append(case.case_id)
        if progress is not None:
            progress(index + 1, n_cases)
    write_text_atomic(out_dir / "marksheet.csv", _csv_text(MARKSHEET_COLUMNS, marksheet))
    write_text_atomic(out_dir / "lesions.csv", _csv_text(LESION_COLUMNS, lesion_rows))
    cohort = {
        "generator": "LesionAILib.phantom",
        "version": GENERATOR_VERSION,
        "site": profile.name,
        "site_description": profile.description,
        "seed": seed,
        "n_cases": n_cases,
        "case_ids": case_ids,
        "synthetic": True,
    }
    write_json_atomic(out_dir / "cohort.json", cohort)
    return case_ids

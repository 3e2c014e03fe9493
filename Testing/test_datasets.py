"""Cohort readers: the PI-CAI public layout and our phantom cohorts; the preprocessed cache."""

from __future__ import annotations

import csv
import shutil

import numpy as np
import SimpleITK as sitk

from LesionAILib.preprocessing.pipeline import PreprocessConfig
from LesionAILib.training.cohorts import CropSampler, prepare_cases, read_cohort
from LesionAILib.training.targets import SCORE_BY_GRADE


def _picai_copy(phantom_cohort, root):
    """Our phantom cohort rearranged exactly as a user's PI-CAI download (images + picai_labels)."""
    rows = list(csv.DictReader(open(phantom_cohort / "marksheet.csv")))
    human = root / "picai_labels/csPCa_lesion_delineations/human_expert/resampled"
    ai = root / "picai_labels/csPCa_lesion_delineations/AI/Bosma22a"
    clinical = root / "picai_labels/clinical_information"
    for folder in (human, ai, clinical):
        folder.mkdir(parents=True)
    for index, row in enumerate(rows):
        case = f"{row['patient_id']}_{row['study_id']}"
        shutil.copytree(
            phantom_cohort / "images" / row["patient_id"], root / "picai_public_images_fold0" / row["patient_id"]
        )
        label = phantom_cohort / "labels" / f"{case}.nii.gz"
        if index == 0:
            shutil.copy(label, ai / label.name)  # only an AI-derived label for the first case
        elif index == 1 and row["case_csPCa"] == "NO":
            pass  # negative case without any label file
        else:
            shutil.copy(label, human / label.name)
    shutil.copy(phantom_cohort / "marksheet.csv", clinical / "marksheet.csv")
    return rows


def test_picai_layout_reads_images_labels_grades_and_sites(phantom_cohort, tmp_path):
    rows = _picai_copy(phantom_cohort, tmp_path)
    cohort = read_cohort(tmp_path)
    assert len(cohort.cases) == len(rows) and not cohort.problems
    by_id = {c.case_id: c for c in cohort.cases}
    first = by_id[f"{rows[0]['patient_id']}_{rows[0]['study_id']}"]
    assert "AI/Bosma22a" in first.cspca_mask, "a case without a human label falls back to the AI-derived one"
    for row in rows:
        record = by_id[f"{row['patient_id']}_{row['study_id']}"]
        assert record.site == "A" and record.case_cspca == (row["case_csPCa"] == "YES")
        case = record.open()
        expected = sorted(int(g) for g in row["lesion_ISUP"].split(",") if g and int(g) >= 2)
        assert sorted(l.grade_group for l in record.lesions) == expected, (
            "one instance per csPCa lesion, grade from ISUP"
        )
        if record.lesions:
            ids = set(np.unique(sitk.GetArrayViewFromImage(case.lesion_mask))) - {0}
            assert ids == {l.lesion_id for l in record.lesions}


def test_positive_case_without_any_label_is_reported_not_used(phantom_cohort, tmp_path):
    rows = _picai_copy(phantom_cohort, tmp_path)
    positive = next(r for r in rows if r["case_csPCa"] == "YES")
    case = f"{positive['patient_id']}_{positive['study_id']}"
    for folder in tmp_path.glob("picai_labels/csPCa_lesion_delineations/*/*"):
        (folder / f"{case}.nii.gz").unlink(missing_ok=True)
    cohort = read_cohort(tmp_path)
    assert case not in {c.case_id for c in cohort.cases}
    assert any(p.startswith(f"{case}: marked csPCa") for p in cohort.problems)


def test_phantom_cohort_keeps_every_lesion_and_the_cache_is_reused(phantom_cohort, tmp_path):
    cohort = read_cohort(phantom_cohort)
    lesions = list(csv.DictReader(open(phantom_cohort / "lesions.csv")))
    assert sum(len(c.lesions) for c in cohort.cases) == len(lesions), "benign mimics and GG1 included"
    config = PreprocessConfig(shape=(8, 32, 32), spacing=(3.0, 3.0, 3.0))
    first = prepare_cases(cohort.cases, config, tmp_path)
    stamp = {p: p.stat().st_mtime_ns for p in tmp_path.rglob("*.npy")}
    again = prepare_cases(cohort.cases, config, tmp_path)
    assert [c.case_id for c in again] == [c.case_id for c in first]
    assert {p: p.stat().st_mtime_ns for p in tmp_path.rglob("*.npy")} == stamp, "nothing recomputed"
    # a case whose every lesion is csPCa: a lesion-centred crop must then hold csPCa voxels and their score
    case = next(c for c in first if c.lesions and all(lesion.grade_group >= 2 for lesion in c.lesions))
    image = case.image()
    assert isinstance(image, np.memmap) and image.shape == (3, 8, 32, 32)
    sampler = CropSampler(first, (8, 16, 16), lesion_fraction=1.0, seed=0)
    index = first.index(case)
    crop = sampler.sample(index, epoch=1)
    assert crop["image"].shape == (3, 8, 16, 16) and crop["cspca"].any()
    lowest_grade = min(lesion.grade_group for lesion in case.lesions)
    assert crop["target"].max() >= SCORE_BY_GRADE[lowest_grade] - 1e-6
    assert np.array_equal(sampler.sample(index, epoch=1)["image"], crop["image"]), "deterministic"

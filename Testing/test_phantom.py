"""Tests of LesionAILib.phantom: determinism, sites, tissue values, geometry, ground truth, difficulty and the
on-disk layout. One cohort of site-A cases is generated once per module and shared."""

from __future__ import annotations

import csv
import dataclasses
import json
import math
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk
from scipy import ndimage

from LesionAILib.phantom.cases import PhantomCase, generate_case, study_id_for
from LesionAILib.phantom.cohort import LESION_COLUMNS, MARKSHEET_COLUMNS, write_cohort
from LesionAILib.phantom.profiles import SITES

COHORT_SEED = 3
COHORT_SIZE = 24
SITE_CASES = {"B": 2, "C": 2, "D": 3}  # site A is measured on the cohort


def arr(image: sitk.Image) -> np.ndarray:
    return sitk.GetArrayFromImage(image)


def on_dwi_grid(mask: sitk.Image, case: PhantomCase) -> np.ndarray:
    """A T2-grid label image resampled (nearest neighbour) onto the ADC grid, [Z, Y, X]."""
    return arr(sitk.Resample(mask, case.adc, sitk.Transform(), sitk.sitkNearestNeighbor, 0))


def normal_zone_on_dwi(case: PhantomCase, zone: int) -> np.ndarray:
    """Voxels of the ADC grid in `zone` (1 PZ, 2 TZ), eroded by one voxel in-plane (partial volume) and at
    least 2 voxels away from any lesion."""
    zones = on_dwi_grid(case.zones, case)
    lesions = on_dwi_grid(case.lesion_instances, case) > 0
    inside = ndimage.binary_erosion(zones == zone, structure=np.ones((1, 3, 3), bool))
    return inside & ~ndimage.binary_dilation(lesions, structure=np.ones((1, 5, 5), bool))


@pytest.fixture(scope="module")
def cohort() -> list[PhantomCase]:
    return [generate_case(COHORT_SEED, "A", i) for i in range(COHORT_SIZE)]


@pytest.fixture(scope="module")
def other_sites() -> dict[str, list[PhantomCase]]:
    return {name: [generate_case(11, name, i) for i in range(n)] for name, n in SITE_CASES.items()}


def normal_pz_medians(case: PhantomCase) -> tuple[float, float]:
    """Median T2w (T2 grid, PZ eroded by 2 voxels, no lesion) and ADC (see normal_zone_on_dwi) of normal PZ."""
    zones, lesions = arr(case.zones), arr(case.lesion_instances)
    pz = ndimage.binary_erosion(zones == 1, iterations=2) & (lesions == 0)
    return float(np.median(arr(case.t2w)[pz])), float(np.median(arr(case.adc)[normal_zone_on_dwi(case, 1)]))


# ------------------------------------------------------------------------------------------- determinism


def test_same_inputs_give_bit_identical_cases(cohort):
    again = generate_case(COHORT_SEED, "A", 0)
    first = cohort[0]
    for name in ("t2w", "adc", "hbv", "lesion_instances", "cspca_mask", "zones"):
        a, b = getattr(first, name), getattr(again, name)
        assert np.array_equal(arr(a), arr(b)), name
        assert a.GetOrigin() == b.GetOrigin() and a.GetDirection() == b.GetDirection()
    assert again.lesions == first.lesions


def test_different_seed_or_index_gives_different_case(cohort):
    other_seed = generate_case(COHORT_SEED + 1, "A", 0)
    assert other_seed.t2w.GetSize() != cohort[0].t2w.GetSize() or not np.array_equal(
        arr(other_seed.t2w), arr(cohort[0].t2w)
    )
    assert cohort[1].t2w.GetOrigin() != cohort[0].t2w.GetOrigin()


# ------------------------------------------------------------------------------------------------- sites


def test_four_named_sites_with_descriptions():
    assert {"A", "B", "C", "D"} <= set(SITES)
    for name, profile in SITES.items():
        assert profile.name == name
        assert profile.description.startswith(f"{name}:")
    assert len({p.site_id for p in SITES.values()}) == len(SITES)
    # D differs from A in every axis of domain shift
    a, d = SITES["A"], SITES["D"]
    for field in (
        "t2_inplane_mm",
        "t2_slice_mm",
        "t2_te_ms",
        "t2_gain",
        "t2_snr",
        "dwi_inplane_mm",
        "dwi_snr",
        "hbv_b_value",
        "adc_calibration",
        "bias_field",
        "misregistration_mm",
    ):
        assert getattr(a, field) != getattr(d, field), field


def test_adc_calibration_scales_measured_adc_exactly():
    """Same anatomy and noise (same site_id), only the ADC calibration changed: ADC scales by its ratio."""
    reference = generate_case(3, "A", 0)
    biased = generate_case(3, dataclasses.replace(SITES["A"], adc_calibration=0.9), 0)
    assert np.array_equal(arr(reference.t2w), arr(biased.t2w))
    adc_ref, adc_biased = arr(reference.adc), arr(biased.adc)
    tissue = (adc_ref > 200) & (adc_ref < 3500)
    ratio = adc_biased[tissue] / adc_ref[tissue]
    assert np.allclose(ratio, 0.9, rtol=1e-4)


def test_sites_differ_in_measured_tissue_values(cohort, other_sites):
    """Normal-PZ T2w and ADC medians of sites B, C, D against A follow the profiles' gain/TE and ADC
    calibration (the anatomy differs between cases and sites: +-70 um^2/s and +-12 ms per case, hence the
    tolerances)."""
    measured = {"A": np.mean([normal_pz_medians(case) for case in cohort], axis=0)}
    for name, cases in other_sites.items():
        measured[name] = np.mean([normal_pz_medians(case) for case in cases], axis=0)
    a = SITES["A"]
    for name in other_sites:
        p = SITES[name]
        expected_t2 = p.t2_gain * math.exp(-p.t2_te_ms / 165.0) / (a.t2_gain * math.exp(-a.t2_te_ms / 165.0))
        assert measured[name][0] / measured["A"][0] == pytest.approx(expected_t2, rel=0.2), name
        expected_adc = p.adc_calibration / a.adc_calibration
        assert measured[name][1] / measured["A"][1] == pytest.approx(expected_adc, abs=0.05), name
    # D reads a clearly lower ADC than A (10 % calibration bias)
    assert measured["D"][1] < 0.95 * measured["A"][1]


# ---------------------------------------------------------------------------------------- tissue values


def test_tissue_values_in_documented_ranges(cohort):
    pz_adc = np.median([np.median(arr(c.adc)[normal_zone_on_dwi(c, 1)]) for c in cohort])
    tz_adc = np.median([np.median(arr(c.adc)[normal_zone_on_dwi(c, 2)]) for c in cohort])
    assert 1600 <= pz_adc <= 2000
    assert 1200 <= tz_adc <= 1500
    # all voxels of csPCa lesions (partial volume with the 2 mm DWI grid pulls small lesions up)
    cancer = np.concatenate([arr(c.adc)[on_dwi_grid(c.cspca_mask, c) > 0] for c in cohort])
    assert len(cancer) > 100
    assert 600 <= np.median(cancer) <= 1050
    pz_t2, tz_t2 = [], []
    for case in cohort:
        zones, lesions, t2w = arr(case.zones), arr(case.lesion_instances), arr(case.t2w)
        far = ~ndimage.binary_dilation(lesions > 0, iterations=4)
        pz_t2.append(np.median(t2w[ndimage.binary_erosion(zones == 1, iterations=2) & far]))
        tz_t2.append(np.median(t2w[ndimage.binary_erosion(zones == 2, iterations=2) & far]))
    assert 300 <= np.median(pz_t2) <= 450
    assert 180 <= np.median(tz_t2) <= 260


def test_csPCa_darker_on_t2_and_brighter_on_high_b(cohort):
    t2_ratios, hbv_ratios = [], []
    for case in cohort:
        t2w, instances = arr(case.t2w), arr(case.lesion_instances)
        on_dwi = on_dwi_grid(case.lesion_instances, case)
        zones_dwi = on_dwi_grid(case.zones, case) > 0
        hbv = arr(case.hbv)
        for lesion in case.lesions:
            if not lesion.clinically_significant:
                continue
            mask = on_dwi == lesion.lesion_id
            ring = (
                ndimage.binary_dilation(mask, iterations=3) & ~ndimage.binary_dilation(mask) & zones_dwi & (on_dwi == 0)
            )
            if mask.any() and ring.any():
                hbv_ratios.append(hbv[mask].mean() / hbv[ring].mean())
            mask_t2 = instances == lesion.lesion_id
            ring_t2 = (
                ndimage.binary_dilation(mask_t2, iterations=6)
                & ~ndimage.binary_dilation(mask_t2, iterations=2)
                & (arr(case.zones) == (1 if lesion.zone == "PZ" else 2))
                & (instances == 0)
            )
            if lesion.zone == "PZ" and ring_t2.any():
                t2_ratios.append(t2w[mask_t2].mean() / t2w[ring_t2].mean())
    assert len(hbv_ratios) >= 10 and len(t2_ratios) >= 5
    assert np.mean(hbv_ratios) > 1.5
    assert np.mean(np.array(hbv_ratios) > 1.0) >= 0.8
    assert np.mean(t2_ratios) < 0.9


# ------------------------------------------------------------------------------------------------- grids


def test_grids_are_oblique_with_site_spacings(cohort, other_sites):
    for case in cohort[:5]:
        profile = SITES[case.site]
        assert case.t2w.GetSpacing() == pytest.approx((0.5, 0.5, 3.0))
        assert case.adc.GetSpacing() == pytest.approx((2.0, 2.0, 3.0))
        assert case.hbv.GetSpacing() == case.adc.GetSpacing() and case.hbv.GetOrigin() == case.adc.GetOrigin()
        assert case.t2w.GetSize()[:2] == (profile.t2_matrix, profile.t2_matrix)
        assert case.adc.GetSize()[:2] == profile.dwi_matrix
        assert profile.t2_slices[0] <= case.t2w.GetSize()[2] <= profile.t2_slices[1]
        for image in (case.t2w, case.adc):
            direction = np.array(image.GetDirection()).reshape(3, 3)
            assert np.allclose(direction.T @ direction, np.eye(3), atol=1e-9)
            tilt = math.degrees(math.acos(direction[2, 2]))  # slice normal vs LPS z
            assert 2.0 <= tilt <= 25.0
        # site A: DWI in the T2 plane
        assert np.allclose(case.t2w.GetDirection(), case.adc.GetDirection())
        for mask in (case.zones, case.lesion_instances, case.cspca_mask):
            assert mask.GetPixelID() == sitk.sitkUInt8
            assert mask.GetSize() == case.t2w.GetSize() and mask.GetOrigin() == case.t2w.GetOrigin()
            assert mask.GetDirection() == case.t2w.GetDirection()
    site_d = other_sites["D"][0]
    assert site_d.t2w.GetSpacing() == pytest.approx((0.5625, 0.5625, 3.6))
    assert site_d.adc.GetSpacing() == pytest.approx((2.5, 2.5, 3.6))
    normal_t2 = np.array(site_d.t2w.GetDirection()).reshape(3, 3)[:, 2]
    normal_dwi = np.array(site_d.adc.GetDirection()).reshape(3, 3)[:, 2]
    assert math.degrees(math.acos(normal_t2 @ normal_dwi)) == pytest.approx(6.0, abs=0.01)


# ------------------------------------------------------------------------------------------ ground truth


def test_masks_agree_with_lesion_records(cohort):
    for case in cohort:
        instances, cspca, zones = arr(case.lesion_instances), arr(case.cspca_mask), arr(case.zones)
        assert set(np.unique(zones)) <= {0, 1, 2} and (zones == 1).any() and (zones == 2).any()
        assert sorted(set(np.unique(instances)) - {0}) == [lesion.lesion_id for lesion in case.lesions]
        expected = np.zeros_like(instances)
        for lesion in case.lesions:
            assert 0 <= lesion.grade_group <= 5
            assert lesion.kind in ("cancer", "bph_nodule", "prostatitis")
            assert (lesion.kind == "cancer") == (lesion.grade_group >= 1)
            assert lesion.zone in ("PZ", "TZ")
            assert 2.5 <= lesion.diameter_mm <= 25.5
            voxels = instances == lesion.lesion_id
            assert np.mean(zones[voxels] > 0) >= 0.95  # lesions lie in the gland
            if lesion.clinically_significant:
                expected[voxels] = lesion.grade_group
        assert np.array_equal(cspca, expected)


def test_recorded_centre_matches_mask_centroid(cohort):
    distances = []
    for case in cohort:
        instances = arr(case.lesion_instances)
        for lesion in case.lesions:
            index = np.argwhere(instances == lesion.lesion_id)[:, ::-1].mean(axis=0)  # (x, y, z)
            centroid = np.array(case.t2w.TransformContinuousIndexToPhysicalPoint(tuple(float(v) for v in index)))
            distances.append(np.linalg.norm(centroid - np.array(lesion.center_lps_mm)))
    assert len(distances) >= 20
    assert max(distances) <= 2.0  # slices are 3 mm thick
    assert np.median(distances) <= 0.8


def test_lesion_volume_matches_mask_volume(cohort):
    for case in cohort:
        voxel_ml = np.prod(case.t2w.GetSpacing()) / 1000.0
        instances = arr(case.lesion_instances)
        for lesion in case.lesions:
            if lesion.volume_ml >= 0.2:  # small lesions are dominated by slice quantisation
                mask_ml = np.count_nonzero(instances == lesion.lesion_id) * voxel_ml
                assert mask_ml == pytest.approx(lesion.volume_ml, rel=0.35)


# ------------------------------------------------------------------------------------- cohort difficulty


def test_case_mix(cohort):
    has_cspca = [any(lesion.clinically_significant for lesion in case.lesions) for case in cohort]
    assert 0.25 <= np.mean(has_cspca) <= 0.65  # population ~0.42; 24 cases give +-0.1
    assert any(not case.lesions for case in cohort)
    lesions = [lesion for case in cohort for lesion in case.lesions]
    assert 0.5 <= np.mean([lesion.zone == "PZ" for lesion in lesions]) <= 0.9
    assert {lesion.kind for lesion in lesions} == {"cancer", "bph_nodule", "prostatitis"}
    volumes = [case.prostate_volume_ml for case in cohort]
    assert 25 <= min(volumes) and max(volumes) <= 80


def test_lesion_adc_overlaps_between_benign_and_significant(cohort):
    """Lesion mean ADC separates csPCa from benign/ISUP 1 lesions well but not perfectly."""
    scores, labels = [], []
    for case in cohort:
        instances = on_dwi_grid(case.lesion_instances, case)
        adc = arr(case.adc)
        for lesion in case.lesions:
            voxels = instances == lesion.lesion_id
            if voxels.any():
                scores.append(-adc[voxels].mean())
                labels.append(lesion.clinically_significant)
    scores, labels = np.array(scores), np.array(labels)
    positive, negative = scores[labels], scores[~labels]
    assert len(positive) >= 10 and len(negative) >= 8
    auroc = np.mean([(p > negative).mean() + 0.5 * (p == negative).mean() for p in positive])
    assert 0.6 <= auroc <= 0.95
    assert negative.max() > positive.min()  # the ADC ranges overlap


# ---------------------------------------------------------------------------------------------- writing


def test_write_cohort_layout(tmp_path: Path):
    calls = []
    out = tmp_path / "cohort"
    ids = write_cohort(out, 2, site="B", seed=5, progress=lambda done, total: calls.append((done, total)))
    assert ids == ["B0000", "B0001"]
    assert calls == [(1, 2), (2, 2)]
    expected = {"marksheet.csv", "lesions.csv", "cohort.json"}
    for case_id in ids:
        study = study_id_for(int(case_id[1:]))
        stem = f"{case_id}_{study}"
        expected |= {f"images/{case_id}/{stem}_{s}.mha" for s in ("t2w", "adc", "hbv")}
        expected |= {f"labels/{stem}.nii.gz", f"lesions/{stem}.nii.gz", f"zones/{stem}.nii.gz"}
    written = {str(p.relative_to(out)) for p in out.rglob("*") if p.is_file()}
    assert written == expected

    cohort_json = json.loads((out / "cohort.json").read_text())
    assert cohort_json["case_ids"] == ids and cohort_json["n_cases"] == 2 and cohort_json["synthetic"] is True
    assert cohort_json["site"] == "B" and cohort_json["seed"] == 5
    assert cohort_json["generator"] == "LesionAILib.phantom" and isinstance(cohort_json["version"], int)

    with open(out / "marksheet.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert list(rows[0]) == MARKSHEET_COLUMNS
    assert [r["patient_id"] for r in rows] == ids and all(r["center"] == "B" for r in rows)
    with open(out / "lesions.csv", newline="") as f:
        lesion_rows = list(csv.DictReader(f))
    assert list(lesion_rows[0] if lesion_rows else LESION_COLUMNS) == LESION_COLUMNS

    case = generate_case(5, "B", 1)
    assert [int(r["lesion_id"]) for r in lesion_rows if r["patient_id"] == "B0001"] == [
        lesion.lesion_id for lesion in case.lesions
    ]
    for row, index in zip(rows, (0, 1), strict=True):
        lesions = generate_case(5, "B", index).lesions if index == 0 else case.lesions
        # a case without lesions is either a negative systematic biopsy ("0") or unbiopsied ("")
        expected = (
            ",".join(str(lesion.grade_group) for lesion in lesions)
            if lesions
            else ("0" if row["histopath_type"] == "SysBx" else "")
        )
        assert row["lesion_ISUP"] == expected
        assert int(row["case_ISUP"]) == max((lesion.grade_group for lesion in lesions), default=0)
    row = rows[1]
    assert row["case_csPCa"] == ("YES" if any(lesion.clinically_significant for lesion in case.lesions) else "NO")
    stem = f"B0001_{case.study_id}"
    t2w = sitk.ReadImage(str(out / "images" / "B0001" / f"{stem}_t2w.mha"))
    assert np.array_equal(arr(t2w), arr(case.t2w)) and t2w.GetDirection() == case.t2w.GetDirection()
    label = sitk.ReadImage(str(out / "labels" / f"{stem}.nii.gz"))
    assert np.array_equal(arr(label), arr(case.cspca_mask))
    assert label.GetOrigin() == pytest.approx(case.t2w.GetOrigin(), abs=1e-4)


def test_errors_are_one_line_value_errors(tmp_path: Path):
    with pytest.raises(ValueError, match=r"unknown phantom site 'Z'.*A, B, C, D"):
        generate_case(0, "Z")
    with pytest.raises(ValueError, match="unknown phantom site"):
        write_cohort(tmp_path / "x", 1, site="nope")
    with pytest.raises(ValueError, match="n_cases must be >= 1"):
        write_cohort(tmp_path / "y", 0)
    assert not (tmp_path / "x").exists() and not (tmp_path / "y").exists()

"""Tests of phantom site E, the held-out test site outside the range of the training sites A-D
(issue 14 fixes its parameters): its profile, its grids and its ADC calibration."""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import pytest
import SimpleITK as sitk

from LesionAILib.phantom.cases import PhantomCase, generate_case
from LesionAILib.phantom.profiles import SITES

# issue 14, section 4, written out here so that a change of the table shows up as a failing test
ISSUE_14_SITE_E = {
    "t2_matrix": 256,
    "t2_inplane_mm": 0.7,
    "t2_slice_mm": 4.5,
    "t2_slices": (14, 18),
    "t2_te_ms": 150.0,
    "t2_gain": 0.3,
    "t2_snr": 10.0,
    "dwi_matrix": (64, 64),
    "dwi_inplane_mm": 3.0,
    "dwi_slice_mm": 4.5,
    "dwi_tilt_offset_deg": 12.0,
    "dwi_te_ms": 95.0,
    "dwi_gain": 20.0,
    "dwi_snr": 14.0,
    "adc_b_values": (50.0, 600.0),
    "hbv_b_value": 1000.0,
    "hbv_acquired": True,
    "adc_calibration": 1.12,
    "bias_field": 0.7,
    "misregistration_mm": 6.0,
}
# every scalar parameter on which E lies outside the range A-D span (the high b-value does not: D has b1000)
OUTSIDE_TRAINING_RANGE = (
    "t2_matrix",
    "t2_inplane_mm",
    "t2_slice_mm",
    "t2_te_ms",
    "t2_gain",
    "t2_snr",
    "dwi_inplane_mm",
    "dwi_slice_mm",
    "dwi_tilt_offset_deg",
    "dwi_te_ms",
    "dwi_gain",
    "dwi_snr",
    "adc_calibration",
    "bias_field",
    "misregistration_mm",
)


@pytest.fixture(scope="module")
def site_e_cases() -> list[PhantomCase]:
    return [generate_case(5, "E", index) for index in range(3)]


def direction(image: sitk.Image) -> np.ndarray:
    return np.array(image.GetDirection()).reshape(3, 3)


def test_site_e_profile_is_the_one_issue_14_fixes():
    profile = SITES["E"]
    assert {name: getattr(profile, name) for name in ISSUE_14_SITE_E} == ISSUE_14_SITE_E
    assert profile.description.startswith("E:")
    assert profile.site_id not in {SITES[name].site_id for name in "ABCD"}


@pytest.mark.parametrize("field", OUTSIDE_TRAINING_RANGE)
def test_site_e_lies_outside_the_training_sites_range(field):
    training = [getattr(SITES[name], field) for name in "ABD"]
    assert not min(training) <= getattr(SITES["E"], field) <= max(training)
    # and outside site C too, which lies inside A/B/D on every parameter but the b-value
    everything = [*training, getattr(SITES["C"], field)]
    assert not min(everything) <= getattr(SITES["E"], field) <= max(everything)


def test_site_e_grids_have_its_matrix_spacing_and_slice_count(site_e_cases):
    for case in site_e_cases:
        columns, rows, slices = case.t2w.GetSize()
        assert (columns, rows) == (256, 256)
        assert 14 <= slices <= 18
        assert case.t2w.GetSpacing() == pytest.approx((0.7, 0.7, 4.5))
        # the DWI stack covers the same slab with the same slice thickness: as many slices
        assert case.adc.GetSize() == (64, 64, slices)
        assert case.adc.GetSpacing() == pytest.approx((3.0, 3.0, 4.5))
        assert case.hbv.GetSize() == case.adc.GetSize() and case.hbv.GetOrigin() == case.adc.GetOrigin()
        for mask in (case.zones, case.lesion_instances, case.cspca_mask):
            assert mask.GetSize() == case.t2w.GetSize() and mask.GetDirection() == case.t2w.GetDirection()
        assert case.b_value == 1000.0


def test_site_e_dwi_plane_is_tilted_12_degrees_against_the_t2_plane(site_e_cases):
    for case in site_e_cases:
        t2, dwi = direction(case.t2w), direction(case.adc)
        assert np.allclose(dwi.T @ dwi, np.eye(3), atol=1e-9)
        assert math.degrees(math.acos(np.clip(t2[:, 2] @ dwi[:, 2], -1.0, 1.0))) == pytest.approx(12.0, abs=0.01)
        # the tilt is about the T2's left-right (column) axis, which both planes share
        assert t2[:, 0] @ dwi[:, 0] == pytest.approx(1.0, abs=1e-9)


def test_site_e_adc_calibration_multiplies_the_measured_adc_by_1_12():
    """Same anatomy and noise, calibration 1.0 instead of 1.12: the tissue ADC scales by exactly 1.12."""
    calibrated = generate_case(5, "E", 0)
    neutral = generate_case(5, dataclasses.replace(SITES["E"], adc_calibration=1.0), 0)
    adc, reference = sitk.GetArrayFromImage(calibrated.adc), sitk.GetArrayFromImage(neutral.adc)
    tissue = (reference > 200) & (reference < 3500)
    assert tissue.sum() > 1000
    assert np.allclose(adc[tissue] / reference[tissue], 1.12, rtol=1e-4)
    assert np.array_equal(sitk.GetArrayFromImage(calibrated.hbv), sitk.GetArrayFromImage(neutral.hbv))

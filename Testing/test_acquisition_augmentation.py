"""Augmentation over acquisition parameters: each transform does what it says, keeps the grid, and is
off unless switched on (training without it is unchanged)."""

from __future__ import annotations

import dataclasses
import json
import math

import numpy as np
import pytest
import torch
from conftest import ROOT

from LesionAILib.training.acquisition_augmentation import (
    Acquisition,
    AcquisitionAugmentConfig,
    apply_acquisition,
    bias_field,
    in_signal_units,
    move_rigidly,
    recompute_high_b,
    resample_down_up,
    sample_acquisition,
    simulate_acquisition,
)
from LesionAILib.training.augmentation import AugmentConfig, augment_batch
from LesionAILib.training.config import load_config

ROLES = ("t2w", "adc", "hbv")
SPACING = (3.0, 1.0, 1.0)
NEUTRAL = Acquisition(
    t2_factors=(1.0, 1.0, 1.0),
    dwi_factors=(1.0, 1.0, 1.0),
    t2_bias=(np.zeros((3, 3)), np.zeros(3)),
    dwi_bias=(np.zeros((3, 3)), np.zeros(3)),
    adc_scale=1.0,
    delta_b=0.0,
    noise_sd=(0.0, 0.0, 0.0),
    shift_z_mm=0.0,
    tilt_radians=0.0,
    noise_seed=0,
)


def gaussian_blob(shape, centre, sigma) -> torch.Tensor:
    """[Z, Y, X] Gaussian with ``sigma`` voxels per axis at ``centre`` (voxel index)."""
    axes = [torch.arange(n, dtype=torch.float64) for n in shape]
    grids = torch.meshgrid(*axes, indexing="ij")
    exponent = sum(((g - c) / s) ** 2 for g, c, s in zip(grids, centre, sigma, strict=True))
    return torch.exp(-0.5 * exponent).float()


def centroid(volume: torch.Tensor) -> np.ndarray:
    """(Z, Y, X) intensity-weighted centre of a non-negative [Z, Y, X] volume, in voxels."""
    grids = torch.meshgrid(*[torch.arange(n, dtype=torch.float64) for n in volume.shape], indexing="ij")
    weights = volume.double()
    return np.array([float((g * weights).sum() / weights.sum()) for g in grids])


def phantom_sample() -> torch.Tensor:
    """[3, 12, 40, 40] (T2 z-score, ADC 10⁻³ mm²/s, high-b z-score): a body with a gland of ADC 1.6 and
    a low-ADC lesion, air (the 0.5th percentile) around it; 0 outside the field in the first 3 columns."""
    body = gaussian_blob((12, 40, 40), (5.5, 20, 20), (30, 12, 12)) > 0.3
    lesion = gaussian_blob((12, 40, 40), (6, 22, 18), (1.0, 2.5, 2.5))
    t2 = torch.where(body, 1.0 - 0.6 * lesion, -1.5)
    adc = torch.where(body, 1.6 - 0.8 * lesion, 0.05)
    hbv = torch.where(body, 0.2 + 2.0 * lesion, -0.8)
    sample = torch.stack([t2, adc, hbv])
    sample[:, :, :, :3] = 0.0  # outside the field of view
    return sample


# --------------------------------------------------------------------------- the transforms
def test_down_up_resampling_keeps_grid_and_position_and_removes_finer_detail():
    blob = gaussian_blob((12, 40, 40), (5.3, 17.6, 22.2), (1.5, 3.0, 3.0))[None]
    coarse = resample_down_up(blob, (1.5, 2.0, 2.0))
    assert coarse.shape == blob.shape
    np.testing.assert_allclose(centroid(coarse[0]), centroid(blob[0]), atol=0.05)
    assert float(coarse.sum()) == pytest.approx(float(blob.sum()), rel=0.02)
    assert float(coarse.max()) < float(blob.max())  # blurred
    checkerboard = ((torch.arange(40)[:, None] + torch.arange(40)[None, :]) % 2).float().expand(1, 12, 40, 40)
    flat = resample_down_up(checkerboard, (1.0, 2.0, 2.0))
    assert float((flat - 0.5).abs().max()) < 1e-5  # a pattern finer than the new pixels is gone
    assert torch.equal(resample_down_up(blob, (1.0, 1.0, 1.0)), blob)


def test_thicker_slices_spread_one_slice_over_its_neighbours():
    sheet = torch.zeros(1, 12, 8, 8)
    sheet[0, 6] = 1.0
    thick = resample_down_up(sheet, (2.0, 1.0, 1.0))[0, :, 4, 4]
    assert float(thick[6]) < 0.9 and float(thick[5] + thick[7]) > 0.1
    assert float(thick.sum()) == pytest.approx(1.0, rel=1e-4)


def test_bias_field_is_the_exponential_of_its_polynomial_with_unit_geometric_mean():
    shape = (4, 10, 20)
    assert torch.allclose(bias_field(shape, SPACING, (np.zeros((3, 3)), np.zeros(3))), torch.ones(shape))
    linear = np.array([0.0, 0.0, 0.5])  # along X, per 10 cm
    field = bias_field(shape, SPACING, (np.zeros((3, 3)), linear))
    # 8 voxels of 1 mm apart along X: ratio exp(0.5 · 8 / 100)
    assert float(field[1, 3, 12] / field[1, 3, 4]) == pytest.approx(math.exp(0.5 * 8 / 100), rel=1e-5)
    assert float(field.log().mean()) == pytest.approx(0.0, abs=1e-6)
    assert torch.allclose(field[0], field[3]) and torch.allclose(field[:, 0], field[:, 9])


def test_high_b_is_recomputed_at_the_shifted_b_value():
    signal, adc = torch.full((2, 2), 100.0), torch.tensor([[1.0, 2.0], [0.5, 0.0]])
    higher = recompute_high_b(signal, adc, 500.0)
    expected = 100.0 * np.exp(-500.0 * 1e-3 * np.array([[1.0, 2.0], [0.5, 0.0]]))
    np.testing.assert_allclose(higher.numpy(), expected, rtol=1e-6)
    assert float(higher[0, 0]) > float(higher[0, 1])  # low ADC stays brighter: contrast grows with b


def test_multiplicative_change_in_signal_units_keeps_mean_and_sd_and_a_global_gain_cancels():
    sample = phantom_sample()
    t2, inside = sample[0], sample[0] != 0
    doubled = in_signal_units(t2, inside, lambda signal: 2.0 * signal)
    assert torch.allclose(doubled, t2, atol=1e-5)  # renormalised like the pipeline: a global gain is invisible
    ramp = torch.linspace(0.5, 1.5, 40).expand(12, 40, 40)
    biased = in_signal_units(t2, inside, lambda signal: signal * ramp)
    assert float(biased[inside].mean()) == pytest.approx(float(t2[inside].mean()), abs=1e-4)
    assert float(biased[inside].std()) == pytest.approx(float(t2[inside].std()), rel=1e-4)
    assert torch.all(biased[~inside] == 0)
    body = inside & (t2 > 0.5)
    right, left = body & (torch.arange(40) >= 24), body & (torch.arange(40) < 16)
    assert float(biased[right].mean()) > float(biased[left].mean()) + 0.1  # the field shows in the tissue


def test_adc_scale_multiplies_the_adc_inside_the_prostate_and_nothing_else():
    sample = phantom_sample()
    out = apply_acquisition(sample, ROLES, SPACING, dataclasses.replace(NEUTRAL, adc_scale=1.1))
    prostate = sample[1] > 1.0
    assert prostate.sum() > 500
    np.testing.assert_allclose(out[1][prostate].numpy(), 1.1 * sample[1][prostate].numpy(), rtol=1e-6)
    assert torch.all(out[1][sample[1] == 0] == 0)
    assert torch.allclose(out[0], sample[0], atol=1e-5) and torch.allclose(out[2], sample[2], atol=1e-5)


def test_b_value_shift_raises_lesion_contrast_on_high_b_only():
    sample = phantom_sample()
    out = apply_acquisition(sample, ROLES, SPACING, dataclasses.replace(NEUTRAL, delta_b=600.0))
    lesion = gaussian_blob((12, 40, 40), (6, 22, 18), (1.0, 2.5, 2.5)) > 0.8
    gland = (sample[1] > 1.55) & ~lesion
    before = float(sample[2][lesion].mean() - sample[2][gland].mean())
    after = float(out[2][lesion].mean() - out[2][gland].mean())
    assert after > before * 1.05
    assert torch.equal(out[1], sample[1]) and torch.allclose(out[0], sample[0], atol=1e-5)


def test_noise_has_the_drawn_sd_inside_the_field_and_none_outside():
    sample = phantom_sample()
    noisy = dataclasses.replace(NEUTRAL, noise_sd=(0.2, 0.0, 0.0), noise_seed=3)
    out = apply_acquisition(sample, ROLES, SPACING, noisy)
    inside = sample[0] != 0
    assert float((out[0] - sample[0])[inside].std()) == pytest.approx(0.2, rel=0.05)
    assert torch.all(out[0][~inside] == 0)
    assert torch.allclose(out[1], sample[1]) and torch.allclose(out[2], sample[2], atol=1e-5)


def test_misregistration_moves_a_diffusion_marker_by_the_drawn_shift_and_tilt():
    shape = (16, 40, 40)
    marker = gaussian_blob(shape, (7.5, 19.5 + 12.0, 19.5), (1.2, 2.0, 2.0))  # 12 mm off the centre in Y
    sample = torch.stack([marker, marker, marker])
    moved = move_rigidly(sample, SPACING, 6.0, 0.0)
    np.testing.assert_allclose(centroid(moved[1]) - centroid(marker), [2.0, 0.0, 0.0], atol=0.05)  # 6 mm = 2 slices
    tilt = math.radians(10.0)
    turned = move_rigidly(sample, SPACING, 0.0, tilt)
    # about the left-right axis through the centre: (y, z) = 12 mm · (cos, sin)
    expected = np.array([7.5 + 12.0 * math.sin(tilt) / 3.0, 19.5 + 12.0 * math.cos(tilt), 19.5])
    np.testing.assert_allclose(centroid(turned[1]), expected, atol=0.08)
    out = apply_acquisition(sample, ROLES, SPACING, dataclasses.replace(NEUTRAL, shift_z_mm=6.0))
    assert torch.equal(out[0], marker), "T2 stays"
    assert torch.allclose(out[1], out[2], atol=1e-6), "ADC and high-b move together"
    np.testing.assert_allclose(centroid(out[2]) - centroid(marker), [2.0, 0.0, 0.0], atol=0.05)


# --------------------------------------------------------------------------- switch, draws, batch
def test_acquisition_augmentation_is_off_by_default_and_leaves_maps_and_masks_in_place():
    torch.manual_seed(0)
    images = phantom_sample()[None].repeat(2, 1, 1, 1, 1)
    maps = torch.rand(2, 1, 12, 40, 40)
    masks = (maps > 0.8).to(torch.uint8)
    seeds = [(1, 1, 0), (1, 1, 1)]
    assert not AugmentConfig().acquisition.enabled
    assert simulate_acquisition(images, ROLES, SPACING, AcquisitionAugmentConfig(), seeds) is images
    still = AugmentConfig(
        flip_probability=0,
        rotation_degrees=0,
        scale_range=0,
        misregistration_mm=0,
        gain_range=0,
        offset_range=0,
        adc_gain_range=0,
        noise_std=0,
    )
    plain = augment_batch(images, maps, masks, ROLES, SPACING, still, seeds)
    assert torch.allclose(plain[0], images, atol=1e-5)
    robust = dataclasses.replace(still, acquisition=AcquisitionAugmentConfig(enabled=True, probability=1.0))
    out, out_maps, out_masks = augment_batch(images, maps, masks, ROLES, SPACING, robust, seeds)
    assert out.shape == images.shape and not torch.allclose(out, images, atol=1e-3)
    assert torch.allclose(out_maps, plain[1]) and torch.equal(out_masks, plain[2])
    again = augment_batch(images[1:], maps[1:], masks[1:], ROLES, SPACING, robust, seeds[1:])[0]
    assert torch.equal(again[0], out[1]), "a sample's acquisition depends only on its seed"


def test_drawn_acquisitions_stay_within_the_configured_ranges():
    config = AcquisitionAugmentConfig(enabled=True)
    draws = [sample_acquisition(config, np.random.default_rng([4, i])) for i in range(300)]
    scales = np.array([d.adc_scale for d in draws])
    assert scales.min() >= 0.85 and scales.max() <= 1.15 and scales.max() > 1.12 and scales.min() < 0.88
    slices = np.array([d.t2_factors[0] for d in draws] + [d.dwi_factors[0] for d in draws])
    assert slices.min() >= 1.0 and slices.max() <= 1.7
    dwi = np.array([d.dwi_factors[1] for d in draws])
    assert dwi.max() <= 1.6 and all(d.dwi_factors[1] == d.dwi_factors[2] for d in draws)
    assert max(abs(d.delta_b) for d in draws) <= 600.0 and max(abs(d.shift_z_mm) for d in draws) <= 3.0
    assert max(abs(d.tilt_radians) for d in draws) <= math.radians(5.0) + 1e-12
    assert max(max(d.noise_sd) for d in draws) <= 0.3 and max(d.noise_sd[1] for d in draws) <= 0.15


def test_robust_recipe_is_the_demo_recipe_plus_acquisition_augmentation_and_names_no_held_out_site():
    demo = json.loads((ROOT / "Resources" / "Configs" / "demo-phantom.json").read_text())
    robust = json.loads((ROOT / "Resources" / "Configs" / "demo-phantom-robust.json").read_text())
    differing = {key for key in demo.keys() | robust.keys() if demo.get(key) != robust.get(key)}
    assert differing == {"description", "augment"}  # same name: it is to replace the bundled model
    assert "train" not in robust and "val" not in robust  # the data come from the command line
    config = load_config(ROOT / "Resources" / "Configs" / "demo-phantom-robust.json")
    assert config.augment.enabled and config.augment.acquisition.enabled
    assert config.augment.misregistration_mm >= 6.0

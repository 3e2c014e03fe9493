"""ProstateX localization-map kinds, diffusion patches on the T2 patch's pixels, and the single-network baseline."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from LesionAILib.prostatex.baseline_network import StackedPatchNet, stacked_inputs
from LesionAILib.prostatex.classifier import PatchClassifierConfig, PatchInputs, zone_one_hot
from LesionAILib.prostatex.classifier_training import TrainingSettings, train_member
from LesionAILib.prostatex.findings import load_findings
from LesionAILib.prostatex.localization_maps import (
    aligned_channels,
    diffusion_on_t2_pixels,
    localization_maps,
    low_adc_likelihood,
)
from LesionAILib.prostatex.patches import BLOB_SIGMA_PIXELS, localization_blob


def ramp_patches(count: int = 2) -> torch.Tensor:
    """[count, 3, 32, 32]: T2 random, ADC = its column index / 31, high-b = its row index / 31."""
    torch.manual_seed(0)
    images = torch.rand(count, 3, 32, 32)
    images[:, 1] = torch.arange(32.0)[None, :] / 31.0
    images[:, 2] = torch.arange(32.0)[:, None] / 31.0
    return images


def test_diffusion_pixel_at_the_point_lands_on_the_t2_pixel_at_the_point_and_spans_a_quarter():
    on_t2 = diffusion_on_t2_pixels(ramp_patches()[:, 1:3])
    # T2 pixel (15, 16) holds the point, as ADC pixel (15, 16) does
    assert float(on_t2[0, 0, 15, 16]) == pytest.approx(16 / 31, abs=1e-6)
    assert float(on_t2[0, 1, 15, 16]) == pytest.approx(15 / 31, abs=1e-6)
    # 4 T2 pixels (2 mm) to the right is 1 ADC pixel (2 mm) to the right
    assert float(on_t2[0, 0, 15, 20]) == pytest.approx(17 / 31, abs=1e-6)
    assert float(on_t2[0, 1, 19, 16]) == pytest.approx(16 / 31, abs=1e-6)
    # the T2 patch's 16 mm span 8 ADC pixels: columns 16 - 16/4 ... 16 + 15/4
    assert float(on_t2[0, 0, 0, 0]) == pytest.approx(12 / 31, abs=1e-6)
    assert float(on_t2[0, 0, 0, 31]) == pytest.approx((16 + 15 / 4) / 31, abs=1e-6)


def test_aligned_channels_keep_the_t2_and_bring_adc_and_high_b_onto_its_pixels():
    images = ramp_patches()
    aligned = aligned_channels(images)
    assert aligned.shape == images.shape
    assert torch.equal(aligned[:, 0], images[:, 0])
    assert torch.allclose(aligned[:, 1:], diffusion_on_t2_pixels(images[:, 1:3]))


def test_low_adc_likelihood_ranks_pixels_against_the_patch_tissue():
    adc = np.zeros((1, 32, 32), np.float32)
    adc[0, 8:24, 8:24] = 0.8  # inside the volume; 0 is outside it (equalised values are > 0)
    adc[0, 14:18, 14:18] = 0.3  # a dark spot in the middle of the tissue
    likelihood = low_adc_likelihood(adc)[0]
    assert likelihood.shape == (32, 32) and likelihood.dtype == np.float32
    assert np.all(likelihood[adc[0] == 0] == 0)
    assert likelihood[15, 15] > 0.9 > 0.1 > likelihood[9, 22]
    assert np.all((likelihood >= 0) & (likelihood <= 1))


def test_map_kinds_blob_is_constant_none_is_zero_low_adc_differs_per_finding():
    images = ramp_patches(3)
    images[1, 1] = images[1, 1].flip(-1)  # the second finding's ADC falls where the first's rises
    blob = localization_maps(images, "blob")
    expected = np.stack([localization_blob(BLOB_SIGMA_PIXELS["t2w"]), localization_blob(BLOB_SIGMA_PIXELS["adc"])])
    for finding in range(3):
        np.testing.assert_array_equal(blob[finding].numpy(), expected)
    assert torch.count_nonzero(localization_maps(images, "none")) == 0
    low = localization_maps(images, "low_adc")
    assert low.shape == (3, 2, 32, 32)
    assert bool(torch.all(low <= blob + 1e-6)) and bool(torch.all(low >= 0))
    assert not torch.allclose(low[0], low[1])
    with pytest.raises(ValueError, match="unknown localization map"):
        localization_maps(images, "detector")


def test_low_adc_map_at_the_point_is_brighter_on_significant_findings(findings_dir):
    findings = load_findings(findings_dir, "low_adc")
    centre = findings.inputs.localization[:, 1, 15, 16].numpy()
    assert len(findings) == 305
    assert centre[findings.labels].mean() > centre[~findings.labels].mean() + 0.05
    default = load_findings(findings_dir)
    assert torch.equal(default.inputs.images, findings.inputs.images)
    assert torch.all(default.inputs.localization == default.inputs.localization[:1])  # blob: one for all


def test_single_network_baseline_uses_every_channel_and_the_zone_and_trains():
    config = PatchClassifierConfig(members=1)
    images = ramp_patches(8)
    inputs = stacked_inputs(PatchInputs(images, torch.ones(8, 2, 32, 32), zone_one_hot(["PZ", "TZ"] * 4)))
    assert torch.count_nonzero(inputs.localization) == 0
    torch.manual_seed(0)
    net = StackedPatchNet(config).eval()
    logit = net(inputs.images, inputs.localization, inputs.zone)
    assert logit.shape == (8,)
    for channel in range(3):
        changed = inputs.images.clone()
        changed[:, channel] += 0.3
        assert not torch.allclose(net(changed, inputs.localization, inputs.zone), logit), channel
    assert not torch.allclose(net(inputs.images, inputs.localization, zone_one_hot(["AS"] * 8)), logit)
    labels = np.array([True, False] * 4)
    inputs.images[labels, 1] -= 0.4  # significant findings darker on ADC
    trained = train_member(inputs, labels, 30, config, TrainingSettings(), seed=1, network=StackedPatchNet)
    assert isinstance(trained, StackedPatchNet)
    with torch.no_grad():
        scores = trained(inputs.images, inputs.localization, inputs.zone)
    assert float(scores[labels].min()) > float(scores[~labels].max())

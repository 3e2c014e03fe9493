"""Network shapes, variants, config round trips, targets and augmentation."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from LesionAILib.errors import ConfigError
from LesionAILib.models.networks import ClassifierConfig, LesionModel, LocalizationNet, LocalizerConfig, ModelConfig
from LesionAILib.training.augmentation import AugmentConfig, augment_batch
from LesionAILib.training.targets import SCORE_BY_GRADE, heatmap_target


@pytest.mark.parametrize("variant", ["per_sequence", "fusion", "multitask"])
def test_localizer_variants_give_per_sequence_and_combined_maps(variant):
    torch.manual_seed(0)
    net = LocalizationNet(LocalizerConfig(variant=variant, widths=(4, 8, 8, 8)))
    output = net(torch.randn(2, 3, 4, 16, 16))
    assert output["sequence_maps"].shape == (2, 3, 4, 16, 16)
    assert output["combined"].shape == (2, 1, 4, 16, 16)
    for key in ("sequence_maps", "combined"):
        assert float(output[key].detach().min()) >= 0.0 and float(output[key].detach().max()) <= 1.0
    assert (output["case_logit"] is not None) == (variant == "multitask")
    if output["case_logit"] is not None:
        assert output["case_logit"].shape == (2,)


def test_each_sequence_map_depends_only_on_its_sequence_in_the_per_sequence_variant():
    torch.manual_seed(0)
    net = LocalizationNet(LocalizerConfig(variant="per_sequence", widths=(4, 8, 8, 8), dropout=0.0)).eval()
    images = torch.randn(1, 3, 4, 16, 16)
    changed = images.clone()
    changed[:, 2] += 5.0  # alter high-b only
    before, after = net(images), net(changed)
    assert torch.equal(before["sequence_maps"][:, :2], after["sequence_maps"][:, :2])
    assert not torch.equal(before["sequence_maps"][:, 2], after["sequence_maps"][:, 2])
    assert not torch.equal(before["combined"], after["combined"])


def test_anisotropic_encoder_keeps_z_until_the_deepest_level():
    net = LocalizationNet(LocalizerConfig(variant="fusion"))
    features = net.encoders[0](torch.randn(1, 1, 20, 96, 96))
    assert [tuple(f.shape[2:]) for f in features] == [(20, 96, 96), (20, 48, 48), (20, 24, 24), (10, 12, 12)]
    assert net.encoders[0].blocks[0][0].kernel_size == (1, 3, 3)
    assert LocalizerConfig().divisor == (2, 8, 8)


def test_model_config_round_trip_rebuilds_the_same_architecture():
    config = ModelConfig(
        LocalizerConfig(variant="multitask", widths=(4, 8, 16, 16)), ClassifierConfig(crop=(4, 24, 24))
    )
    rebuilt = ModelConfig.from_dict(config.to_dict())
    assert rebuilt == config
    a, b = LesionModel(config), LesionModel(rebuilt)
    assert [(k, v.shape) for k, v in a.state_dict().items()] == [(k, v.shape) for k, v in b.state_dict().items()]


def test_classifier_takes_images_plus_map_and_uses_the_shared_encoder():
    torch.manual_seed(0)
    model = LesionModel(
        ModelConfig(LocalizerConfig(widths=(4, 8, 8, 8)), ClassifierConfig(crop=(8, 16, 16), widths=(4, 8)))
    )
    output = model.classify(torch.randn(5, 4, 8, 16, 16))
    assert output["logit"].shape == (5,) and output["grade_logits"].shape == (5, 6)
    (output["logit"].sum() + output["grade_logits"].sum()).backward()
    encoder_grads = [p.grad for p in model.encoder_parameters()]
    assert any(g is not None and g.abs().sum() > 0 for g in encoder_grads), "encoder features feed the classifier"


def test_invalid_configs_are_refused():
    with pytest.raises(ConfigError, match="unknown localizer variant"):
        LocalizerConfig(variant="transformer")
    with pytest.raises(ConfigError, match="pool factors"):
        LocalizerConfig(widths=(4, 8), pools=((1, 2, 2), (1, 2, 2)))


def test_heatmap_target_plateau_encodes_grade_and_benign_mimics_are_zero():
    instances = np.zeros((10, 40, 40), np.uint8)
    instances[3:7, 5:20, 5:20] = 1  # large GG3
    instances[4:6, 25:35, 25:35] = 2  # GG0 benign mimic
    instances[5, 30, 8] = 3  # one-voxel GG5
    target = heatmap_target(instances, {1: 3, 2: 0, 3: 5}, (3.0, 1.0, 1.0))
    assert target[5, 12, 12] == pytest.approx(SCORE_BY_GRADE[3])
    assert target[instances == 2].max() < 1e-3, "a benign mimic scores 0 (only a far Gaussian tail of its neighbour)"
    assert target[5, 30, 8] == pytest.approx(SCORE_BY_GRADE[5]), "small lesions keep their full score"
    assert 0.0 < target[5, 4, 12] < SCORE_BY_GRADE[3], "edges are soft"
    assert target.min() >= 0 and target.max() <= 1


def _marker_batch():
    images = torch.zeros(1, 3, 4, 32, 32)
    images[:, :, 2, 10, 8] = 1.0
    maps = images[:, :1].clone()
    masks = (maps > 0).to(torch.uint8)
    return images, maps, masks


def test_augmentation_flip_and_misregistration_move_the_right_channels():
    images, maps, masks = _marker_batch()
    flip_only = AugmentConfig(
        flip_probability=1.0,
        rotation_degrees=0,
        scale_range=0,
        misregistration_mm=0,
        gain_range=0,
        offset_range=0,
        adc_gain_range=0,
        noise_std=0,
    )
    out, out_maps, out_masks = augment_batch(images, maps, masks, ("t2w", "adc", "hbv"), (3, 1, 1), flip_only, [(0,)])
    assert out[0, 0, 2].argmax() == 10 * 32 + (31 - 8), "left-right flip mirrors x"
    assert out_maps[0, 0, 2].argmax() == 10 * 32 + 23 and out_masks[0, 0, 2, 10, 23] == 1
    shift = AugmentConfig(
        flip_probability=0.0,
        rotation_degrees=0,
        scale_range=0,
        misregistration_mm=4.0,
        gain_range=0,
        offset_range=0,
        adc_gain_range=0,
        noise_std=0,
    )
    out, _, _ = augment_batch(images, maps, masks, ("t2w", "adc", "hbv"), (3, 2, 2), shift, [(5,)])
    assert torch.equal(out[0, 0], images[0, 0]), "T2 stays"
    assert torch.allclose(out[0, 1], out[0, 2]), "ADC and high-b move together"
    weights = out[0, 1, 2]
    yy, xx = torch.meshgrid(torch.arange(32.0), torch.arange(32.0), indexing="ij")
    centroid = torch.stack([(weights * yy).sum(), (weights * xx).sum()]) / weights.sum()
    moved = centroid - torch.tensor([10.0, 8.0])
    assert float(moved.abs().max()) <= 2.0 + 1e-4, "at most 4 mm = 2 voxels per axis"
    assert float(moved.norm()) > 0.1


def test_augmentation_is_deterministic_per_sample_seed():
    torch.manual_seed(0)
    images = torch.randn(2, 3, 4, 16, 16)
    maps, masks = torch.rand(2, 1, 4, 16, 16), torch.zeros(2, 1, 4, 16, 16, dtype=torch.uint8)
    config = AugmentConfig()
    a = augment_batch(images, maps, masks, ("t2w", "adc", "hbv"), (3, 1, 1), config, [(1, 2, 3), (1, 2, 4)])[0]
    b = augment_batch(images[1:], maps[1:], masks[1:], ("t2w", "adc", "hbv"), (3, 1, 1), config, [(1, 2, 4)])[0]
    assert torch.equal(a[1], b[0]), "a sample's augmentation does not depend on its batch"
    assert not torch.equal(a[0], images[0])

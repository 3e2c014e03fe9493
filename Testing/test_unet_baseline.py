"""The plain U-Net baseline: the ``unet`` variant, the segmentation objective, and the repository's
training command for it (run here at a tiny size)."""

from __future__ import annotations

import json

import pytest
import torch
from conftest import ROOT, TINY_PREPROCESS

from LesionAILib.cli.main import main
from LesionAILib.evaluation.result_checks import result_problems
from LesionAILib.inference.analyzer import Analyzer
from LesionAILib.models.modelfile import load_model
from LesionAILib.models.networks import LocalizationNet, LocalizerConfig
from LesionAILib.training.cohorts import read_cohort
from LesionAILib.training.config import Phase1Config, load_config
from LesionAILib.training.losses import localization_loss

UNET_CONFIG = ROOT / "Resources" / "Configs" / "plain-unet-baseline.json"
DEMO_CONFIG = ROOT / "Resources" / "Configs" / "demo-phantom.json"
SEGMENTATION = Phase1Config(objective="segmentation")
# the bundled two-phase model's optimisation budget, measured (issue 14): 20 phase-1 epochs of 102 steps
# (204 training cases x 2 crops / batch 4) and 13 phase-2 epochs of 79 steps (1252 mined samples / batch 16)
PHASE1_STEPS_PER_EPOCH = 102
TWO_PHASE_STEPS = 20 * 102 + 13 * 79


def tiny_unet(seed: int = 0) -> LocalizationNet:
    torch.manual_seed(seed)
    return LocalizationNet(LocalizerConfig(variant="unet", widths=(4, 8, 8, 8), dropout=0.0))


def lesion_batch() -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Images [2, 3, 8, 32, 32] with a bright high-b / dark ADC lesion, its csPCa mask [2, 8, 32, 32] and a
    heatmap target of the same shape (used by the regression objective only)."""
    torch.manual_seed(1)
    images = 0.1 * torch.randn(2, 3, 8, 32, 32)
    mask = torch.zeros(2, 8, 32, 32)
    mask[0, 2:6, 10:18, 12:20] = 1.0
    mask[1, 3:7, 16:24, 6:14] = 1.0
    images[:, 1] -= mask
    images[:, 2] += 2.0 * mask
    return images, mask, 0.6 * mask


def output_of(probability: torch.Tensor) -> dict:
    """A network output dict whose combined map is ``probability`` [N, Z, Y, X]."""
    return {"combined": probability[:, None], "sequence_maps": None, "case_logit": None}


# --------------------------------------------------------------------------- the variant
@pytest.mark.parametrize("shape", [(4, 16, 16), (8, 24, 40)])
def test_unet_variant_gives_one_map_on_the_input_grid(shape):
    net = tiny_unet()
    output = net(torch.randn(2, 3, *shape))
    assert output["combined"].shape == (2, 1, *shape)
    assert output["sequence_maps"] is None and output["case_logit"] is None
    combined = output["combined"].detach()
    assert float(combined.min()) >= 0.0 and float(combined.max()) <= 1.0
    assert float(combined.std()) > 0.0


def test_unet_is_early_fusion_every_sequence_feeds_the_one_map():
    net = tiny_unet().eval()
    assert len(net.encoders) == 1 and net.encoders[0].blocks[0][0].in_channels == 3
    images = torch.randn(1, 3, 4, 16, 16)
    before = net(images)["combined"]
    for channel in range(3):
        changed = images.clone()
        changed[:, channel] += 1.0
        assert not torch.allclose(net(changed)["combined"], before), f"channel {channel} is used"


# --------------------------------------------------------------------------- the objective
def test_segmentation_loss_is_near_zero_for_a_perfect_map_and_higher_for_a_shifted_one():
    _, mask, target = lesion_batch()
    perfect = localization_loss(output_of(mask.clamp(1e-4, 1 - 1e-4)), target, mask, SEGMENTATION)
    shifted = localization_loss(output_of(mask.roll(6, dims=3).clamp(1e-4, 1 - 1e-4)), target, mask, SEGMENTATION)
    unsure = localization_loss(output_of(torch.full_like(mask, 0.5)), target, mask, SEGMENTATION)
    assert float(perfect) < 0.01
    assert float(shifted) > 1.0  # missed lesion voxels weigh 1 + positive_weight, and Dice is about 0
    assert float(perfect) < float(unsure) < float(shifted)


def test_segmentation_objective_trains_on_the_mask_not_the_regression_heatmap():
    _, mask, target = lesion_batch()
    prediction = output_of(torch.full_like(mask, 0.3))
    a = localization_loss(prediction, target, mask, SEGMENTATION)
    b = localization_loss(prediction, torch.rand_like(target), mask, SEGMENTATION)
    assert torch.equal(a, b)
    regression = Phase1Config()
    assert not torch.equal(
        localization_loss(prediction, target, mask, regression),
        localization_loss(prediction, torch.rand_like(target), mask, regression),
    )


def test_one_training_step_on_the_segmentation_objective_lowers_it():
    net = tiny_unet(seed=2)
    images, mask, target = lesion_batch()
    optimizer = torch.optim.AdamW(net.parameters(), lr=3e-3)
    before = localization_loss(net(images), target, mask, SEGMENTATION)
    optimizer.zero_grad()
    before.backward()
    optimizer.step()
    with torch.no_grad():
        after = localization_loss(net(images), target, mask, SEGMENTATION)
    assert float(after) < float(before.detach())


# --------------------------------------------------------------------------- the command
def test_unet_baseline_config_is_the_demo_recipe_with_a_unet_and_the_segmentation_objective():
    demo, unet = json.loads(DEMO_CONFIG.read_text()), json.loads(UNET_CONFIG.read_text())
    assert unet["preprocess"] == demo["preprocess"] and unet["seed"] == demo["seed"]
    assert unet["val_fraction"] == demo["val_fraction"] and unet.get("augment") == demo.get("augment")
    for key in ("batch_size", "crops_per_case", "crop", "lesion_fraction", "lr"):
        assert unet["phase1"][key] == demo["phase1"][key], key
    config = load_config(UNET_CONFIG)
    assert config.model.localizer.variant == "unet" and config.model.classifier is None
    assert config.phase1.objective == "segmentation"
    assert config.phase1.patience >= config.phase1.epochs  # the whole budget runs; the best epoch is kept
    # as many optimiser steps as both phases of the two-phase model, within one epoch
    assert abs(config.phase1.epochs * PHASE1_STEPS_PER_EPOCH - TWO_PHASE_STEPS) <= PHASE1_STEPS_PER_EPOCH / 2


def test_lesionai_train_runs_the_unet_baseline_recipe_at_a_tiny_size(phantom_cohort, tmp_path):
    recipe = json.loads(UNET_CONFIG.read_text())
    recipe.update(
        preprocess=TINY_PREPROCESS,
        cache_dir=str(tmp_path / "cache"),
        val_fraction=0.34,
        model={
            **recipe["model"],
            "localizer": {**recipe["model"]["localizer"], "widths": [4, 8, 8], "pools": [[1, 2, 2], [2, 2, 2]]},
        },
    )
    recipe["phase1"].update(epochs=2, patience=2, batch_size=2, crops_per_case=1, crop=[8, 16, 16])
    config_path = tmp_path / "unet.json"
    config_path.write_text(json.dumps(recipe))
    out = tmp_path / "unet.safetensors"
    arguments = ["train", "--config", str(config_path), "--phase", "1", "--train", str(phantom_cohort)]
    assert main([*arguments, "--run-dir", str(tmp_path / "run"), "--out", str(out), "--device", "cpu"]) == 0
    model, metadata = load_model(out)
    assert model.classifier is None and model.config.localizer.variant == "unet"
    assert metadata.training["config"]["phase1"]["objective"] == "segmentation"
    assert [e["epoch"] for e in metadata.training["epochs"]] == [2]
    case = read_cohort(phantom_cohort).cases[0].open()
    result = Analyzer(out, device="cpu").analyze(case)
    assert result.heatmap.GetSize() == case.t2w.GetSize() and result.sequence_heatmaps == {}
    assert result_problems(result, case.t2w) == []

"""CUDA paths (skipped without a GPU; benchmarks/gpu_check.sh runs them on a GPU machine)."""

from __future__ import annotations

import numpy as np
import pytest
import SimpleITK as sitk
import torch
from conftest import tiny_config

from LesionAILib.inference.analyzer import Analyzer
from LesionAILib.training.augmentation import AugmentConfig, augment_batch
from LesionAILib.training.config import TrainConfig
from LesionAILib.training.trainer import Trainer

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU (benchmarks/gpu_check.sh)")


def test_cuda_analysis_matches_cpu(case_0000, tiny_model_path):
    cpu = Analyzer(tiny_model_path, device="cpu").analyze(case_0000)
    gpu = Analyzer(tiny_model_path, device="cuda").analyze(case_0000)
    assert gpu.device.startswith("cuda")
    difference = np.abs(sitk.GetArrayFromImage(gpu.heatmap) - sitk.GetArrayFromImage(cpu.heatmap))
    assert difference.max() < 0.05, "bf16/fp16 autocast on the GPU stays close to the CPU result"


def test_cuda_augmentation_equals_cpu():
    torch.manual_seed(0)
    images, maps = torch.randn(2, 3, 4, 16, 16), torch.rand(2, 1, 4, 16, 16)
    masks = (maps > 0.5).to(torch.uint8)
    config = AugmentConfig(noise_std=0.0)
    seeds = [(1, 2, 3), (1, 2, 4)]
    cpu = augment_batch(images, maps, masks, ("t2w", "adc", "hbv"), (3, 1, 1), config, seeds)
    gpu = augment_batch(images.cuda(), maps.cuda(), masks.cuda(), ("t2w", "adc", "hbv"), (3, 1, 1), config, seeds)
    for a, b in zip(cpu, gpu, strict=True):
        assert torch.allclose(a.float(), b.float().cpu(), atol=1e-4)


def test_cuda_training_with_mixed_precision_runs_and_learns(phantom_cohort, tmp_path):
    settings = tiny_config([str(phantom_cohort)], str(tmp_path / "cache"), device="cuda", phase1={"epochs": 3})
    run = tmp_path / "run"
    Trainer(TrainConfig.from_dict(settings), run).run("1")
    from LesionAILib.jobs.events import read_events

    losses = [e["train_loss"] for e in read_events(run / "progress.jsonl") if e["event"] == "epoch"]
    assert len(losses) == 3 and all(np.isfinite(losses)) and losses[-1] < losses[0]

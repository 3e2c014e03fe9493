"""Training the 3D inpainting network on lesion-free tissue, then calibrating its discrepancies on normal tissue.

Each step draws ``batch`` context crops (:attr:`MaskSettings.context` voxels) centred near random
region voxels of random training volumes, mirrors half of them left-right, hides one random box or
ellipsoid in each (:func:`~LesionAILib.synthesis.masking.random_training_mask`) and minimises the
L1 difference between the synthesised and the real sequences over the hidden voxels that are
acquired and **not lesion** (lesions, grown by :data:`LESION_MARGIN_VOXELS`, are left out of the loss,
so the network learns normal tissue only; cases without lesion labels count as negative studies).
Draws are a pure function of ``(seed, step)``, so a resumed run continues the same sequence.

After training, :func:`calibrate` maps the held-out calibration volumes and fits the normal-tissue
statistics (median, MAD per sequence) on their lesion-free region voxels.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from scipy import ndimage

from LesionAILib.dataclass_dicts import DictSerialisable
from LesionAILib.errors import ConfigError
from LesionAILib.synthesis.mapping import MaskSettings, discrepancy_map
from LesionAILib.synthesis.masking import random_training_mask
from LesionAILib.synthesis.network import InpaintingConfig, InpaintingNet
from LesionAILib.synthesis.normalisation import NormalTissueStatistics
from LesionAILib.synthesis.volumes import SynthesisVolume
from LesionAILib.training.checkpoints import load_checkpoint, read_checkpoint_document, save_checkpoint

LESION_MARGIN_VOXELS = (1, 3, 3)  # Z, Y, X: partial volume around a lesion is not normal tissue either
CHECKPOINT = "synthesis-checkpoint.safetensors"


@dataclass(frozen=True)
class SynthesisTraining(DictSerialisable):
    """The training recipe. Hidden shapes are drawn per axis between ``smallest_mask`` and ``largest_mask`` voxels."""

    steps: int = 300
    batch: int = 4
    learning_rate: float = 2e-3
    seed: int = 0
    checkpoint_every: int = 50
    smallest_mask: tuple[int, ...] = (2, 6, 6)
    largest_mask: tuple[int, ...] = (5, 16, 16)
    centre_jitter_voxels: tuple[int, ...] = (2, 8, 8)


def lesion_free(volume: SynthesisVolume) -> np.ndarray:
    """[Z, Y, X] bool: acquired voxels away from every labelled lesion (all acquired voxels without labels)."""
    if volume.lesions is None or not volume.lesions.any():
        return volume.acquired.copy()
    structure = np.ones([2 * m + 1 for m in LESION_MARGIN_VOXELS], bool)
    return volume.acquired & ~ndimage.binary_dilation(volume.lesions > 0, structure)


def _crop_starts(volume: SynthesisVolume, context: Sequence[int], rng: np.random.Generator, jitter: Sequence[int]):
    voxels = np.argwhere(volume.region) if volume.region.any() else np.argwhere(volume.acquired)
    centre = voxels[rng.integers(len(voxels))] + [int(rng.integers(-j, j + 1)) for j in jitter]
    shape = volume.image.shape[1:]
    return [int(np.clip(c - n // 2, 0, s - n)) for c, n, s in zip(centre, context, shape, strict=True)]


def training_batch(
    volumes: Sequence[SynthesisVolume],
    normal: Sequence[np.ndarray],
    recipe: SynthesisTraining,
    context: Sequence[int],
    step: int,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(images [B, C, *context], hidden [B, 1, *context], loss weight [B, 1, *context]) for ``step``."""
    rng = np.random.default_rng([recipe.seed, step])
    images, hidden, weight = [], [], []
    for _ in range(recipe.batch):
        index = int(rng.integers(len(volumes)))
        volume = volumes[index]
        start = _crop_starts(volume, context, rng, recipe.centre_jitter_voxels)
        window = tuple(slice(s, s + n) for s, n in zip(start, context, strict=True))
        crop, usable = volume.image[(slice(None), *window)], normal[index][window]
        if rng.random() < 0.5:  # left-right mirror: the X axis of the T2 frame
            crop, usable = crop[..., ::-1], usable[..., ::-1]
        mask = random_training_mask(context, rng, recipe.smallest_mask, recipe.largest_mask)
        images.append(np.ascontiguousarray(crop))
        hidden.append(mask)
        weight.append(mask & usable)
    as_tensor = lambda arrays: torch.from_numpy(np.stack(arrays)[:, None].astype(np.float32))  # noqa: E731
    return torch.from_numpy(np.stack(images)), as_tensor(hidden), as_tensor(weight)


def masked_l1(synthesised: torch.Tensor, real: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    """Mean |synthesised − real| over the weighted voxels (all channels); 0 when no voxel counts."""
    total = (weight.sum() * real.shape[1]).clamp_min(1.0)
    return ((synthesised - real).abs() * weight).sum() / total


def _digest(
    architecture: InpaintingConfig, recipe: SynthesisTraining, masks: MaskSettings, cases: Sequence[str]
) -> str:
    text = json.dumps([architecture.to_dict(), recipe.to_dict(), masks.to_dict(), list(cases)], sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def train_inpainting(
    volumes: Sequence[SynthesisVolume],
    architecture: InpaintingConfig,
    recipe: SynthesisTraining,
    masks: MaskSettings,
    run_dir: str | Path | None = None,
    case_ids: Sequence[str] = (),
    progress: Callable[[int, int, float], None] | None = None,
    device: str | torch.device = "cpu",
) -> tuple[InpaintingNet, list[dict]]:
    """Train the network (see module docstring); returns it (eval mode) and the loss history.

    With ``run_dir`` a checkpoint is written every ``recipe.checkpoint_every`` steps and a run of the
    same settings and cases resumes from it. ``progress(step, steps, loss)`` is called after each
    checkpoint interval (it may raise to cancel; the last checkpoint stays).
    """
    if not volumes:
        raise ConfigError("no training volumes: give at least one case")
    torch.manual_seed(recipe.seed)
    device = torch.device(device)
    net = InpaintingNet(architecture).to(device)
    optimizer = torch.optim.AdamW(net.parameters(), lr=recipe.learning_rate, weight_decay=1e-4)
    normal = [lesion_free(v) for v in volumes]
    digest = _digest(architecture, recipe, masks, case_ids)
    path = Path(run_dir) / CHECKPOINT if run_dir else None
    step, history = 0, []
    if path is not None and path.exists() and read_checkpoint_document(path).get("config") == digest:
        document, optimizer_state = load_checkpoint(path, net)
        optimizer.load_state_dict(optimizer_state)
        step, history = int(document["step"]), list(document["history"])
    schedule = lambda s: 0.5 * (1 + np.cos(np.pi * s / max(recipe.steps, 1)))  # noqa: E731  cosine decay
    net.train()
    running = []
    while step < recipe.steps:
        for group in optimizer.param_groups:
            group["lr"] = recipe.learning_rate * schedule(step)
        images, hidden, weight = (t.to(device) for t in training_batch(volumes, normal, recipe, masks.context, step))
        loss = masked_l1(net(images, hidden), images, weight)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        running.append(float(loss.detach()))
        step += 1
        if step % recipe.checkpoint_every == 0 or step == recipe.steps:
            history.append({"step": step, "loss": round(float(np.mean(running)), 5)})
            running = []
            if path is not None:
                save_checkpoint(path, net, optimizer, {"step": step, "config": digest, "history": history})
            if progress:
                progress(step, recipe.steps, history[-1]["loss"])
    return net.cpu().eval(), history


def calibrate(
    net: InpaintingNet, volumes: Sequence[SynthesisVolume], masks: MaskSettings, device: str | torch.device = "cpu"
) -> NormalTissueStatistics:
    """Normal-tissue statistics from the lesion-free region voxels of ``volumes`` (not used for training)."""
    samples = []
    for volume in volumes:
        discrepancy = discrepancy_map(net, volume.image, volume.region, volume.grid.spacing, masks, device)
        normal = volume.region & lesion_free(volume) & (discrepancy.coverage > 0)
        samples.append(discrepancy.discrepancy[:, normal])
    return NormalTissueStatistics.fit(volumes[0].roles, np.concatenate(samples, 1))


def calibration_split(count: int, fraction: float = 0.2) -> tuple[list[int], list[int]]:
    """(training, calibration) indices: the last ``fraction`` of ``count`` cases (at least one) calibrate.

    A single case both trains and calibrates (the statistics are then optimistic; the record says so).
    """
    if count < 2:
        return list(range(count)), list(range(count))
    held = max(1, int(round(count * fraction)))
    return list(range(count - held)), list(range(count - held, count))

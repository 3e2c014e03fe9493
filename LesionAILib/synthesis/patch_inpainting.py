"""The 2D variant on ProstateX finding patches: learn the tissue around findings, synthesise the centre from the ring.

Inputs are the dataset's ADC and high-b patches (32 × 32 pixels at 2 mm: 64 mm of context,
histogram-equalised to [0, 1]; :mod:`LesionAILib.prostatex.patches`); the finding lies at pixel
:data:`~LesionAILib.prostatex.patches.NEAREST_VOXEL_AT`.

* **Training** (training folds only): each step hides one random box (:data:`TRAINING_BOX_RANGE`
  pixels a side) per patch and minimises the L1 error over hidden pixels that lie inside the
  volume and **outside the central disk** of :data:`EXCLUDED_RADIUS_MM` (12 mm across) around the
  finding, so the network learns the tissue around findings, never the findings themselves.
* **Scoring**: the centre box (:data:`CENTRE_BOX` pixels, 16 mm) is hidden and synthesised from the
  ring; per sequence the discrepancy is |mean(real − synthesised)| over the central disk.
* **Normalisation**: the same discrepancy for boxes hidden at random positions away from the
  centre of the training patches (tissue around findings) gives the median/MAD of
  :class:`~LesionAILib.synthesis.normalisation.NormalTissueStatistics`; the score is the mean robust z.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch

from LesionAILib.dataclass_dicts import DictSerialisable
from LesionAILib.prostatex.patches import NEAREST_VOXEL_AT, PATCH_SIZE
from LesionAILib.synthesis.network import InpaintingConfig, InpaintingNet
from LesionAILib.synthesis.normalisation import NormalTissueStatistics, combine
from LesionAILib.synthesis.training import masked_l1

PATCH_ROLES = ("adc", "hbv")
PIXEL_MM = 2.0
EXCLUDED_RADIUS_MM = 6.0
CENTRE_BOX = 8
TRAINING_BOX_RANGE = (6, 10)


@dataclass(frozen=True)
class PatchTraining(DictSerialisable):
    """Recipe of the 2D inpainting network."""

    steps: int = 800
    batch: int = 32
    learning_rate: float = 2e-3
    width: int = 16
    seed: int = 0
    normal_samples_per_patch: int = 4


def disk(centre: tuple[float, float], radius_px: float, size: int = PATCH_SIZE) -> np.ndarray:
    """[size, size] bool disk of ``radius_px`` pixels around (row, column) ``centre``."""
    rows, columns = np.mgrid[:size, :size]
    return (rows - centre[0]) ** 2 + (columns - centre[1]) ** 2 <= radius_px**2


def box_at(centre: tuple[int, int], side: int, size: int = PATCH_SIZE) -> np.ndarray:
    """[size, size] bool square of ``side`` pixels whose centre is ``centre`` (row, column), clipped to the patch."""
    mask = np.zeros((size, size), bool)
    low = [c - side // 2 for c in centre]
    mask[max(low[0], 0) : low[0] + side, max(low[1], 0) : low[1] + side] = True
    return mask


CENTRE_DISK = disk(NEAREST_VOXEL_AT, EXCLUDED_RADIUS_MM / PIXEL_MM)
CENTRE_HIDDEN = box_at(NEAREST_VOXEL_AT, CENTRE_BOX)


def _batch(images: np.ndarray, recipe: PatchTraining, step: int):
    rng = np.random.default_rng([recipe.seed, step])
    index = rng.integers(0, len(images), recipe.batch)
    crops = images[index].copy()
    flips = rng.random((recipe.batch, 2)) < 0.5
    hidden = np.zeros((recipe.batch, PATCH_SIZE, PATCH_SIZE), bool)
    usable = np.zeros_like(hidden)
    for row in range(recipe.batch):
        side = int(rng.integers(TRAINING_BOX_RANGE[0], TRAINING_BOX_RANGE[1] + 1))
        centre = tuple(int(v) for v in rng.integers(side // 2, PATCH_SIZE - side // 2, 2))
        hidden[row] = box_at(centre, side)
        allowed = ~CENTRE_DISK & (crops[row] > 0).all(0)  # 0 = outside the volume
        if flips[row, 0]:  # mirror the image and the exclusion together
            crops[row], allowed = crops[row][..., ::-1], allowed[..., ::-1]
        if flips[row, 1]:
            crops[row], allowed = crops[row][..., ::-1, :], allowed[::-1]
        usable[row] = hidden[row] & allowed
    tensor = lambda a: torch.from_numpy(np.ascontiguousarray(a)[:, None].astype(np.float32))  # noqa: E731
    return torch.from_numpy(np.ascontiguousarray(crops)), tensor(hidden), tensor(usable)


def train_patch_inpainting(
    images: np.ndarray, recipe: PatchTraining, progress: Callable[[int, int, float], None] | None = None
) -> InpaintingNet:
    """Train on ``images`` [N, 2, 32, 32] float32 (ADC, high-b); see module docstring."""
    torch.manual_seed(recipe.seed)
    net = InpaintingNet(InpaintingConfig(dimensions=2, channels=images.shape[1], width=recipe.width, levels=3))
    optimizer = torch.optim.AdamW(net.parameters(), lr=recipe.learning_rate, weight_decay=1e-4)
    net.train()
    for step in range(recipe.steps):
        for group in optimizer.param_groups:
            group["lr"] = recipe.learning_rate * 0.5 * (1 + np.cos(np.pi * step / recipe.steps))
        crops, hidden, usable = _batch(images, recipe, step)
        loss = masked_l1(net(crops, hidden), crops, usable)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        if progress and (step + 1) % 100 == 0:
            progress(step + 1, recipe.steps, float(loss.detach()))
    return net.eval()


@torch.no_grad()
def signed_discrepancy(net: InpaintingNet, images: np.ndarray, hidden: np.ndarray, scored: np.ndarray) -> np.ndarray:
    """[N, C] mean(real − synthesised) over ``scored`` pixels, with ``hidden`` [N, 32, 32] synthesised."""
    crops = torch.from_numpy(np.ascontiguousarray(images, np.float32))
    mask = torch.from_numpy(hidden[:, None].astype(np.float32))
    difference = (crops - net(crops, mask)).numpy()
    weight = scored[:, None].astype(np.float64)
    return (difference * weight).sum((2, 3)) / np.maximum(weight.sum((2, 3)), 1.0)


def centre_discrepancy(net: InpaintingNet, images: np.ndarray) -> np.ndarray:
    """[N, C] signed discrepancy at the finding: centre box hidden, central disk scored."""
    count = len(images)
    return signed_discrepancy(
        net, images, np.repeat(CENTRE_HIDDEN[None], count, 0), np.repeat(CENTRE_DISK[None], count, 0)
    )


def normal_tissue_statistics(net: InpaintingNet, images: np.ndarray, recipe: PatchTraining) -> NormalTissueStatistics:
    """Median/MAD of |discrepancy| for boxes hidden away from the finding (their centre ≥ 12 mm from it)."""
    rng = np.random.default_rng([recipe.seed, 99])
    hidden, scored, rows = [], [], []
    for index in range(len(images)):
        for _ in range(recipe.normal_samples_per_patch):
            while True:
                centre = tuple(int(v) for v in rng.integers(CENTRE_BOX // 2, PATCH_SIZE - CENTRE_BOX // 2, 2))
                if (
                    np.hypot(centre[0] - NEAREST_VOXEL_AT[0], centre[1] - NEAREST_VOXEL_AT[1])
                    >= 2 * EXCLUDED_RADIUS_MM / PIXEL_MM
                ):
                    break
            hidden.append(box_at(centre, CENTRE_BOX))
            scored.append(disk(centre, EXCLUDED_RADIUS_MM / PIXEL_MM))
            rows.append(index)
    differences = signed_discrepancy(net, images[rows], np.stack(hidden), np.stack(scored))
    return NormalTissueStatistics.fit(PATCH_ROLES[: images.shape[1]], np.abs(differences).T)


def abnormality_scores(
    net: InpaintingNet, statistics: NormalTissueStatistics, images: np.ndarray
) -> dict[str, np.ndarray]:
    """Per finding: ``"abnormality"`` (mean robust z of |discrepancy|), ``"signed"`` (ADC below and high-b above
    the synthesis count as suspicious: mean of signed z, ADC negated), and the raw ``"discrepancy"`` [N, C]."""
    signed = centre_discrepancy(net, images)
    zscores = statistics.zscores(np.abs(signed).T)
    spread = np.maximum(1.4826 * np.asarray(statistics.mad), 1e-6)[:, None]
    direction = np.array([-1.0 if role == "adc" else 1.0 for role in statistics.roles])[:, None]
    return {
        "abnormality": combine(zscores),
        "signed": (direction * signed.T / spread).mean(0),
        "discrepancy": signed,
    }

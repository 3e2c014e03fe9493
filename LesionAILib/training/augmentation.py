"""Training augmentation on tensors, so it runs on the GPU when there is one.

One call augments a batch ([N, C, Z, Y, X] images plus their maps) with, per sample:

* a left-right flip (prostate anatomy is close to left-right symmetric; no antero-posterior flip),
* a small in-plane rotation and isotropic in-plane scaling (one ``affine_grid`` resampling),
* per-sequence misregistration: the diffusion channels (ADC, high-b — one acquisition) shift
  together by up to ``misregistration_mm`` against T2, as EPI distortion does,
* intensity jitter: per channel a random gain and offset (z-scored channels) or a gain only
  (the ADC keeps its physical zero; vendors' ADCs differ by a few per cent),
* optionally, first, a simulated acquisition by another protocol (``acquisition``, off by default:
  resolution, slice thickness, coil bias, b-value, ADC calibration, noise, misregistration through
  the slices and tilt; :mod:`LesionAILib.training.acquisition_augmentation`).

Parameters are drawn per sample from ``numpy.random.default_rng([seed, epoch, sample])``, so
a sample is augmented identically wherever it is processed (one process or several DDP ranks).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import torch
import torch.nn.functional as F

from LesionAILib.dataclass_dicts import DictSerialisable
from LesionAILib.training.acquisition_augmentation import AcquisitionAugmentConfig, simulate_acquisition


@dataclass(frozen=True)
class AugmentConfig(DictSerialisable):
    """Augmentation strengths; ``enabled=False`` turns everything off, ``acquisition`` is off unless enabled."""

    enabled: bool = True
    flip_probability: float = 0.5
    rotation_degrees: float = 10.0
    scale_range: float = 0.1
    misregistration_mm: float = 2.0
    gain_range: float = 0.1
    offset_range: float = 0.1
    adc_gain_range: float = 0.05
    noise_std: float = 0.03
    acquisition: AcquisitionAugmentConfig = field(default_factory=AcquisitionAugmentConfig)


def _sample_parameters(config: AugmentConfig, rng: np.random.Generator, channels: int) -> dict:
    return {
        "flip": bool(rng.random() < config.flip_probability),
        "angle": math.radians(rng.uniform(-config.rotation_degrees, config.rotation_degrees)),
        "scale": float(1.0 + rng.uniform(-config.scale_range, config.scale_range)),
        "shift_mm": rng.uniform(-config.misregistration_mm, config.misregistration_mm, 2),
        "gain": 1.0 + rng.uniform(-config.gain_range, config.gain_range, channels),
        "offset": rng.uniform(-config.offset_range, config.offset_range, channels),
        "adc_gain": 1.0 + rng.uniform(-config.adc_gain_range, config.adc_gain_range),
        "noise_seed": int(rng.integers(0, 2**31 - 1)),
    }


def _theta(angle: float, scale: float, flip: bool, shift_xy: Sequence[float] = (0.0, 0.0)) -> np.ndarray:
    """3×4 affine in grid_sample's normalised (x, y, z) coordinates: in-plane rotation/scale/flip/shift."""
    cos, sin = math.cos(angle) / scale, math.sin(angle) / scale
    theta = np.array([[cos, -sin, 0.0, shift_xy[0]], [sin, cos, 0.0, shift_xy[1]], [0.0, 0.0, 1.0, 0.0]])
    if flip:
        theta[:, 0] *= -1.0
    return theta


def augment_batch(
    images: torch.Tensor,
    maps: torch.Tensor,
    masks: torch.Tensor,
    roles: Sequence[str],
    spacing: Sequence[float],
    config: AugmentConfig,
    seeds: Sequence[Sequence[int]],
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Augment a batch.

    Args:
        images: [N, C, Z, Y, X] float32 (channels in ``roles`` order).
        maps: [N, M, Z, Y, X] float32 maps resampled like the T2 (linear), e.g. the heatmap target.
        masks: [N, K, Z, Y, X] label maps resampled like the T2 (nearest).
        roles: channel roles; ``adc`` and ``hbv`` move together against ``t2w``.
        spacing: (Z, Y, X) mm of the grid, to turn ``misregistration_mm`` into voxels.
        config: strengths.
        seeds: per sample, the integers seeding its parameters (e.g. ``(seed, epoch, index)``).

    Returns the augmented (images, maps, masks), same shapes, devices and dtypes.
    """
    if not config.enabled:
        return images, maps, masks
    images = simulate_acquisition(images, roles, spacing, config.acquisition, seeds)
    n, c = images.shape[:2]
    device = images.device
    parameters = [_sample_parameters(config, np.random.default_rng(list(s)), c) for s in seeds]
    shape = list(images.shape[2:])
    extent_xy = (shape[2] * spacing[2], shape[1] * spacing[1])
    anatomy = torch.tensor(
        np.stack([_theta(p["angle"], p["scale"], p["flip"]) for p in parameters]), dtype=torch.float32, device=device
    )
    grid = F.affine_grid(anatomy, [n, 1, *shape], align_corners=False)
    out_images = F.grid_sample(images, grid, mode="bilinear", padding_mode="zeros", align_corners=False)
    out_maps = F.grid_sample(maps, grid, mode="bilinear", padding_mode="zeros", align_corners=False)
    out_masks = F.grid_sample(masks.float(), grid, mode="nearest", padding_mode="zeros", align_corners=False)
    diffusion = [i for i, role in enumerate(roles) if role in ("adc", "hbv")]
    if diffusion and config.misregistration_mm > 0:
        shifted = np.stack(
            [
                _theta(p["angle"], p["scale"], p["flip"], 2.0 * np.asarray(p["shift_mm"]) / np.asarray(extent_xy))
                for p in parameters
            ]
        )
        moved = F.affine_grid(
            torch.tensor(shifted, dtype=torch.float32, device=device), [n, 1, *shape], align_corners=False
        )
        out_images[:, diffusion] = F.grid_sample(
            images[:, diffusion], moved, mode="bilinear", padding_mode="zeros", align_corners=False
        )
    gains = torch.tensor(np.stack([p["gain"] for p in parameters]), dtype=torch.float32, device=device)
    offsets = torch.tensor(np.stack([p["offset"] for p in parameters]), dtype=torch.float32, device=device)
    if "adc" in roles:
        index = list(roles).index("adc")
        gains[:, index] = torch.tensor([p["adc_gain"] for p in parameters], dtype=torch.float32, device=device)
        offsets[:, index] = 0.0
    inside = out_images != 0
    out_images = (out_images * gains[:, :, None, None, None] + offsets[:, :, None, None, None]) * inside
    if config.noise_std > 0:
        noise = torch.stack(
            [
                torch.randn(out_images.shape[1:], generator=torch.Generator().manual_seed(p["noise_seed"]))
                for p in parameters
            ]
        ).to(device)
        out_images = out_images + config.noise_std * noise * inside
    return out_images, out_maps, out_masks.to(masks.dtype)

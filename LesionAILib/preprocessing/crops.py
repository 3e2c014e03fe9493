"""Fixed-size windows around a point of a volume, zero-padded where they leave it (numpy and torch)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
import torch.nn.functional as F


def crop_slices(
    center: Sequence[float], crop: Sequence[int], shape: Sequence[int]
) -> tuple[tuple[slice, ...], tuple[tuple[int, int], ...]]:
    """Slices of a ``crop``-sized window centred on ``center`` (voxel index per axis) and the
    (before, after) zero padding per axis where it leaves a volume of ``shape``."""
    slices, padding = [], []
    for c, size, n in zip(center, crop, shape, strict=True):
        start = int(round(c - size / 2.0))
        stop = start + size
        slices.append(slice(max(start, 0), min(stop, n)))
        padding.append((max(0, -start), max(0, stop - n)))
    return tuple(slices), tuple(padding)


def extract_crop(array: np.ndarray, center: Sequence[float], crop: Sequence[int]) -> np.ndarray:
    """A ``crop`` window of the last three axes of ``array`` (any leading axes), zero-padded outside."""
    slices, padding = crop_slices(center, crop, array.shape[-3:])
    window = np.asarray(array[(Ellipsis, *slices)])
    lead = [(0, 0)] * (array.ndim - 3)
    return np.pad(window, [*lead, *padding]) if any(p != (0, 0) for p in padding) else np.array(window)


def crop_tensor(volume: torch.Tensor, center: Sequence[float], crop: Sequence[int]) -> torch.Tensor:
    """Torch version of :func:`extract_crop` for [..., Z, Y, X] tensors on any device."""
    slices, padding = crop_slices(center, crop, volume.shape[-3:])
    window = volume[(Ellipsis, *slices)]
    if any(p != (0, 0) for p in padding):
        flat = [v for pair in reversed(padding) for v in pair]  # F.pad wants the last axis first
        window = F.pad(window, flat)
    return window

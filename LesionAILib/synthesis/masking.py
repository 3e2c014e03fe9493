"""Where the image is hidden: sliding boxes that cover a region at analysis time, random masks for training.

A mask box is ``(start, size)`` in voxels of a [Z, Y, X] volume (or [Y, X] for the 2D variant).
:func:`sliding_boxes` places boxes of one size with a fixed stride over a region's bounding box so
that **every region voxel lies in at least one box** (the last box along each axis is moved back
to end on the bounding box's last voxel); boxes that miss the region are dropped.
:func:`aggregate_boxes` averages per-box values (e.g. real − synthesised) over every box covering a
voxel. :func:`random_training_mask` draws the varied boxes and ellipsoids a network learns to fill.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from LesionAILib.errors import ConfigError


@dataclass(frozen=True)
class MaskBox:
    """A hidden box: voxel ``start`` and ``size`` per axis (array order, e.g. Z, Y, X)."""

    start: tuple[int, ...]
    size: tuple[int, ...]

    @property
    def slices(self) -> tuple[slice, ...]:
        return tuple(slice(s, s + n) for s, n in zip(self.start, self.size, strict=True))

    @property
    def centre(self) -> tuple[float, ...]:
        """Centre in voxel coordinates (the middle of the box's voxel centres)."""
        return tuple(s + (n - 1) / 2.0 for s, n in zip(self.start, self.size, strict=True))


def _axis_starts(low: int, high: int, size: int, stride: int, length: int) -> list[int]:
    """Starts along one axis so that boxes of ``size`` every ``stride`` cover voxels ``low..high`` (inclusive)."""
    last = min(max(high - size + 1, 0), length - size)
    first = min(max(low, 0), last)
    starts = list(range(first, last + 1, stride))
    if starts[-1] != last:
        starts.append(last)
    return starts


def sliding_boxes(region: np.ndarray, size: Sequence[int], stride: Sequence[int]) -> list[MaskBox]:
    """Boxes of ``size`` every ``stride`` voxels covering every ``True`` voxel of ``region``.

    Args:
        region: bool array ([Z, Y, X] or [Y, X]); the voxels that must be covered.
        size, stride: per axis, voxels; ``stride`` ≤ ``size`` (else voxels between boxes are missed).

    Returns:
        the boxes (row-major order) that contain at least one region voxel; empty for an empty region.

    Raises:
        ConfigError: a stride larger than the box, or a box larger than the volume.
    """
    region = np.asarray(region, bool)
    size, stride = tuple(int(v) for v in size), tuple(int(v) for v in stride)
    if len(size) != region.ndim or len(stride) != region.ndim:
        raise ConfigError(f"mask size {size} and stride {stride} need {region.ndim} values (the volume's axes)")
    if any(s < 1 or t < 1 or t > s for s, t in zip(size, stride, strict=True)):
        raise ConfigError(f"mask stride {stride} must be between 1 and the mask size {size} on every axis")
    if any(s > n for s, n in zip(size, region.shape, strict=True)):
        raise ConfigError(f"mask size {size} is larger than the volume {region.shape}")
    if not region.any():
        return []
    voxels = np.argwhere(region)
    low, high = voxels.min(0), voxels.max(0)
    axes = [
        _axis_starts(int(lo), int(hi), s, t, n)
        for lo, hi, s, t, n in zip(low, high, size, stride, region.shape, strict=True)
    ]
    boxes = []
    for start in np.stack(np.meshgrid(*axes, indexing="ij"), -1).reshape(-1, region.ndim):
        box = MaskBox(tuple(int(v) for v in start), size)
        if region[box.slices].any():
            boxes.append(box)
    return boxes


def aggregate_boxes(
    values: Sequence[np.ndarray], boxes: Sequence[MaskBox], shape: Sequence[int]
) -> tuple[np.ndarray, np.ndarray]:
    """Mean of per-box arrays over every box covering a voxel.

    Args:
        values: per box an array ``[..., *box.size]`` (leading axes, e.g. channels, shared by all boxes).
        boxes: where each lies; shape: the volume's spatial shape.

    Returns:
        (mean ``[..., *shape]`` float64, 0 where no box covers; coverage count ``[*shape]`` int32).
    """
    shape = tuple(int(v) for v in shape)
    if not boxes:
        return np.zeros(shape), np.zeros(shape, np.int32)
    leading = np.asarray(values[0]).shape[: -len(shape)]
    total = np.zeros((*leading, *shape))
    count = np.zeros(shape, np.int32)
    for value, box in zip(values, boxes, strict=True):
        total[(..., *box.slices)] += value
        count[box.slices] += 1
    return total / np.maximum(count, 1), count


def random_training_mask(
    shape: Sequence[int], rng: np.random.Generator, smallest: Sequence[int], largest: Sequence[int]
) -> np.ndarray:
    """A bool mask of ``shape`` hiding one box or ellipsoid of random size (per axis ``smallest..largest`` voxels).

    Half the draws are boxes, half ellipsoids inscribed in the drawn box; the hidden part lies wholly
    inside the array so the network always sees context around it.
    """
    shape = tuple(int(v) for v in shape)
    size = [int(rng.integers(lo, hi + 1)) for lo, hi in zip(smallest, largest, strict=True)]
    size = [min(s, n) for s, n in zip(size, shape, strict=True)]
    start = [int(rng.integers(0, n - s + 1)) for s, n in zip(size, shape, strict=True)]
    box = MaskBox(tuple(start), tuple(size))
    mask = np.zeros(shape, bool)
    if rng.random() < 0.5:
        mask[box.slices] = True
        return mask
    axes = np.meshgrid(*[np.arange(s) for s in size], indexing="ij")
    radius = sum(((a - (s - 1) / 2.0) / max(s / 2.0, 0.5)) ** 2 for a, s in zip(axes, size, strict=True))
    mask[box.slices] = radius <= 1.0
    return mask

"""Test-time augmentation: mirrors and shifts of the input volume, undone on the network's output maps.

Every augmentation is exact and invertible on the model grid (a left-right flip, a circular shift
by whole voxels), so the maps of all augmentations line up voxel by voxel after :meth:`undo`. The
Analyzer averages :data:`MIRROR_TTA` (``tta=True``); uncertainty ordering takes the spread over
:data:`UNCERTAINTY_TTA` (:mod:`LesionAILib.adaptation.ordering`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class Augmentation:
    """A left-right ``mirror`` (the X axis) and/or a circular shift by ``shift_yx`` voxels (Y, X)."""

    name: str
    mirror: bool = False
    shift_yx: tuple[int, int] = (0, 0)

    def apply(self, volume: torch.Tensor) -> torch.Tensor:
        """The augmented [..., Z, Y, X] ``volume``."""
        if self.mirror:
            volume = torch.flip(volume, dims=[-1])
        if any(self.shift_yx):
            volume = torch.roll(volume, self.shift_yx, dims=(-2, -1))
        return volume

    def undo(self, volume: torch.Tensor) -> torch.Tensor:
        """[..., Z, Y, X] ``volume`` computed on the augmented input, back in the input's frame."""
        if any(self.shift_yx):
            volume = torch.roll(volume, tuple(-s for s in self.shift_yx), dims=(-2, -1))
        if self.mirror:
            volume = torch.flip(volume, dims=[-1])
        return volume


IDENTITY = Augmentation("identity")
MIRROR = Augmentation("mirror", mirror=True)
SHIFT_X = Augmentation("shift_x", shift_yx=(0, 1))
SHIFT_Y = Augmentation("shift_y", shift_yx=(1, 0))

NO_TTA = (IDENTITY,)
MIRROR_TTA = (IDENTITY, MIRROR)
UNCERTAINTY_TTA = (IDENTITY, MIRROR, SHIFT_X, SHIFT_Y)


def augmented_batch(images: torch.Tensor, augmentations: Sequence[Augmentation]) -> torch.Tensor:
    """[C, Z, Y, X] images → the [T, C, Z, Y, X] batch of their ``T`` augmentations."""
    return torch.stack([augmentation.apply(images) for augmentation in augmentations])


def undo_augmentations(maps: torch.Tensor, augmentations: Sequence[Augmentation]) -> torch.Tensor:
    """[T, ..., Z, Y, X] maps of an :func:`augmented_batch` → each back in the input's frame (same shape)."""
    return torch.stack([augmentation.undo(item) for augmentation, item in zip(augmentations, maps, strict=True)])

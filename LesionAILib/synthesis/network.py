"""The inpainting network: a small U-Net (2D or 3D) that takes the incomplete image plus the mask as a channel.

Input ``[N, C + 1, *spatial]``: the C sequences with the hidden voxels set to 0, then the mask
(1 = hidden). Output ``[N, C, *spatial]``: the synthesised sequences; :meth:`InpaintingNet.complete`
keeps the visible voxels and takes the synthesised ones where hidden (the image a reader is shown
as "synthesised"). All C sequences are synthesised jointly from the context of all of them.

Why a U-Net with a mask channel and not partial or gated convolutions: with one hidden box per
crop and the mask given explicitly, the plain U-Net learns the same hole-aware filling (Liu et
al.'s partial convolutions matter most for many irregular holes), it is a few lines of standard
layers, and it runs as fast as any U-Net on a CPU. The output is a correction added to the mean of
the crop's visible voxels per channel, so an untrained network already fills a hole with the
surrounding mean, and training (minutes on a CPU) only has to learn the structure. Pooling is
in-plane only at the first level
when ``anisotropic`` (3 mm slices against 1 mm pixels).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from LesionAILib.dataclass_dicts import DictSerialisable
from LesionAILib.errors import ConfigError


@dataclass(frozen=True)
class InpaintingConfig(DictSerialisable):
    """Architecture of :class:`InpaintingNet` (stored in the model file, so the file rebuilds itself).

    Attributes:
        dimensions: 2 (slices: [Y, X]) or 3 ([Z, Y, X]).
        channels: sequences synthesised (and seen), e.g. 3 for T2, ADC, high-b.
        width: feature channels at full resolution (doubled per level).
        levels: resolution levels (2 poolings for 3).
        anisotropic: 3D only: pool (1, 2, 2) at the first level, (2, 2, 2) below.
    """

    dimensions: int = 3
    channels: int = 3
    width: int = 8
    levels: int = 3
    anisotropic: bool = True

    def __post_init__(self):
        if self.dimensions not in (2, 3):
            raise ConfigError(f"inpainting dimensions must be 2 or 3, got {self.dimensions}")
        if self.channels < 1 or self.width < 1 or self.levels < 1:
            raise ConfigError("inpainting channels, width and levels must be positive")

    def pool(self, level: int) -> tuple[int, ...]:
        """Pooling factors below ``level`` (0-based)."""
        if self.dimensions == 2:
            return (2, 2)
        return (1, 2, 2) if self.anisotropic and level == 0 else (2, 2, 2)

    @property
    def multiple(self) -> tuple[int, ...]:
        """Input sizes must be multiples of these (per spatial axis)."""
        factors = [1] * self.dimensions
        for level in range(self.levels - 1):
            factors = [f * p for f, p in zip(factors, self.pool(level), strict=True)]
        return tuple(factors)


def visible_mean(images: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """[N, C, 1, …] mean of each crop's visible voxels per channel: the baseline the network corrects."""
    axes = tuple(range(2, images.ndim))
    visible = 1.0 - mask
    return (images * visible).sum(axes, keepdim=True) / visible.sum(axes, keepdim=True).clamp_min(1.0)


class _Block(nn.Module):
    def __init__(self, dimensions: int, inputs: int, outputs: int):
        super().__init__()
        convolution = nn.Conv3d if dimensions == 3 else nn.Conv2d
        norm = nn.InstanceNorm3d if dimensions == 3 else nn.InstanceNorm2d
        self.layers = nn.Sequential(
            convolution(inputs, outputs, 3, padding=1),
            norm(outputs, affine=True),
            nn.LeakyReLU(0.1),
            convolution(outputs, outputs, 3, padding=1),
            norm(outputs, affine=True),
            nn.LeakyReLU(0.1),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.layers(x)


class InpaintingNet(nn.Module):
    """Mask-channel U-Net (see module docstring)."""

    def __init__(self, config: InpaintingConfig):
        super().__init__()
        self.config = config
        d, w = config.dimensions, config.width
        widths = [w * 2**level for level in range(config.levels)]
        self.down = nn.ModuleList(
            _Block(d, config.channels + 1 if level == 0 else widths[level - 1], widths[level])
            for level in range(config.levels)
        )
        self.pools = nn.ModuleList(
            (nn.MaxPool3d if d == 3 else nn.MaxPool2d)(config.pool(level)) for level in range(config.levels - 1)
        )
        transpose = nn.ConvTranspose3d if d == 3 else nn.ConvTranspose2d
        self.ups = nn.ModuleList(
            transpose(widths[level + 1], widths[level], config.pool(level), stride=config.pool(level))
            for level in range(config.levels - 1)
        )
        self.up_blocks = nn.ModuleList(
            _Block(d, 2 * widths[level], widths[level]) for level in range(config.levels - 1)
        )
        self.head = (nn.Conv3d if d == 3 else nn.Conv2d)(w, config.channels, 1)

    def forward(self, images: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """images ``[N, C, *S]`` (hidden part ignored), mask ``[N, 1, *S]`` (1 = hidden) → ``[N, C, *S]``."""
        x = torch.cat([images * (1.0 - mask), mask], 1)
        skips = []
        for level, block in enumerate(self.down):
            x = block(x)
            if level < len(self.pools):
                skips.append(x)
                x = self.pools[level](x)
        for level in reversed(range(len(self.ups))):
            x = self.up_blocks[level](torch.cat([self.ups[level](x), skips[level]], 1))
        return self.head(x) + visible_mean(images, mask)

    def complete(self, images: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """The completed image: visible voxels as given, hidden ones synthesised."""
        return torch.where(mask > 0.5, self(images, mask), images)

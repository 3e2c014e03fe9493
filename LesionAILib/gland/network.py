"""The TAPS network as a torch module: a residual encoder-decoder (MONAI SegResNetDS layout) for one T2 channel.

The released TAPS model is a MONAI ``SegResNetDS(spatial_dims=3, init_filters=32, in_channels=1,
out_channels=1, norm=GroupNorm(8), act=Mish, blocks_down=(1, 2, 2, 4), upsample="deconv")``
exported to ONNX. This module rebuilds that architecture from its facts (so torch runs it on the CPU
and on CUDA alike) and its parameter names are the ONNX file's initializer names, which is how
:mod:`LesionAILib.gland.model_file` fills it.

Input ``[N, 1, R, A, S]`` float32 (the model's RAS-ordered axes, see
:mod:`LesionAILib.gland.preprocessing`), every spatial size divisible by 8; output ``[N, 1, R, A, S]``
logits of "prostate gland".
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

INIT_FILTERS = 32
ENCODER_BLOCKS = (1, 2, 2, 4)  # residual blocks per encoder level; each level halves the size and doubles the width
GROUPS = 8
EPSILON = 1e-5


class ResidualBlock(nn.Module):
    """Pre-activation residual block: ``x + conv2(mish(norm2(conv1(mish(norm1(x))))))``, 3×3×3 convolutions."""

    def __init__(self, channels: int):
        super().__init__()
        self.norm1 = nn.GroupNorm(GROUPS, channels, eps=EPSILON)
        self.conv1 = nn.Conv3d(channels, channels, 3, padding=1, bias=False)
        self.norm2 = nn.GroupNorm(GROUPS, channels, eps=EPSILON)
        self.conv2 = nn.Conv3d(channels, channels, 3, padding=1, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.conv2(F.mish(self.norm2(self.conv1(F.mish(self.norm1(x))))))


class EncoderLevel(nn.Module):
    """Residual blocks at one resolution, then (but at the deepest level) a stride-2 convolution doubling the width."""

    def __init__(self, channels: int, blocks: int, downsample: bool):
        super().__init__()
        self.blocks = nn.Sequential(*(ResidualBlock(channels) for _ in range(blocks)))
        self.downsample = nn.Conv3d(channels, 2 * channels, 3, stride=2, padding=1, bias=False) if downsample else None


class Upsample(nn.Module):
    """Stride-2 transposed convolution halving the width (output size exactly twice the input)."""

    def __init__(self, channels: int):
        super().__init__()
        self.deconv = nn.ConvTranspose3d(2 * channels, channels, 3, stride=2, padding=1, output_padding=1, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.deconv(x)


class DecoderLevel(nn.Module):
    """Upsample, add the encoder's features of that resolution, one residual block; the finest level has the head."""

    def __init__(self, channels: int, head: bool):
        super().__init__()
        self.upsample = Upsample(channels)
        self.blocks = nn.Sequential(ResidualBlock(channels))
        self.head = nn.Conv3d(channels, 1, 1, bias=True) if head else None


class GlandNetwork(nn.Module):
    """TAPS gland segmentation network: ``[N, 1, R, A, S]`` z-scored T2 → ``[N, 1, R, A, S]`` gland logits."""

    def __init__(self):
        super().__init__()
        self.encoder = nn.Module()
        self.encoder.conv_init = nn.Conv3d(1, INIT_FILTERS, 3, padding=1, bias=False)
        widths = [INIT_FILTERS * 2**level for level in range(len(ENCODER_BLOCKS))]
        self.encoder.layers = nn.ModuleList(
            EncoderLevel(width, blocks, downsample=level < len(ENCODER_BLOCKS) - 1)
            for level, (width, blocks) in enumerate(zip(widths, ENCODER_BLOCKS, strict=True))
        )
        decoder_widths = widths[-2::-1]  # 128, 64, 32
        self.up_layers = nn.ModuleList(
            DecoderLevel(width, head=index == len(decoder_widths) - 1) for index, width in enumerate(decoder_widths)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if any(size % 8 for size in x.shape[2:]):
            raise ValueError(f"gland network input sizes must be divisible by 8, got {tuple(x.shape[2:])}")
        x = self.encoder.conv_init(x)
        skips = []
        for level in self.encoder.layers:
            x = level.blocks(x)
            skips.append(x)
            if level.downsample is not None:
                x = level.downsample(x)
        for level, skip in zip(self.up_layers, reversed(skips[:-1]), strict=True):
            x = level.blocks(level.upsample(x) + skip)
        return self.up_layers[-1].head(x)

"""The networks: a localization network (per-sequence maps + a combined map) and a lesion classifier.

Shapes: inputs are [N, C, Z, Y, X] float32 with C sequences in the model's role order; maps are
in [0, 1] on the same grid. Every network is built from a config dataclass that is stored in
the model file (:mod:`LesionAILib.models.modelfile`), so a model file rebuilds itself.

**Localization network** (:class:`LocalizationNet`), three variants:

* ``per_sequence`` — one small 3D U-Net per sequence localizes the lesion in that sequence
  (its own map), and a combination head fuses the per-sequence maps and last decoder features
  into the combined map. This is the method's "localize in each image, then combine".
* ``fusion`` — multi-modality fusion: per-sequence encoders whose features are concatenated and
  fused (1×1×1 convolution) at every level, then one shared decoder makes the combined map;
  per-sequence maps come from light heads on each sequence's encoder.
* ``multitask`` — the fusion network plus a case-level classification head on the fused
  bottleneck (probability that the case has clinically significant cancer).
* ``unet`` — a plain early-fusion 3D U-Net (all sequences stacked as input channels, one map, no
  per-sequence maps): the PI-CAI U-Net-style baseline the benchmarks compare against.

The maps are a **regression** target that carries the lesion score: a smooth blob over each
lesion whose plateau value encodes its grade group (:func:`LesionAILib.training.targets.heatmap_target`).

Anisotropy: prostate slices are 3 mm, pixels ≈ 0.5–1 mm. The first levels use 1×3×3
convolutions and down-sample only in-plane; z is pooled only at the deepest level.

**Classification network** (:class:`LesionClassifier`): input = the image channels plus the
combined localization map, cropped around a candidate ([N, C + 1, z, y, x]); it also receives
the localization encoder's pooled bottleneck features of the same crop (the shared encoder,
frozen in phase 2 until an optional joint fine-tune). Output: a logit of clinically
significant cancer (grade group ≥ 2) and logits over grade groups 0–5.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import nn

from LesionAILib.dataclass_dicts import DictSerialisable, from_dict
from LesionAILib.errors import ConfigError

LOCALIZER_VARIANTS = ("per_sequence", "fusion", "multitask", "unet")
NUM_GRADE_GROUPS = 6  # ISUP grade group 0 (benign) to 5


@dataclass(frozen=True)
class LocalizerConfig(DictSerialisable):
    """Architecture of the localization network.

    Attributes:
        variant: ``per_sequence``, ``fusion`` or ``multitask`` (see module docstring).
        in_channels: number of sequences C.
        widths: feature channels per level (level 0 = full resolution).
        pools: down-sampling factors (z, y, x) between levels; ``len(widths) - 1`` entries.
        dropout: channel dropout after each block (also used for Monte-Carlo dropout).
    """

    variant: str = "per_sequence"
    in_channels: int = 3
    widths: tuple[int, ...] = (8, 16, 32, 64)
    pools: tuple[tuple[int, int, int], ...] = ((1, 2, 2), (1, 2, 2), (2, 2, 2))
    dropout: float = 0.1

    def __post_init__(self):
        object.__setattr__(self, "widths", tuple(int(w) for w in self.widths))
        object.__setattr__(self, "pools", tuple(tuple(int(v) for v in p) for p in self.pools))
        if self.variant not in LOCALIZER_VARIANTS:
            raise ConfigError(f"unknown localizer variant {self.variant!r}; use one of {', '.join(LOCALIZER_VARIANTS)}")
        if len(self.pools) != len(self.widths) - 1:
            raise ConfigError(f"need {len(self.widths) - 1} pool factors for {len(self.widths)} levels")
        if self.in_channels < 1 or min(self.widths) < 1:
            raise ConfigError("in_channels and widths must be positive")

    @property
    def divisor(self) -> tuple[int, int, int]:
        """The input size along (Z, Y, X) must be a multiple of this."""
        total = [1, 1, 1]
        for pool in self.pools:
            total = [t * p for t, p in zip(total, pool, strict=True)]
        return tuple(total)


@dataclass(frozen=True)
class ClassifierConfig(DictSerialisable):
    """Architecture of the lesion classifier.

    Attributes:
        crop: crop size (Z, Y, X) in voxels of the model grid around each candidate.
        widths: channels of the crop CNN's levels.
        use_encoder: also feed the localization encoder's pooled features of the crop.
        dropout: dropout before the output layer.
        residual: the csPCa logit is ``a · logit(map peak) + b`` plus the network's learned correction
            (which starts at zero): an untrained classifier reproduces the localization score, and
            training only has to learn where the images say otherwise.
    """

    crop: tuple[int, int, int] = (8, 48, 48)
    widths: tuple[int, ...] = (16, 32, 64)
    use_encoder: bool = True
    dropout: float = 0.2
    hidden: int = 64
    residual: bool = True

    def __post_init__(self):
        object.__setattr__(self, "crop", tuple(int(v) for v in self.crop))
        object.__setattr__(self, "widths", tuple(int(w) for w in self.widths))


# --------------------------------------------------------------------------- building blocks
def _kernel(level: int) -> tuple[int, int, int]:
    return (1, 3, 3) if level == 0 else (3, 3, 3)


class ConvBlock(nn.Sequential):
    """Two (conv → instance norm → leaky ReLU) layers, then channel dropout."""

    def __init__(self, in_channels: int, out_channels: int, kernel: tuple[int, int, int], dropout: float):
        padding = tuple(k // 2 for k in kernel)
        super().__init__(
            nn.Conv3d(in_channels, out_channels, kernel, padding=padding, bias=False),
            nn.InstanceNorm3d(out_channels, affine=True),
            nn.LeakyReLU(0.01, inplace=True),
            nn.Conv3d(out_channels, out_channels, kernel, padding=padding, bias=False),
            nn.InstanceNorm3d(out_channels, affine=True),
            nn.LeakyReLU(0.01, inplace=True),
            nn.Dropout3d(dropout) if dropout > 0 else nn.Identity(),
        )


class Encoder(nn.Module):
    """Levels of ConvBlocks with strided-convolution down-sampling; returns every level's features."""

    def __init__(self, in_channels: int, widths: Sequence[int], pools: Sequence[Sequence[int]], dropout: float):
        super().__init__()
        self.blocks = nn.ModuleList()
        self.downs = nn.ModuleList()
        channels = in_channels
        for level, width in enumerate(widths):
            if level > 0:
                pool = tuple(pools[level - 1])
                self.downs.append(nn.Conv3d(channels, channels, pool, stride=pool, bias=False))
            self.blocks.append(ConvBlock(channels, width, _kernel(level), dropout))
            channels = width

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        features = []
        for level, block in enumerate(self.blocks):
            if level > 0:
                x = self.downs[level - 1](x)
            x = block(x)
            features.append(x)
        return features


class Decoder(nn.Module):
    """Transposed-convolution up-sampling with skip connections; returns full-resolution features."""

    def __init__(self, widths: Sequence[int], pools: Sequence[Sequence[int]], dropout: float):
        super().__init__()
        self.ups = nn.ModuleList()
        self.blocks = nn.ModuleList()
        for level in range(len(widths) - 1, 0, -1):
            pool = tuple(pools[level - 1])
            self.ups.append(nn.ConvTranspose3d(widths[level], widths[level - 1], pool, stride=pool, bias=False))
            self.blocks.append(ConvBlock(2 * widths[level - 1], widths[level - 1], _kernel(level - 1), dropout))

    def forward(self, features: list[torch.Tensor]) -> torch.Tensor:
        x = features[-1]
        for index, (up, block) in enumerate(zip(self.ups, self.blocks, strict=True)):
            skip = features[-2 - index]
            x = block(torch.cat([up(x), skip], dim=1))
        return x


# --------------------------------------------------------------------------- localization
class LocalizationNet(nn.Module):
    """Per-sequence localization maps and a combined map, from [N, C, Z, Y, X] images.

    ``forward`` returns a dict:
        ``sequence_maps``: [N, C, Z, Y, X] in [0, 1], one map per input sequence (``None`` for ``unet``);
        ``combined``: [N, 1, Z, Y, X] in [0, 1], the combined localization map;
        ``case_logit``: [N] (``multitask`` only, else ``None``).
    """

    def __init__(self, config: LocalizerConfig):
        super().__init__()
        self.config = config
        c, widths, pools, dropout = config.in_channels, config.widths, config.pools, config.dropout
        if config.variant == "unet":
            self.encoders = nn.ModuleList([Encoder(c, widths, pools, dropout)])
            self.decoder = Decoder(widths, pools, dropout)
            self.head = nn.Conv3d(widths[0], 1, 1)
        elif config.variant == "per_sequence":
            self.encoders = nn.ModuleList(Encoder(1, widths, pools, dropout) for _ in range(c))
            self.decoders = nn.ModuleList(Decoder(widths, pools, dropout) for _ in range(c))
            self.sequence_heads = nn.ModuleList(nn.Conv3d(widths[0], 1, 1) for _ in range(c))
            self.combine = nn.Sequential(
                ConvBlock(c * widths[0] + c, widths[0], (1, 3, 3), 0.0), nn.Conv3d(widths[0], 1, 1)
            )
        else:
            self.encoders = nn.ModuleList(Encoder(1, widths, pools, dropout) for _ in range(c))
            self.fuse = nn.ModuleList(nn.Conv3d(c * w, w, 1) for w in widths)
            self.decoder = Decoder(widths, pools, dropout)
            self.head = nn.Conv3d(widths[0], 1, 1)
            self.sequence_heads = nn.ModuleList(nn.Conv3d(widths[1], 1, 1) for _ in range(c))
        self.case_head = None
        if config.variant == "multitask":
            self.case_head = nn.Sequential(
                nn.Linear(2 * widths[-1], widths[-1]), nn.LeakyReLU(0.01), nn.Dropout(0.2), nn.Linear(widths[-1], 1)
            )

    @property
    def encoder_dim(self) -> int:
        """Length of :meth:`encode_pooled`'s feature vector."""
        last = self.config.widths[-1]
        return 2 * last * (self.config.in_channels if self.config.variant == "per_sequence" else 1)

    def _encode_all(self, x: torch.Tensor) -> list[list[torch.Tensor]]:
        if x.shape[1] != self.config.in_channels:
            raise ValueError(f"expected {self.config.in_channels} channels, got {x.shape[1]}")
        if self.config.variant == "unet":
            return [self.encoders[0](x)]
        return [encoder(x[:, i : i + 1]) for i, encoder in enumerate(self.encoders)]

    def _fused(self, per_sequence: list[list[torch.Tensor]]) -> list[torch.Tensor]:
        return [fuse(torch.cat([f[level] for f in per_sequence], 1)) for level, fuse in enumerate(self.fuse)]

    def encode_pooled(self, x: torch.Tensor) -> torch.Tensor:
        """[N, C, z, y, x] crop → [N, encoder_dim] (mean- and max-pooled bottleneck features)."""
        per_sequence = self._encode_all(x)
        if self.config.variant in ("per_sequence", "unet"):
            bottlenecks = [f[-1] for f in per_sequence]
        else:
            bottlenecks = [self._fused(per_sequence)[-1]]
        pooled = [torch.cat([b.mean(dim=(2, 3, 4)), b.amax(dim=(2, 3, 4))], 1) for b in bottlenecks]
        return torch.cat(pooled, 1)

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor | None]:
        per_sequence = self._encode_all(x)
        if self.config.variant == "unet":
            combined = torch.sigmoid(self.head(self.decoder(per_sequence[0])))
            return {"sequence_maps": None, "combined": combined, "case_logit": None}
        if self.config.variant == "per_sequence":
            decoded = [decoder(f) for decoder, f in zip(self.decoders, per_sequence, strict=True)]
            sequence_logits = [head(d) for head, d in zip(self.sequence_heads, decoded, strict=True)]
            sequence_maps = torch.sigmoid(torch.cat(sequence_logits, 1))
            combined_logit = self.combine(torch.cat([*decoded, sequence_maps], 1))
            case_logit = None
        else:
            fused = self._fused(per_sequence)
            combined_logit = self.head(self.decoder(fused))
            size = x.shape[2:]
            sequence_logits = [
                F.interpolate(head(f[1]), size=size, mode="trilinear", align_corners=False)
                for head, f in zip(self.sequence_heads, per_sequence, strict=True)
            ]
            sequence_maps = torch.sigmoid(torch.cat(sequence_logits, 1))
            case_logit = None
            if self.case_head is not None:
                bottleneck = fused[-1]
                pooled = torch.cat([bottleneck.mean(dim=(2, 3, 4)), bottleneck.amax(dim=(2, 3, 4))], 1)
                case_logit = self.case_head(pooled)[:, 0]
        return {"sequence_maps": sequence_maps, "combined": torch.sigmoid(combined_logit), "case_logit": case_logit}


# --------------------------------------------------------------------------- classification
class LesionClassifier(nn.Module):
    """Candidate crop ([N, C + 1, z, y, x]: images + combined map) → csPCa logit and grade logits.

    ``forward(crop, encoder_features)`` returns ``{"logit": [N], "grade_logits": [N, 6]}``;
    ``encoder_features`` is [N, encoder_dim] from :meth:`LocalizationNet.encode_pooled` (or
    ``None`` when ``use_encoder`` is off).
    """

    def __init__(self, config: ClassifierConfig, in_channels: int, encoder_dim: int):
        super().__init__()
        self.config = config
        layers: list[nn.Module] = []
        channels = in_channels
        for level, width in enumerate(config.widths):
            kernel = (1, 3, 3) if level == 0 else (3, 3, 3)
            layers += [
                nn.Conv3d(channels, width, kernel, padding=tuple(k // 2 for k in kernel), bias=False),
                nn.InstanceNorm3d(width, affine=True),
                nn.LeakyReLU(0.01, inplace=True),
            ]
            if level < len(config.widths) - 1:
                layers.append(nn.MaxPool3d((1, 2, 2)))
            channels = width
        self.features = nn.Sequential(*layers)
        self.encoder_dim = encoder_dim if config.use_encoder else 0
        inputs = 2 * channels + self.encoder_dim + 2  # pooled crop features, encoder features, map peak and mean
        self.head = nn.Sequential(
            nn.Linear(inputs, config.hidden),
            nn.LeakyReLU(0.01),
            nn.Dropout(config.dropout),
            nn.Linear(config.hidden, 1 + NUM_GRADE_GROUPS),
        )
        if config.residual:
            self.peak_slope = nn.Parameter(torch.tensor(1.0))
            self.peak_offset = nn.Parameter(torch.tensor(0.0))
            with torch.no_grad():  # the learned correction starts at zero
                self.head[-1].weight[0].zero_()
                self.head[-1].bias[0].zero_()

    def forward(self, crop: torch.Tensor, encoder_features: torch.Tensor | None) -> dict[str, torch.Tensor]:
        heat = crop[:, -1]
        features = self.features(crop)
        parts = [
            features.mean(dim=(2, 3, 4)),
            features.amax(dim=(2, 3, 4)),
            heat.amax(dim=(1, 2, 3))[:, None],
            heat.mean(dim=(1, 2, 3))[:, None],
        ]
        if self.encoder_dim:
            if encoder_features is None:
                raise ValueError("this classifier needs the localization encoder's features")
            parts.insert(2, encoder_features)
        out = self.head(torch.cat(parts, 1))
        logit = out[:, 0]
        if self.config.residual:
            peak = heat.amax(dim=(1, 2, 3)).clamp(0.01, 0.99)
            logit = logit + self.peak_slope * torch.logit(peak) + self.peak_offset
        return {"logit": logit, "grade_logits": out[:, 1:]}


@dataclass(frozen=True)
class ModelConfig(DictSerialisable):
    """Everything needed to rebuild a :class:`LesionModel`."""

    localizer: LocalizerConfig = field(default_factory=LocalizerConfig)
    classifier: ClassifierConfig | None = field(default_factory=ClassifierConfig)

    @classmethod
    def from_dict(cls, data: dict) -> ModelConfig:
        """The architecture of a model file; settings left out keep their defaults, except that the
        classifier of a file written before ``residual`` existed is a plain one."""
        classifier = data.get("classifier")
        if classifier is not None:
            data = {**data, "classifier": {"residual": False, **classifier}}
        return from_dict(cls, data, "architecture setting")


class LesionModel(nn.Module):
    """Localization network plus (optionally) the lesion classifier sharing its encoder."""

    def __init__(self, config: ModelConfig):
        super().__init__()
        self.config = config
        self.localizer = LocalizationNet(config.localizer)
        self.classifier = None
        if config.classifier is not None:
            self.classifier = LesionClassifier(
                config.classifier, config.localizer.in_channels + 1, self.localizer.encoder_dim
            )

    def forward(
        self, images: torch.Tensor | None = None, crops: torch.Tensor | None = None
    ) -> dict[str, torch.Tensor | None]:
        """Localization maps of [N, C, Z, Y, X] ``images`` (see :class:`LocalizationNet`) and/or the
        classification of [M, C + 1, z, y, x] candidate ``crops`` (see :meth:`classify`), in one dict.

        One call can do both, so distributed training synchronises every gradient in one backward.
        """
        output: dict[str, torch.Tensor | None] = {}
        if images is not None:
            output.update(self.localizer(images))
        if crops is not None:
            output.update(self.classify(crops))
        return output

    def classify(self, crops: torch.Tensor) -> dict[str, torch.Tensor]:
        """Classify candidate crops [N, C + 1, z, y, x] (images + combined map)."""
        if self.classifier is None:
            raise ConfigError("this model has no classification network (phase 2 not trained)")
        encoder_features = None
        if self.classifier.config.use_encoder:
            encoder_features = self.localizer.encode_pooled(crops[:, :-1])
        return self.classifier(crops, encoder_features)

    def encoder_parameters(self):
        """Parameters of the shared localization encoder(s) (frozen in early phase 2)."""
        modules = [self.localizer.encoders]
        if hasattr(self.localizer, "fuse"):
            modules.append(self.localizer.fuse)
        for module in modules:
            yield from module.parameters()

    def parameter_count(self) -> dict[str, int]:
        counts = {"localizer": sum(p.numel() for p in self.localizer.parameters())}
        if self.classifier is not None:
            counts["classifier"] = sum(p.numel() for p in self.classifier.parameters())
        return counts

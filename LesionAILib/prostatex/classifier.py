"""The ProstateX patch classifier: network, ensemble and its model file (its training: ``classifier_training``).

Input: the dataset's three 32 × 32 patches of one finding (:mod:`LesionAILib.prostatex.patches`: T2, ADC,
high-b, each histogram-equalised, in its own grid), their localization maps, and the prostate zone.
Output: a logit of clinically significant cancer (ProstateX ``ClinSig``).

**Network** (:class:`MultiScaleNet`, ≈ 50 k parameters). Three 16 × 16 views, each with its
localization-map channel:

* ``centre`` — ADC + high-b, central 16 × 16 pixels (2 mm pixels, 32 mm field of view),
* ``context`` — ADC + high-b, the whole patch 2 × 2 average-pooled (4 mm pixels, 64 mm),
* ``t2w`` — T2, the whole patch 2 × 2 average-pooled (1 mm pixels, 16 mm).

Each view has its own encoder (conv16-BN-ReLU-maxpool, conv32-BN-ReLU-maxpool, conv32-BN-ReLU,
then global average and max pooling); the features and the zone one-hot (PZ, TZ, AS; all zero
for SV) go into a dropout-0.5 MLP head.

**Ensemble** (:class:`PatchClassifier`): the mean logit of ``members`` networks trained with
different seeds, each averaged over the patches and their left-right mirror (test-time
augmentation). An unknown zone is marginalised: the probability is averaged over PZ/TZ/AS weighted
by their frequency in the training data (stored in the model as ``zone_prior``).

**Training**: :mod:`LesionAILib.prostatex.classifier_training` (recipe, inner-CV choice of epochs).

**Model file**: the :mod:`LesionAILib.models.modelfile` container (safetensors + JSON metadata + sha256),
``kind = "patch-classifier"``; the metadata holds the architecture, the patch definition, the
training record and the cross-validated metrics, so a file rebuilds itself.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from LesionAILib.dataclass_dicts import DictSerialisable
from LesionAILib.errors import ConfigError, ModelFileError
from LesionAILib.models.bundled import RESOURCES
from LesionAILib.models.modelfile import (
    FORMAT,
    FORMAT_VERSION,
    load_weights,
    read_container,
    write_container,
)
from LesionAILib.prostatex.patches import (
    BLOB_SIGMA_PIXELS,
    EQUALISATION_BINS,
    NEAREST_VOXEL_AT,
    PATCH_SIZE,
    FindingPatches,
)

KIND = "patch-classifier"
ZONES = ("PZ", "TZ", "AS")
CLASSIFIER_NAME = "ProstateX-trained classifier"
BUNDLED_CLASSIFIER = RESOURCES / "Models" / "prostatex-classifier.safetensors"
VIEW_SIZE = PATCH_SIZE // 2


# --------------------------------------------------------------------------- configuration
@dataclass(frozen=True)
class PatchClassifierConfig(DictSerialisable):
    """Architecture: encoder base ``width``, head ``hidden`` units, head ``dropout``, ensemble ``members``."""

    width: int = 16
    hidden: int = 32
    dropout: float = 0.5
    members: int = 5

    def __post_init__(self):
        if self.width < 1 or self.hidden < 1 or self.members < 1 or not 0.0 <= self.dropout < 1.0:
            raise ConfigError(f"invalid patch classifier configuration {self}")


# --------------------------------------------------------------------------- inputs
def zone_one_hot(zones: Sequence[str | None]) -> torch.Tensor:
    """[N, 3] float32 one-hot over :data:`ZONES`; SV, unknown and ``None`` are all-zero rows."""
    return torch.tensor([[float(zone == name) for name in ZONES] for zone in zones], dtype=torch.float32)


@dataclass
class PatchInputs:
    """A batch of findings.

    Attributes:
        images: [N, 3, 32, 32] float32 in [0, 1], the T2, ADC and high-b patches (each in its own grid).
        localization: [N, 2, 32, 32] float32, localization maps on the T2 and on the ADC/high-b grid.
        zone: [N, 3] float32 zone one-hot (:func:`zone_one_hot`).
    """

    images: torch.Tensor
    localization: torch.Tensor
    zone: torch.Tensor

    def __len__(self) -> int:
        return self.images.shape[0]

    def subset(self, index: np.ndarray | torch.Tensor | Sequence[int]) -> PatchInputs:
        index = torch.as_tensor(np.asarray(index), dtype=torch.long)
        return PatchInputs(self.images[index], self.localization[index], self.zone[index])

    def with_zone(self, zone: torch.Tensor) -> PatchInputs:
        return PatchInputs(self.images, self.localization, zone)

    @classmethod
    def from_patches(cls, patches: Sequence[FindingPatches], zones: Sequence[str | None]) -> PatchInputs:
        """Inputs of findings extracted from studies (:class:`~LesionAILib.prostatex.patches.FindingPatches`)."""
        images = np.stack([[p.images[role] for role in ("t2w", "adc", "hbv")] for p in patches])
        localization = np.stack([[p.localization["t2w"], p.localization["adc"]] for p in patches])
        return cls(torch.from_numpy(images), torch.from_numpy(localization), zone_one_hot(zones))


# --------------------------------------------------------------------------- network
class ViewEncoder(nn.Module):
    """[N, C, 16, 16] view → [N, 4 · width] (global average and max of a three-convolution feature map)."""

    def __init__(self, in_channels: int, width: int):
        super().__init__()

        def block(a: int, b: int) -> list[nn.Module]:
            return [nn.Conv2d(a, b, 3, padding=1, bias=False), nn.BatchNorm2d(b), nn.ReLU(inplace=True)]

        self.features = nn.Sequential(
            *block(in_channels, width),
            nn.MaxPool2d(2),
            *block(width, 2 * width),
            nn.MaxPool2d(2),
            *block(2 * width, 2 * width),
        )
        self.out_features = 4 * width

    def forward(self, view: torch.Tensor) -> torch.Tensor:
        features = self.features(view)
        return torch.cat([features.mean((2, 3)), features.amax((2, 3))], 1)


class MultiScaleNet(nn.Module):
    """One member: three views with localization channels, per-view encoders, zone, MLP head (module docstring)."""

    VIEW_CHANNELS = {"centre": 3, "context": 3, "t2w": 2}

    def __init__(self, config: PatchClassifierConfig):
        super().__init__()
        self.encoders = nn.ModuleDict({v: ViewEncoder(c, config.width) for v, c in self.VIEW_CHANNELS.items()})
        features = sum(e.out_features for e in self.encoders.values()) + len(ZONES)
        self.head = nn.Sequential(
            nn.Dropout(config.dropout),
            nn.Linear(features, config.hidden),
            nn.ReLU(inplace=True),
            nn.Dropout(config.dropout),
            nn.Linear(config.hidden, 1),
        )

    @staticmethod
    def views(images: torch.Tensor, localization: torch.Tensor) -> dict[str, torch.Tensor]:
        """[N, 3, 32, 32] patches and [N, 2, 32, 32] maps → the three [N, C, 16, 16] views."""
        centre = slice(VIEW_SIZE // 2, VIEW_SIZE // 2 + VIEW_SIZE)
        diffusion = torch.cat([images[:, 1:3] - 0.5, localization[:, 1:2]], 1)
        t2 = torch.cat([images[:, 0:1] - 0.5, localization[:, 0:1]], 1)
        return {
            "centre": diffusion[:, :, centre, centre],
            "context": F.avg_pool2d(diffusion, 2),
            "t2w": F.avg_pool2d(t2, 2),
        }

    def forward(self, images: torch.Tensor, localization: torch.Tensor, zone: torch.Tensor) -> torch.Tensor:
        """Logit [N] of clinically significant cancer."""
        views = self.views(images, localization)
        features = [self.encoders[name](views[name]) for name in self.VIEW_CHANNELS]
        return self.head(torch.cat([*features, zone], 1)).squeeze(1)


def mirror_averaged_logit(net: nn.Module, inputs: PatchInputs) -> torch.Tensor:
    """Logit [N] averaged over the patches and their left-right mirror (test-time augmentation)."""
    plain = net(inputs.images, inputs.localization, inputs.zone)
    mirrored = net(inputs.images.flip(-1), inputs.localization.flip(-1), inputs.zone)
    return 0.5 * (plain + mirrored)


class PatchClassifier(nn.Module):
    """Ensemble of :class:`MultiScaleNet` members (mean of their mirror-averaged logits); see module docstring."""

    def __init__(self, config: PatchClassifierConfig):
        super().__init__()
        self.config = config
        self.members = nn.ModuleList([MultiScaleNet(config) for _ in range(config.members)])
        self.register_buffer("zone_prior", torch.full((len(ZONES),), 1.0 / len(ZONES)))

    def forward(self, images: torch.Tensor, localization: torch.Tensor, zone: torch.Tensor) -> torch.Tensor:
        inputs = PatchInputs(images, localization, zone)
        return torch.stack([mirror_averaged_logit(member, inputs) for member in self.members]).mean(0)

    @torch.no_grad()
    def probabilities(self, inputs: PatchInputs, zones: Sequence[str | None]) -> np.ndarray:
        """[N] float64 probabilities; a finding whose zone is ``None`` is marginalised over :data:`ZONES`."""
        self.eval()
        device = self.zone_prior.device
        images, localization = inputs.images.to(device), inputs.localization.to(device)
        known = torch.sigmoid(self(images, localization, zone_one_hot(zones).to(device)))
        if all(zone is not None for zone in zones):
            return known.double().cpu().numpy()
        marginal = torch.zeros_like(known)
        for index, zone in enumerate(ZONES):
            one_hot = zone_one_hot([zone] * len(zones)).to(device)
            marginal += self.zone_prior[index] * torch.sigmoid(self(images, localization, one_hot))
        unknown = torch.tensor([zone is None for zone in zones], device=device)
        return torch.where(unknown, marginal, known).double().cpu().numpy()


# --------------------------------------------------------------------------- model file
def patch_definition() -> dict:
    """How the inputs are made (:mod:`LesionAILib.prostatex.patches`), stored in the model file."""
    return {
        "size": PATCH_SIZE,
        "sequences": ["t2w", "adc", "hbv"],
        "resolution": "native in-plane resolution of each series, axial slice nearest the point",
        "nearest_voxel_at_row_column": list(NEAREST_VOXEL_AT),
        "intensity": f"whole-volume histogram equalisation ({EQUALISATION_BINS} bins; one per integer)",
        "localization": {"kind": "centred Gaussian blob", "sigma_pixels": dict(BLOB_SIGMA_PIXELS)},
        "zones": list(ZONES),
    }


@dataclass
class ClassifierMetadata:
    """The JSON block of a patch-classifier model file."""

    config: PatchClassifierConfig
    name: str = CLASSIFIER_NAME
    description: str = ""
    created: str = field(default_factory=lambda: datetime.now(timezone.utc).isoformat(timespec="seconds"))
    patches: dict = field(default_factory=patch_definition)
    training: dict = field(default_factory=dict)
    metrics: dict = field(default_factory=dict)
    intended_use: str = "research use only; not for clinical use"
    sha256: str = ""

    @property
    def display_name(self) -> str:
        return self.name

    def to_dict(self) -> dict:
        return {
            "format": FORMAT,
            "format_version": FORMAT_VERSION,
            "kind": KIND,
            "name": self.name,
            "created": self.created,
            "description": self.description,
            "architecture": self.config.to_dict(),
            "patches": self.patches,
            "class_names": ["not clinically significant", "clinically significant (ProstateX ClinSig)"],
            "training": self.training,
            "metrics": self.metrics,
            "intended_use": self.intended_use,
            "synthetic_training_data": False,
            "sha256": self.sha256,
        }

    @classmethod
    def from_dict(cls, data: dict) -> ClassifierMetadata:
        return cls(
            config=PatchClassifierConfig.from_dict(data["architecture"]),
            name=data.get("name", CLASSIFIER_NAME),
            description=data.get("description", ""),
            created=data.get("created", ""),
            patches=data.get("patches", {}),
            training=data.get("training", {}),
            metrics=data.get("metrics", {}),
            intended_use=data.get("intended_use", ""),
            sha256=data.get("sha256", ""),
        )


def save_classifier(classifier: PatchClassifier, metadata: ClassifierMetadata, path: str | Path) -> Path:
    """Write the classifier and its metadata atomically (fills ``metadata.sha256``)."""
    metadata.config = classifier.config
    metadata.sha256 = write_container(classifier.state_dict(), metadata.to_dict(), path)
    return Path(path)


def bundled_classifier_path() -> Path:
    """The ProstateX-trained classifier shipped with LesionAI."""
    if not BUNDLED_CLASSIFIER.exists():
        raise ModelFileError(
            "the bundled ProstateX classifier is missing",
            BUNDLED_CLASSIFIER,
            "reinstall LesionAI or pass --model / --classifier-model",
        )
    return BUNDLED_CLASSIFIER


def load_classifier(
    path: str | Path | None = None, device: str | torch.device = "cpu"
) -> tuple[PatchClassifier, ClassifierMetadata]:
    """Rebuild a patch classifier from its file (``None``: the bundled one) after the integrity check."""
    path = Path(path) if path is not None else bundled_classifier_path()
    document, tensors = read_container(path, KIND)
    metadata = ClassifierMetadata.from_dict(document)
    classifier = PatchClassifier(metadata.config)
    load_weights(classifier, tensors, path)
    return classifier.to(device).eval(), metadata

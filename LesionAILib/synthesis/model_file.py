"""Synthesis model files: the inpainting network's weights, its architecture, grid, masks and normal-tissue statistics.

Same container as every LesionAI model (:func:`LesionAILib.models.modelfile.write_container`:
safetensors weights, one JSON document, sha256 over both; never unpickled), ``kind`` =
:data:`SYNTHESIS`. The document holds ``name``, ``created``, ``description``, ``architecture``
(:class:`~LesionAILib.synthesis.network.InpaintingConfig`), ``preprocess`` (the synthesis grid and
normalisation; absent for the 2D ProstateX-patch model, whose inputs are equalised patches),
``masks`` (:class:`~LesionAILib.synthesis.mapping.MaskSettings`, or the 2D patch definition),
``normal_tissue`` (:class:`~LesionAILib.synthesis.normalisation.NormalTissueStatistics`),
``training`` (data, command, seed, steps, excluded patients), ``metrics``, ``intended_use`` and
``synthetic_training_data``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

import torch

from LesionAILib.models.modelfile import (
    DEMO_NOTICE,
    FORMAT,
    FORMAT_VERSION,
    load_weights,
    read_container,
    write_container,
)
from LesionAILib.preprocessing.pipeline import PreprocessConfig
from LesionAILib.synthesis.mapping import MaskSettings
from LesionAILib.synthesis.network import InpaintingConfig, InpaintingNet
from LesionAILib.synthesis.normalisation import NormalTissueStatistics

SYNTHESIS = "synthesis"
# JSON values stored as they are (the structured fields have their own to_dict/from_dict)
_PLAIN_FIELDS = (
    "name",
    "created",
    "description",
    "masks",
    "training",
    "metrics",
    "intended_use",
    "synthetic_training_data",
    "sha256",
)


@dataclass
class SynthesisMetadata:
    """The JSON document of a synthesis model file (see module docstring)."""

    name: str
    architecture: InpaintingConfig
    normal_tissue: NormalTissueStatistics
    preprocess: PreprocessConfig | None = None
    masks: dict = field(default_factory=lambda: MaskSettings().to_dict())
    description: str = ""
    created: str = field(default_factory=lambda: datetime.now(timezone.utc).isoformat(timespec="seconds"))
    training: dict = field(default_factory=dict)
    metrics: dict = field(default_factory=dict)
    intended_use: str = "research use only; not for clinical use"
    synthetic_training_data: bool = False
    sha256: str = ""

    @property
    def roles(self) -> tuple[str, ...]:
        return self.normal_tissue.roles

    @property
    def mask_settings(self) -> MaskSettings:
        return MaskSettings.from_dict(self.masks)

    @property
    def display_name(self) -> str:
        return f"{self.name} ({DEMO_NOTICE})" if self.synthetic_training_data else self.name

    @property
    def notice(self) -> str:
        return DEMO_NOTICE if self.synthetic_training_data else self.intended_use

    def to_dict(self) -> dict:
        document = {"format": FORMAT, "format_version": FORMAT_VERSION, "kind": SYNTHESIS}
        document |= {name: getattr(self, name) for name in _PLAIN_FIELDS}
        document["architecture"] = self.architecture.to_dict()
        document["normal_tissue"] = self.normal_tissue.to_dict()
        document["preprocess"] = None if self.preprocess is None else self.preprocess.to_dict()
        return document

    @classmethod
    def from_dict(cls, data: dict) -> SynthesisMetadata:
        plain = {name: data[name] for name in _PLAIN_FIELDS if name in data}
        preprocess = data.get("preprocess")
        return cls(
            architecture=InpaintingConfig.from_dict(data["architecture"]),
            normal_tissue=NormalTissueStatistics.from_dict(data["normal_tissue"]),
            preprocess=PreprocessConfig.from_dict(preprocess) if preprocess else None,
            **plain,
        )


def save_synthesis_model(net: InpaintingNet, metadata: SynthesisMetadata, path: str | Path) -> Path:
    """Write ``net``'s weights and ``metadata`` atomically; fills ``metadata.sha256``."""
    metadata.architecture = net.config
    metadata.sha256 = write_container(net.state_dict(), metadata.to_dict(), path)
    return Path(path)


def load_synthesis_model(
    path: str | Path, device: str | torch.device = "cpu"
) -> tuple[InpaintingNet, SynthesisMetadata]:
    """Rebuild the network from its file after the integrity check; eval mode on ``device``.

    Raises :class:`~LesionAILib.errors.ModelFileError` for a missing, truncated, foreign, tampered or
    wrong-kind file (e.g. a detector given as a synthesis model).
    """
    document, tensors = read_container(path, kind=SYNTHESIS)
    metadata = SynthesisMetadata.from_dict(document)
    net = InpaintingNet(metadata.architecture)
    load_weights(net, tensors, path)
    return net.to(device).eval(), metadata

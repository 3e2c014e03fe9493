"""The training configuration: data, grid, architecture, augmentation and both phases' settings.

A :class:`TrainConfig` is data (nnU-Net's plan): read from JSON (``Resources/Configs/``), stored in
every model file a run writes, and hashed (:meth:`TrainConfig.digest`) so that a run folder only
resumes the configuration it was started with.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path

from LesionAILib.dataclass_dicts import DictSerialisable, from_dict
from LesionAILib.errors import ConfigError
from LesionAILib.models.networks import ModelConfig
from LesionAILib.preprocessing.pipeline import PreprocessConfig
from LesionAILib.training.augmentation import AugmentConfig

DEFAULT_PREPROCESS = PreprocessConfig(shape=(20, 96, 96), spacing=(3.0, 1.0, 1.0))


@dataclass
class Phase1Config:
    """Localization training. ``crop`` is (Z, Y, X) voxels of the model grid.

    ``objective``: ``"regression"`` (the score-carrying heatmap, LesionAI's method) or
    ``"segmentation"`` (binary csPCa mask with cross-entropy + soft Dice, the PI-CAI U-Net-style
    baseline).
    """

    epochs: int = 30
    batch_size: int = 4
    crops_per_case: int = 1
    crop: tuple[int, int, int] = (16, 64, 64)
    lesion_fraction: float = 0.6
    lr: float = 2e-3
    weight_decay: float = 1e-4
    patience: int = 8
    sequence_weight: float = 0.3
    positive_weight: float = 10.0
    dice_weight: float = 0.2
    case_weight: float = 0.2
    objective: str = "regression"


@dataclass
class Phase2Config:
    """Classification training on mined candidates; ``epochs`` frozen-encoder, then ``joint_epochs``.

    ``samples_per_epoch``: 0 trains on every mined candidate once per epoch; N > 0 on exactly N
    (further shuffled passes, cut at N), which holds the classifier's budget fixed when arms of a
    comparison mine different numbers of candidates.
    """

    epochs: int = 20
    joint_epochs: int = 0
    batch_size: int = 16
    lr: float = 1e-3
    joint_lr: float = 2e-4
    weight_decay: float = 1e-4
    patience: int = 6
    grade_weight: float = 0.3
    max_candidates: int = 5
    samples_per_epoch: int = 0


@dataclass
class TrainConfig(DictSerialisable):
    """Everything a training run needs; stored in every model file it writes.

    Attributes:
        train, val: cohort folders (PI-CAI layout or phantom cohorts). Without ``val``,
            ``val_fraction`` of the training cases (chosen by ``seed``) validate.
        cache_dir: where preprocessed cases are kept between runs (relative: to the working folder).
        validate: validate after every epoch (early stopping, best epoch); off, the last epoch is kept.
        device: ``auto``, ``cpu`` or ``cuda``; ``amp`` enables mixed precision on CUDA.
    """

    name: str = "lesionai-model"
    description: str = ""
    seed: int = 0
    train: list[str] = field(default_factory=list)
    val: list[str] = field(default_factory=list)
    val_fraction: float = 0.2
    cache_dir: str = ".lesionai-cache"
    validate: bool = True
    device: str = "auto"
    amp: bool = True
    preprocess: PreprocessConfig = DEFAULT_PREPROCESS
    model: ModelConfig = field(default_factory=ModelConfig)
    augment: AugmentConfig = field(default_factory=AugmentConfig)
    phase1: Phase1Config = field(default_factory=Phase1Config)
    phase2: Phase2Config = field(default_factory=Phase2Config)

    @classmethod
    def from_dict(cls, data: dict) -> TrainConfig:
        """Settings left out keep their defaults (also inside ``model``, ``phase1``, …); an unknown one is an error."""
        return from_dict(cls, data, "training setting")

    def digest(self) -> str:
        """Hash of the settings that shape the run (resuming requires the same digest)."""
        relevant = {k: v for k, v in self.to_dict().items() if k not in ("device", "cache_dir", "description")}
        return hashlib.sha256(json.dumps(relevant, sort_keys=True).encode()).hexdigest()[:16]


def load_config(path: str | Path) -> TrainConfig:
    """Read a JSON training configuration (see ``Resources/Configs/``)."""
    path = Path(path)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError("training configuration file does not exist", path) from None
    except json.JSONDecodeError as error:
        raise ConfigError(f"not valid JSON (line {error.lineno}: {error.msg})", path) from None
    base = path.parent
    for key in ("train", "val"):  # data folders named in the file are relative to the file
        data[key] = [str((base / p).resolve()) if not Path(p).is_absolute() else p for p in data.get(key, [])]
    return TrainConfig.from_dict(data)

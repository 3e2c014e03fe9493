"""Two-phase joint training of the localization and classification networks.

**Phase 1** trains the localization network on random crops (biased towards lesions) to regress
the score-carrying heatmap (:mod:`LesionAILib.training.targets`): weighted mean squared error on the
combined map and, with a smaller weight, on every per-sequence map, plus an optional soft Dice
term on the clinically significant region and (``multitask``) a binary cross-entropy case term.

**Phase 2** trains the classification network on top of the phase-1 weights. Candidates are
mined by running the phase-1 network over every training case (plus every ground-truth lesion,
benign mimics included); each gets the grade of the lesion it overlaps (grade group 0 for false
positives). The classifier sees the image channels plus the combined map around the candidate
and the shared localization encoder's features; the encoder is frozen for ``phase2.epochs``
epochs, then optionally unfrozen for ``phase2.joint_epochs`` epochs of joint fine-tuning with
both losses.

The loop: deterministic seeds (crop ``i`` of epoch ``e`` depends only on ``(seed, e, i)``),
augmentation on tensors (:mod:`LesionAILib.training.augmentation`), mixed precision on CUDA, a checkpoint
after every epoch (safetensors + JSON, never pickle), resume after an interruption, early
stopping on the validation ranking score ((AUROC + AP) / 2, picai-eval), JSON-lines events and a
progress bar, data read through memory maps (never the whole dataset in RAM), and
DistributedDataParallel under ``torchrun`` (gloo on CPU, NCCL on CUDA): each rank processes its
share of every global batch, so the trajectory matches a single process with the same batch.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import sys
import time
from collections.abc import Sequence
from contextlib import nullcontext
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.distributed as dist
import torch.nn.functional as F
from safetensors import safe_open
from safetensors.torch import save_file

from LesionAILib.atomic_io import atomic_path, write_json_atomic, write_npy_atomic
from LesionAILib.errors import ConfigError
from LesionAILib.geometry import Grid
from LesionAILib.inference.candidates import extract_candidates
from LesionAILib.jobs.events import CancelToken, EventLog
from LesionAILib.models.modelfile import ModelMetadata, save_model
from LesionAILib.models.networks import ClassifierConfig, LesionModel, LocalizerConfig, ModelConfig
from LesionAILib.preprocessing.crops import extract_crop
from LesionAILib.preprocessing.pipeline import PreprocessConfig
from LesionAILib.preprocessing.resampling import resolve_device
from LesionAILib.training.augmentation import AugmentConfig, augment_batch
from LesionAILib.training.cohorts import CropSampler, PreparedCase, prepare_cases, read_cohort
from LesionAILib.training.targets import CSPCA_THRESHOLD

DEFAULT_PREPROCESS = PreprocessConfig(shape=(20, 96, 96), spacing=(3.0, 1.0, 1.0))
CHECKPOINT = "checkpoint.safetensors"


# --------------------------------------------------------------------------- configuration
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
    """Classification training on mined candidates; ``epochs`` frozen-encoder, then ``joint_epochs``."""

    epochs: int = 20
    joint_epochs: int = 0
    batch_size: int = 16
    lr: float = 1e-3
    joint_lr: float = 2e-4
    weight_decay: float = 1e-4
    patience: int = 6
    grade_weight: float = 0.3
    max_candidates: int = 5


@dataclass
class Curriculum:
    """Admit training cases in a given order (multi-site similarity order, deployment uncertainty order).

    Epoch ``e`` (1-based) trains on the first ``ceil(n × f(e))`` cases of ``order``, with
    ``f(e) = min(1, start_fraction + (1 - start_fraction) × (e - 1) / ramp_epochs)``, plus — when
    ``replay`` names cases of an earlier dataset — ``replay_fraction`` of each epoch drawn from
    them, so the earlier site is not forgotten.
    """

    order: list[str]
    start_fraction: float = 0.3
    ramp_epochs: int = 5
    replay: list[str] = field(default_factory=list)
    replay_fraction: float = 0.3

    def admitted(self, epoch: int) -> int:
        fraction = min(1.0, self.start_fraction + (1 - self.start_fraction) * (epoch - 1) / max(self.ramp_epochs, 1))
        return max(1, int(np.ceil(len(self.order) * fraction)))

    def epoch_cases(self, epoch: int, seed: int) -> list[str]:
        """The case ids of epoch ``epoch`` in training order (deterministic)."""
        chosen = list(self.order[: self.admitted(epoch)])
        if self.replay and self.replay_fraction > 0:
            count = int(round(len(chosen) * self.replay_fraction / (1 - self.replay_fraction)))
            rng = np.random.default_rng([seed, epoch, 3])
            chosen += [
                self.replay[i] for i in rng.choice(len(self.replay), size=min(count, len(self.replay)), replace=False)
            ]
        rng = np.random.default_rng([seed, epoch, 4])
        return [chosen[i] for i in rng.permutation(len(chosen))]


@dataclass
class TrainConfig:
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

    def to_dict(self) -> dict:
        return {
            "name": self.name,
            "description": self.description,
            "seed": self.seed,
            "train": list(self.train),
            "val": list(self.val),
            "val_fraction": self.val_fraction,
            "cache_dir": self.cache_dir,
            "validate": self.validate,
            "device": self.device,
            "amp": self.amp,
            "preprocess": self.preprocess.to_dict(),
            "model": self.model.to_dict(),
            "augment": self.augment.to_dict(),
            "phase1": {**asdict(self.phase1), "crop": list(self.phase1.crop)},
            "phase2": asdict(self.phase2),
        }

    @classmethod
    def from_dict(cls, data: dict) -> TrainConfig:
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = set(data) - known
        if unknown:
            raise ConfigError(f"unknown training setting(s): {', '.join(sorted(unknown))}")
        defaults = cls()
        model = data.get("model")
        try:
            return cls(
                name=data.get("name", defaults.name),
                description=data.get("description", ""),
                seed=int(data.get("seed", 0)),
                train=[str(p) for p in data.get("train", [])],
                val=[str(p) for p in data.get("val", [])],
                val_fraction=float(data.get("val_fraction", defaults.val_fraction)),
                cache_dir=str(data.get("cache_dir", defaults.cache_dir)),
                validate=bool(data.get("validate", True)),
                device=str(data.get("device", "auto")),
                amp=bool(data.get("amp", True)),
                preprocess=PreprocessConfig.from_dict(data["preprocess"])
                if "preprocess" in data
                else DEFAULT_PREPROCESS,
                model=ModelConfig(
                    localizer=LocalizerConfig.from_dict({**LocalizerConfig().to_dict(), **model.get("localizer", {})}),
                    classifier=None
                    if model.get("classifier", {}) is None
                    else ClassifierConfig.from_dict({**ClassifierConfig().to_dict(), **model.get("classifier", {})}),
                )
                if model
                else ModelConfig(),
                augment=AugmentConfig(**data.get("augment", {})),
                phase1=Phase1Config(
                    **{**data.get("phase1", {}), "crop": tuple(data.get("phase1", {}).get("crop", Phase1Config.crop))}
                ),
                phase2=Phase2Config(**data.get("phase2", {})),
            )
        except TypeError as error:
            raise ConfigError(f"invalid training setting: {error}") from None

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


def training_and_validation_records(config: TrainConfig) -> tuple[list, list]:
    """The training cohorts' cases and the validation cases: ``config.val``'s cohorts, or else a
    seeded ``val_fraction`` of the training cases (at least one)."""
    records = [r for folder in config.train for r in read_cohort(folder).cases]
    if config.val:
        return records, [r for folder in config.val for r in read_cohort(folder).cases]
    order = np.random.default_rng([config.seed, 7]).permutation(len(records))
    held_out = set(order[: max(1, int(round(config.val_fraction * len(records))))].tolist())
    return [r for i, r in enumerate(records) if i not in held_out], [r for i, r in enumerate(records) if i in held_out]


# --------------------------------------------------------------------------- distributed
@dataclass
class Distributed:
    rank: int = 0
    world: int = 1

    @property
    def main(self) -> bool:
        return self.rank == 0

    def shard(self, items: Sequence) -> tuple[list, float]:
        """This rank's contiguous share of a global batch, and its loss weight.

        Shares differ in size by at most one. The weight ``len(share) × world / len(items)`` makes
        DDP's average of the ranks' gradients equal the gradient of the whole batch's mean loss, so
        the trajectory matches one process with the same global batch. A rank left without items
        (a last batch smaller than the world) runs the batch's first item with weight 0.
        """
        chunks = np.array_split(np.arange(len(items)), self.world)
        share = [items[i] for i in chunks[self.rank]]
        if not share:
            return [items[0]], 0.0
        return share, len(share) * self.world / len(items)

    @staticmethod
    def batches(items: Sequence, batch_size: int) -> list[list]:
        """Global batches in order (the last one may be smaller)."""
        return [list(items[i : i + batch_size]) for i in range(0, len(items), batch_size)]


def init_distributed(device: torch.device) -> Distributed:
    """Join the process group when started by ``torchrun`` (WORLD_SIZE > 1)."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return Distributed()
    if not dist.is_initialized():
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
    return Distributed(dist.get_rank(), dist.get_world_size())


# --------------------------------------------------------------------------- losses
def localization_loss(output: dict, target: torch.Tensor, cspca: torch.Tensor, config: Phase1Config) -> torch.Tensor:
    """Phase-1 loss. ``target`` [N, Z, Y, X] heatmap, ``cspca`` [N, Z, Y, X] 0/1 mask."""
    combined = output["combined"].float()
    mask = cspca.float()[:, None]
    if config.objective == "segmentation":
        probability = combined.clamp(1e-6, 1 - 1e-6)
        loss = F.binary_cross_entropy(probability, mask, weight=1.0 + config.positive_weight * mask)
        return loss + _soft_dice_loss(combined[:, 0], mask[:, 0])
    target = target[:, None]
    weight = 1.0 + config.positive_weight * (target > 0.01).float()
    loss = (weight * (combined - target) ** 2).mean()
    if config.sequence_weight > 0 and output.get("sequence_maps") is not None:
        sequences = output["sequence_maps"].float()
        loss = loss + config.sequence_weight * (weight * (sequences - target) ** 2).mean()
    if config.dice_weight > 0:
        # soft "map ≥ csPCa level" indicator against the csPCa mask
        loss = loss + config.dice_weight * _soft_dice_loss(
            (combined[:, 0] / (CSPCA_THRESHOLD + 0.1)).clamp(0, 1), mask[:, 0]
        )
    if output.get("case_logit") is not None and config.case_weight > 0:
        has_cspca = (cspca.flatten(1).amax(1) > 0).float()
        loss = loss + config.case_weight * F.binary_cross_entropy_with_logits(output["case_logit"].float(), has_cspca)
    return loss


def _soft_dice_loss(probability: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """1 − soft Dice per sample (smoothed so empty masks and empty predictions agree), averaged."""
    intersection = (probability * mask).sum(dim=(1, 2, 3))
    denominator = probability.sum(dim=(1, 2, 3)) + mask.sum(dim=(1, 2, 3))
    return (1 - (2 * intersection + 1.0) / (denominator + 1.0)).mean()


def classification_loss(output: dict, cspca: torch.Tensor, grade: torch.Tensor, grade_weight: float) -> torch.Tensor:
    """Binary cross-entropy on csPCa plus ``grade_weight`` × cross-entropy over grade groups."""
    loss = F.binary_cross_entropy_with_logits(output["logit"].float(), cspca.float())
    if grade_weight > 0:
        loss = loss + grade_weight * F.cross_entropy(output["grade_logits"].float(), grade)
    return loss


# --------------------------------------------------------------------------- checkpoints
def save_checkpoint(path: Path, model: torch.nn.Module, optimizer: torch.optim.Optimizer, state: dict) -> None:
    """Model and optimizer tensors in safetensors, everything else as JSON in its metadata."""
    tensors = {f"model.{k}": v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    optimizer_state = optimizer.state_dict()
    for index, values in optimizer_state["state"].items():
        for key, value in values.items():
            tensor = value if torch.is_tensor(value) else torch.tensor(value)
            tensors[f"optimizer.{index}.{key}"] = tensor.detach().cpu().contiguous()
    document = {**state, "optimizer_groups": optimizer_state["param_groups"]}
    with atomic_path(path) as temporary:
        save_file(tensors, str(temporary), metadata={"checkpoint": json.dumps(document)})


def load_checkpoint(path: Path, model: torch.nn.Module) -> tuple[dict, dict]:
    """Load model weights; return (state document, optimizer state_dict) for :meth:`Optimizer.load_state_dict`."""
    with safe_open(str(path), framework="pt") as handle:
        document = json.loads(handle.metadata()["checkpoint"])
        tensors = {name: handle.get_tensor(name) for name in handle.keys()}
    model.load_state_dict({k[6:]: v for k, v in tensors.items() if k.startswith("model.")})
    optimizer_state: dict = {"state": {}, "param_groups": document.pop("optimizer_groups")}
    for name, tensor in tensors.items():
        if name.startswith("optimizer."):
            _, index, key = name.split(".", 2)
            optimizer_state["state"].setdefault(int(index), {})[key] = tensor
    return document, optimizer_state


# --------------------------------------------------------------------------- validation
def picai_scores(detection_maps: Sequence[np.ndarray], labels: Sequence[np.ndarray]) -> dict[str, float]:
    """AP, AUROC and ranking score of detection maps against labels (picai-eval; undefined → 0)."""
    from LesionAILib.evaluation.picai import evaluate_arrays

    result = evaluate_arrays(
        [np.asarray(d, np.float32) for d in detection_maps],
        [np.asarray(y > 0, np.int32) for y in labels],
        [str(i) for i in range(len(labels))],
        bootstrap=0,
    )
    return {"ap": result.ap or 0.0, "auroc": result.auroc or 0.0, "score": result.score or 0.0}


# --------------------------------------------------------------------------- the trainer
class Trainer:
    """Runs phases 1 and/or 2 of a :class:`TrainConfig` in ``run_dir`` (resumable)."""

    def __init__(
        self,
        config: TrainConfig,
        run_dir: str | Path,
        events: EventLog | None = None,
        cancel: CancelToken | None = None,
        train_cases: Sequence[PreparedCase] | None = None,
        val_cases: Sequence[PreparedCase] | None = None,
        initial_model: LesionModel | None = None,
        curriculum: Curriculum | None = None,
    ):
        self.config = config
        self.run_dir = Path(run_dir)
        self.run_dir.mkdir(parents=True, exist_ok=True)
        self.device = resolve_device(config.device)
        self.distributed = init_distributed(self.device)
        if self.distributed.world > 1 and self.device.type == "cuda":
            local = int(os.environ.get("LOCAL_RANK", "0"))
            torch.cuda.set_device(local)
            self.device = torch.device("cuda", local)
        self.events = events or EventLog(self.run_dir / "progress.jsonl")
        if not self.distributed.main:
            self.events = EventLog(None)  # one log per run: rank 0 writes it
        self.cancel = cancel or CancelToken(self.run_dir / "CANCEL")
        self.train_cases = list(train_cases) if train_cases is not None else None
        self.val_cases = list(val_cases) if val_cases is not None else None
        torch.manual_seed(config.seed)
        self.model = (
            initial_model.to(self.device) if initial_model is not None else LesionModel(config.model).to(self.device)
        )
        self.use_amp = config.amp and self.device.type == "cuda"
        self.amp_dtype = torch.bfloat16 if self.use_amp and torch.cuda.is_bf16_supported() else torch.float16
        self.scaler = torch.amp.GradScaler("cuda", enabled=self.use_amp and self.amp_dtype == torch.float16)
        self.history: list[dict] = []
        self.curriculum = curriculum

    # ---------------------------------------------------------------- data
    def prepare_data(self) -> None:
        """Read the cohorts, split train/validation, and preprocess into the cache (once)."""
        if self.train_cases is not None and self.val_cases is not None:
            return
        config = self.config
        if not config.train:
            raise ConfigError("no training data: set 'train' to one or more cohort folders")
        records, val_records = training_and_validation_records(config)

        def progress(done: int, total: int) -> None:
            self.events.emit("progress", stage="prepare", done=done, total=total)

        self.events.emit("prepare", train=len(records), val=len(val_records))
        if not self.distributed.main:
            self._barrier()  # rank 0 fills the cache first; the others then read it
        self.train_cases = prepare_cases(records, config.preprocess, config.cache_dir, progress)
        self.val_cases = prepare_cases(val_records, config.preprocess, config.cache_dir, progress)
        if self.distributed.main:
            self._barrier()

    def _epoch_order(self, epoch: int, sampler: CropSampler) -> list[int]:
        """Indices into ``train_cases`` for one epoch: shuffled, or as the curriculum admits them."""
        if self.curriculum is None:
            return [int(i) for i in sampler.order(epoch)]
        position = {case.case_id: i for i, case in enumerate(self.train_cases)}
        missing = [c for c in self.curriculum.order + self.curriculum.replay if c not in position]
        if missing:
            raise ConfigError(f"curriculum names cases that are not in the training data: {', '.join(missing[:3])}")
        return [position[c] for c in self.curriculum.epoch_cases(epoch, self.config.seed)]

    # ---------------------------------------------------------------- helpers
    def _autocast(self):
        return torch.autocast("cuda", dtype=self.amp_dtype) if self.use_amp else nullcontext()

    def _ddp(self, module: torch.nn.Module) -> torch.nn.Module:
        if self.distributed.world > 1:
            from torch.nn.parallel import DistributedDataParallel

            ids = [self.device.index] if self.device.type == "cuda" else None
            return DistributedDataParallel(module, device_ids=ids, find_unused_parameters=True)
        return module

    def _step(self, loss: torch.Tensor, optimizer: torch.optim.Optimizer) -> None:
        optimizer.zero_grad(set_to_none=True)
        self.scaler.scale(loss).backward()
        self.scaler.unscale_(optimizer)
        torch.nn.utils.clip_grad_norm_([p for g in optimizer.param_groups for p in g["params"]], 5.0)
        self.scaler.step(optimizer)
        self.scaler.update()

    def _global_mean(self, value: float, count: int) -> float:
        if self.distributed.world == 1:
            return value / max(count, 1)
        packed = torch.tensor([value, float(count)], dtype=torch.float64)
        dist.all_reduce(packed)
        return float(packed[0] / packed[1].clamp(min=1))

    def _checkpoint_path(self) -> Path:
        return self.run_dir / CHECKPOINT

    def _save_checkpoint(self, optimizer, state: dict) -> None:
        if self.distributed.main:
            save_checkpoint(
                self._checkpoint_path(),
                self.model,
                optimizer,
                {**state, "config": self.config.digest(), "history": self.history},
            )

    def _checkpoint_document(self) -> dict | None:
        path = self._checkpoint_path()
        if not path.exists():
            return None
        with safe_open(str(path), framework="pt") as handle:
            return json.loads(handle.metadata()["checkpoint"])

    def _barrier(self) -> None:
        if self.distributed.world > 1:
            dist.barrier()

    def _resume(self, optimizer, phase: str) -> dict | None:
        """Load the checkpoint of this phase if the run was interrupted; None to start fresh."""
        path = self._checkpoint_path()
        document = self._checkpoint_document()
        if document is None:
            return None
        if document.get("config") != self.config.digest():
            raise ConfigError(
                "the run folder holds a checkpoint of a different configuration",
                path.parent,
                "use a new --run folder, or delete the old checkpoint to start over",
            )
        if document.get("phase") != phase:
            return None
        state, optimizer_state = load_checkpoint(path, self.model)
        optimizer.load_state_dict(optimizer_state)
        self.history = state.get("history", [])
        self.events.emit("resume", phase=phase, epoch=state["epoch"])
        return state

    def _save_best(self, name: str, metrics: dict, phase: str) -> None:
        if self.distributed.main:
            save_model(self.model, self.metadata(metrics, phase), self.run_dir / name)

    def _restore_best(self, name: str) -> None:
        """Load the best weights of a phase; after phase 1 only the localization network counts."""
        from LesionAILib.models.modelfile import load_model

        self._barrier()  # rank 0 may have just written it
        path = self.run_dir / name
        if path.exists():
            best, _ = load_model(path, self.device)
            if name == "best-phase1.safetensors":
                self.model.localizer.load_state_dict(best.localizer.state_dict())
            else:
                self.model.load_state_dict(best.state_dict())

    def metadata(self, metrics: dict, phase: str) -> ModelMetadata:
        """Model-file metadata describing this run."""
        synthetic = all((Path(folder) / "cohort.json").exists() for folder in self.config.train)
        return ModelMetadata(
            name=self.config.name,
            architecture=self.model.config,
            preprocess=self.config.preprocess,
            description=self.config.description,
            training={
                "config": self.config.to_dict(),
                "phases": phase,
                "train_cases": len(self.train_cases or []),
                "val_cases": len(self.val_cases or []),
                "sites": sorted({c.site for c in self.train_cases or []}),
                "epochs": [h for h in self.history if h.get("event") == "epoch"][-1:],
                "train_seconds": round(sum(h.get("seconds", 0.0) for h in self.history), 1),
                "timed_phases": sorted({h["phase"] for h in self.history if "seconds" in h}),
                "command": " ".join(["lesionai", *sys.argv[1:]]) if sys.argv and "lesionai" in sys.argv[0] else "",
            },
            metrics=metrics,
            synthetic_training_data=synthetic,
        )

    # ---------------------------------------------------------------- validation
    @torch.no_grad()
    def validate(self, use_classifier: bool) -> dict[str, float]:
        """picai-eval AP / AUROC / score on the validation cases (full volumes, model grid)."""
        from LesionAILib.evaluation.validation import localization_only, prepared_detections
        from LesionAILib.inference.analyzer import Analyzer

        self.model.eval()
        analyzer = Analyzer((self.model, self.metadata({}, "validation")), device=self.device)
        if not use_classifier:
            analyzer = localization_only(analyzer)
        detections, labels, _ = prepared_detections(analyzer, self.val_cases)
        self.model.train()
        return picai_scores(detections, labels)

    def _epoch_validation(self, use_classifier: bool) -> dict[str, float]:
        """Validation after an epoch; empty when switched off or without validation cases."""
        if not self.config.validate or not self.val_cases:
            return {}
        return self.validate(use_classifier)

    def _end_epoch(
        self,
        phase: int,
        epoch: int,
        last: int,
        patience: int,
        started: float,
        train_loss: float,
        state: dict,
        optimizer,
        extra: dict,
    ) -> bool:
        """Validate, log, keep the best model, checkpoint; return whether to stop early."""
        metrics = self._epoch_validation(use_classifier=phase == 2)
        record = {
            "event": "epoch",
            "phase": phase,
            "epoch": epoch,
            "seconds": time.perf_counter() - started,
            **extra,
            "train_loss": train_loss,
            **{f"val_{k}": v for k, v in metrics.items()},
        }
        self.history.append(record)
        self.events.emit("epoch", **{k: v for k, v in record.items() if k != "event"})
        if metrics.get("score", state["best"] + 1) > state["best"]:  # without validation: the last epoch
            state.update(best=metrics.get("score", -1.0), best_epoch=epoch, best_metrics=metrics)
            self._save_best(
                f"best-phase{phase}.safetensors",
                {f"phase{phase}_validation": metrics, f"phase{phase}_best_epoch": epoch},
                "1" if phase == 1 else "1+2",
            )
        state["epoch"] = epoch
        stop = epoch - state["best_epoch"] >= patience
        state["done"] = stop or epoch == last
        self._save_checkpoint(optimizer, {**state, "phase": str(phase)})
        if stop:
            self.events.emit("early_stop", phase=phase, epoch=epoch, best_epoch=state["best_epoch"])
        return stop

    # ---------------------------------------------------------------- phase 1
    def train_phase1(self) -> dict:
        config, p1 = self.config, self.config.phase1
        model = self._ddp(self.model.localizer)
        optimizer = torch.optim.AdamW(self.model.localizer.parameters(), lr=p1.lr, weight_decay=p1.weight_decay)
        summary = self.run_dir / "phase1.json"
        if summary.exists() and json.loads(summary.read_text()).get("config") == self.config.digest():
            self._restore_best("best-phase1.safetensors")  # phase 1 finished in an earlier session
            return json.loads(summary.read_text())["state"]
        state = self._resume(optimizer, "1") or {"epoch": 0, "best": -1.0, "best_epoch": 0, "done": False}
        sampler = CropSampler(self.train_cases, p1.crop, p1.lesion_fraction, config.seed)
        spacing = config.preprocess.spacing
        self.model.train()
        for epoch in range(state["epoch"] + 1, p1.epochs + 1):
            started = time.perf_counter()
            torch.manual_seed(config.seed * 100_003 + epoch)
            for group in optimizer.param_groups:
                group["lr"] = p1.lr * 0.5 * (1 + np.cos(np.pi * (epoch - 1) / p1.epochs))
            items = [(int(i), draw) for draw in range(p1.crops_per_case) for i in self._epoch_order(epoch, sampler)]
            batches = self.distributed.batches(items, p1.batch_size)
            total_loss, count = 0.0, 0
            for batch_index, batch in enumerate(batches):
                self.cancel.check()
                local, weight = self.distributed.shard(batch)
                samples = [sampler.sample(i, epoch, draw) for i, draw in local]
                images = torch.from_numpy(np.stack([s["image"] for s in samples])).to(self.device)
                target = torch.from_numpy(np.stack([s["target"] for s in samples]))[:, None].to(self.device)
                cspca = torch.from_numpy(np.stack([s["cspca"] for s in samples]))[:, None].to(self.device)
                seeds = [(config.seed, epoch, i, draw) for i, draw in local]
                images, target, cspca = augment_batch(
                    images, target, cspca, config.preprocess.roles, spacing, config.augment, seeds
                )
                with self._autocast():
                    output = model(images)
                loss = localization_loss(output, target[:, 0], cspca[:, 0], p1)
                self._step(loss * weight, optimizer)
                value = float(loss.detach())
                total_loss += value * len(local) * (weight > 0)
                count += len(local) * (weight > 0)
                self.events.emit("progress", phase=1, epoch=epoch, done=batch_index + 1, total=len(batches), loss=value)
            train_loss = self._global_mean(total_loss, count)
            if self._end_epoch(1, epoch, p1.epochs, p1.patience, started, train_loss, state, optimizer, {}):
                break
        self._restore_best("best-phase1.safetensors")
        if self.distributed.main:
            write_json_atomic(summary, {"config": self.config.digest(), "state": state})
        self.events.emit("phase_done", phase=1, best_epoch=state["best_epoch"], best_score=state["best"])
        return state

    # ---------------------------------------------------------------- phase 2
    @torch.no_grad()
    def mine_candidates(self) -> list[dict]:
        """Phase-1 candidates and ground-truth lesions of every training case, with their labels.

        Also stores each case's combined map (float16, model grid) in ``run_dir/maps``.
        """
        cache = self.run_dir / "candidates.json"
        if not self.distributed.main:
            self._barrier()  # rank 0 mines and writes; the others read its result
        if cache.exists():
            data = json.loads(cache.read_text())
            if data.get("config") == self.config.digest():
                if self.distributed.main:
                    self._barrier()
                return data["samples"]
        maps_dir = self.run_dir / "maps"
        maps_dir.mkdir(exist_ok=True)
        self.model.eval()
        samples = []
        for index, case in enumerate(self.train_cases):
            self.cancel.check()
            image = torch.from_numpy(np.array(case.image()))[None].to(self.device)
            with self._autocast():
                combined = self.model.localizer(image)["combined"][0, 0].float().cpu().numpy()
            write_npy_atomic(maps_dir / f"{case.case_id}.npy", combined.astype(np.float16))
            candidates, labels = extract_candidates(
                combined, Grid.from_dict(case.grid), max_candidates=self.config.phase2.max_candidates
            )
            instances = case.instances()
            grades = {lesion.lesion_id: lesion.grade_group for lesion in case.lesions}
            for candidate in candidates:
                overlap = instances[labels == candidate.candidate_id]
                overlap = overlap[overlap > 0]
                grade = grades.get(int(np.bincount(overlap).argmax()), 0) if overlap.size else 0
                samples.append(
                    {"case": index, "center": list(candidate.center_index), "grade": int(grade), "source": "candidate"}
                )
            for lesion in case.lesions:
                samples.append(
                    {
                        "case": index,
                        "center": list(lesion.center_index),
                        "grade": lesion.grade_group,
                        "source": "lesion",
                    }
                )
            self.events.emit("progress", phase=2, stage="mine", done=index + 1, total=len(self.train_cases))
        self.model.train()
        write_json_atomic(cache, {"config": self.config.digest(), "samples": samples})
        self._barrier()
        return samples

    def _classifier_batch(self, samples: Sequence[dict], epoch: int, indices: Sequence[int]):
        crop = self.model.config.classifier.crop
        images, maps = [], []
        for sample in samples:
            case = self.train_cases[sample["case"]]
            images.append(extract_crop(case.image(), sample["center"], crop))
            combined = np.load(self.run_dir / "maps" / f"{case.case_id}.npy", mmap_mode="r")
            maps.append(extract_crop(combined, sample["center"], crop)[None].astype(np.float32))
        images = torch.from_numpy(np.stack(images)).to(self.device)
        maps = torch.from_numpy(np.stack(maps)).to(self.device)
        empty = torch.zeros_like(maps, dtype=torch.uint8)
        seeds = [(self.config.seed, 2, epoch, i) for i in indices]
        images, maps, _ = augment_batch(
            images,
            maps,
            empty,
            self.config.preprocess.roles,
            self.config.preprocess.spacing,
            self.config.augment,
            seeds,
        )
        grade = torch.tensor([s["grade"] for s in samples], device=self.device)
        return torch.cat([images, maps], 1), (grade >= 2).float(), grade

    def train_phase2(self) -> dict:
        if self.model.classifier is None:
            raise ConfigError("the model configuration has no classifier; phase 2 needs one")
        config, p2 = self.config, self.config.phase2
        samples = self.mine_candidates()
        total_epochs = p2.epochs + p2.joint_epochs

        def make_optimizer(joint: bool) -> torch.optim.Optimizer:
            parameters = self.model.parameters() if joint else self.model.classifier.parameters()
            return torch.optim.AdamW(parameters, lr=p2.joint_lr if joint else p2.lr, weight_decay=p2.weight_decay)

        previous = self._checkpoint_document()
        # the checkpoint of epoch e holds the optimizer that trained epoch e
        optimizer_joint = bool(previous and previous.get("phase") == "2" and previous["epoch"] > p2.epochs)
        optimizer = make_optimizer(optimizer_joint)
        state = self._resume(optimizer, "2") or {"epoch": 0, "best": -1.0, "best_epoch": 0, "done": False}
        if state.get("done"):
            self._restore_best("best-phase2.safetensors")
            return state
        localizer_sampler = CropSampler(
            self.train_cases, config.phase1.crop, config.phase1.lesion_fraction, config.seed + 1
        )
        self.model.train()
        model, wrapped_joint = None, None
        for epoch in range(state["epoch"] + 1, total_epochs + 1):
            started = time.perf_counter()
            torch.manual_seed(config.seed * 100_003 + 50_000 + epoch)
            joint = epoch > p2.epochs
            for parameter in self.model.encoder_parameters():
                parameter.requires_grad_(joint)
            if joint and not optimizer_joint:
                optimizer, optimizer_joint = make_optimizer(True), True  # joint fine-tune: every parameter trains
            if model is None or wrapped_joint != joint:
                model, wrapped_joint = self._ddp(self.model), joint  # (re)hook the parameters that now train
            order = np.random.default_rng([config.seed, epoch, 2]).permutation(len(samples)).tolist()
            if self.curriculum is not None:
                admitted = set(self._epoch_order(epoch, localizer_sampler))
                order = [i for i in order if samples[i]["case"] in admitted]
            batches = self.distributed.batches(order, p2.batch_size)
            total_loss, count = 0.0, 0
            for batch_index, batch in enumerate(batches):
                self.cancel.check()
                local, weight = self.distributed.shard(batch)
                crops, cspca, grade = self._classifier_batch([samples[i] for i in local], epoch, local)
                images, loc = None, []
                if joint:  # the localization loss keeps the shared encoder a good localizer
                    picks = [(int(i) % len(self.train_cases), batch_index) for i in local]
                    loc = [localizer_sampler.sample(i, epoch, draw) for i, draw in picks]
                    images = torch.from_numpy(np.stack([s["image"] for s in loc])).to(self.device)
                with self._autocast():
                    output = model(images=images, crops=crops)
                loss = classification_loss(output, cspca, grade, p2.grade_weight)
                if joint:
                    loss = loss + localization_loss(
                        output,
                        torch.from_numpy(np.stack([s["target"] for s in loc])).to(self.device),
                        torch.from_numpy(np.stack([s["cspca"] for s in loc])).to(self.device),
                        config.phase1,
                    )
                self._step(loss * weight, optimizer)
                value = float(loss.detach())
                total_loss += value * len(local) * (weight > 0)
                count += len(local) * (weight > 0)
                self.events.emit("progress", phase=2, epoch=epoch, done=batch_index + 1, total=len(batches), loss=value)
            train_loss = self._global_mean(total_loss, count)
            if self._end_epoch(
                2, epoch, total_epochs, p2.patience, started, train_loss, state, optimizer, {"joint": joint}
            ):
                break
        self._restore_best("best-phase2.safetensors")
        self.events.emit("phase_done", phase=2, best_epoch=state["best_epoch"], best_score=state["best"])
        return state

    # ---------------------------------------------------------------- entry point
    def run(self, phases: str = "both", output: str | Path | None = None) -> Path:
        """Run ``phases`` (``"1"``, ``"2"`` or ``"both"``) and write the final model file.

        Returns the model path (``output`` or ``run_dir/model.safetensors``).
        """
        if phases not in ("1", "2", "both"):
            raise ConfigError(f"phase must be 1, 2 or both, got {phases!r}")
        with self.cancel.installed():
            self.prepare_data()
            self.events.emit(
                "start",
                phases=phases,
                train=len(self.train_cases),
                val=len(self.val_cases),
                device=str(self.device),
                world=self.distributed.world,
            )
            metrics: dict = {}
            if phases in ("1", "both"):
                state = self.train_phase1()
                metrics.update(phase1_validation=state.get("best_metrics"), phase1_best_epoch=state.get("best_epoch"))
            elif (self.run_dir / "best-phase1.safetensors").exists():
                self._restore_best("best-phase1.safetensors")
            if phases in ("2", "both"):
                state = self.train_phase2()
                metrics.update(phase2_validation=state.get("best_metrics"), phase2_best_epoch=state.get("best_epoch"))
            output = Path(output) if output else self.run_dir / "model.safetensors"
            if self.distributed.main:
                save_model(self.model, self.metadata(metrics, phases), output)
            self.events.emit("done", model=str(output), metrics=metrics)
        self.events.close()
        return output


def train(
    config: TrainConfig,
    run_dir: str | Path,
    phases: str = "both",
    output: str | Path | None = None,
    events: EventLog | None = None,
) -> Path:
    """Train a model (see :class:`Trainer`); returns the model file path."""
    return Trainer(config, run_dir, events).run(phases, output)

"""Two-phase joint training of the localization and classification networks.

**Phase 1** trains the localization network on random crops (biased towards lesions) to regress
the score-carrying heatmap (:mod:`LesionAILib.training.targets`) with the losses of
:mod:`LesionAILib.training.losses`.

**Phase 2** trains the classification network on top of the phase-1 weights, on candidates mined
with the phase-1 network (:mod:`LesionAILib.training.mining`). The classifier sees the image
channels plus the combined map around the candidate and the shared localization encoder's
features; the encoder is frozen for ``phase2.epochs`` epochs, then optionally unfrozen for
``phase2.joint_epochs`` epochs of joint fine-tuning with both losses.

Both phases run the same batch loop: deterministic seeds (crop ``i`` of epoch ``e`` depends only
on ``(seed, e, i)``), augmentation on tensors (:mod:`LesionAILib.training.augmentation`), mixed
precision on CUDA, a checkpoint after every epoch and resume after an interruption
(:mod:`LesionAILib.training.checkpoints`), early stopping on the validation ranking score
((AUROC + AP) / 2, picai-eval), JSON-lines events and a progress bar, data read through memory
maps (never the whole dataset in RAM), and DistributedDataParallel under ``torchrun``
(:mod:`LesionAILib.training.distributed`).
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager, nullcontext
from pathlib import Path

import numpy as np
import torch

from LesionAILib.devices import resolve_device
from LesionAILib.errors import ConfigError
from LesionAILib.jobs.events import CancelToken, EventLog
from LesionAILib.models.modelfile import ModelMetadata, load_model, save_model
from LesionAILib.models.networks import LesionModel
from LesionAILib.training.augmentation import augment_batch
from LesionAILib.training.checkpoints import PhaseState, RunCheckpoints
from LesionAILib.training.cohorts import CropSampler, PreparedCase, prepare_cases
from LesionAILib.training.config import TrainConfig
from LesionAILib.training.curriculum import Curriculum
from LesionAILib.training.distributed import init_distributed
from LesionAILib.training.phases import ClassificationPhase, LocalizationPhase
from LesionAILib.training.splits import training_and_validation_records

# batch loss of the shard ``local`` of batch ``batch_index``
BatchLoss = Callable[[list, int], torch.Tensor]


def picai_scores(detection_maps: Sequence[np.ndarray], labels: Sequence[np.ndarray]) -> dict[str, float]:
    """AP, AUROC and ranking score of detection maps against labels (picai-eval; undefined → 0)."""
    from LesionAILib.evaluation.metrics import evaluate_arrays

    result = evaluate_arrays(
        [np.asarray(d, np.float32) for d in detection_maps],
        [np.asarray(y > 0, np.int32) for y in labels],
        [str(i) for i in range(len(labels))],
        bootstrap=0,
    )
    return {"ap": result.ap or 0.0, "auroc": result.auroc or 0.0, "score": result.score or 0.0}


class MixedPrecision:
    """Autocast and gradient scaling on CUDA (bfloat16 where supported, else float16 with a
    gradient scaler); plain float32 on the CPU. Gradients are clipped to norm 5."""

    def __init__(self, device: torch.device, enabled: bool):
        self.enabled = enabled and device.type == "cuda"
        self.dtype = torch.bfloat16 if self.enabled and torch.cuda.is_bf16_supported() else torch.float16
        self.scaler = torch.amp.GradScaler("cuda", enabled=self.enabled and self.dtype == torch.float16)

    def autocast(self) -> AbstractContextManager:
        return torch.autocast("cuda", dtype=self.dtype) if self.enabled else nullcontext()

    def step(self, loss: torch.Tensor, optimizer: torch.optim.Optimizer) -> None:
        optimizer.zero_grad(set_to_none=True)
        self.scaler.scale(loss).backward()
        self.scaler.unscale_(optimizer)
        torch.nn.utils.clip_grad_norm_([p for g in optimizer.param_groups for p in g["params"]], 5.0)
        self.scaler.step(optimizer)
        self.scaler.update()


def run_metadata(
    config: TrainConfig,
    model: LesionModel,
    train_cases: Sequence[PreparedCase],
    val_cases: Sequence[PreparedCase],
    history: list[dict],
    metrics: dict,
    phases: str,
) -> ModelMetadata:
    """Model-file metadata describing a run (configuration, data, last epoch, time, command)."""
    synthetic = all((Path(folder) / "cohort.json").exists() for folder in config.train)
    return ModelMetadata(
        name=config.name,
        architecture=model.config,
        preprocess=config.preprocess,
        description=config.description,
        training={
            "config": config.to_dict(),
            "phases": phases,
            "train_cases": len(train_cases),
            "val_cases": len(val_cases),
            "sites": sorted({c.site for c in train_cases}),
            "epochs": [h for h in history if h.get("event") == "epoch"][-1:],
            "train_seconds": round(sum(h.get("seconds", 0.0) for h in history), 1),
            "timed_phases": sorted({h["phase"] for h in history if "seconds" in h}),
            "command": " ".join(["lesionai", *sys.argv[1:]]) if sys.argv and "lesionai" in sys.argv[0] else "",
        },
        metrics=metrics,
        synthetic_training_data=synthetic,
    )


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
        self.distributed, self.device = init_distributed(resolve_device(config.device))
        self.events = events or EventLog(self.run_dir / "progress.jsonl")
        if not self.distributed.main:
            self.events = EventLog(None)  # one log per run: rank 0 writes it
        self.cancel = cancel or CancelToken(self.run_dir / "CANCEL")
        self.checkpoints = RunCheckpoints(self.run_dir, config.digest(), writer=self.distributed.main)
        self.train_cases = list(train_cases) if train_cases is not None else None
        self.val_cases = list(val_cases) if val_cases is not None else None
        torch.manual_seed(config.seed)
        self.model = (initial_model if initial_model is not None else LesionModel(config.model)).to(self.device)
        self.precision = MixedPrecision(self.device, config.amp)
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
        with self.distributed.main_first():  # rank 0 fills the cache; the others then read it
            self.train_cases = prepare_cases(records, config.preprocess, config.cache_dir, progress)
            self.val_cases = prepare_cases(val_records, config.preprocess, config.cache_dir, progress)

    def epoch_order(self, epoch: int, sampler: CropSampler) -> list[int]:
        """Indices into ``train_cases`` for one epoch: shuffled, or as the curriculum admits them."""
        if self.curriculum is None:
            return [int(i) for i in sampler.order(epoch)]
        return self.curriculum.epoch_indices(epoch, self.config.seed, [c.case_id for c in self.train_cases])

    # ---------------------------------------------------------------- state on disk
    def resume(self, optimizer: torch.optim.Optimizer, phase: str) -> PhaseState:
        """The checkpointed state of ``phase`` after an interruption, or a fresh one."""
        resumed = self.checkpoints.resume(self.model, optimizer, phase)
        if resumed is None:
            return PhaseState()
        state, self.history = resumed
        self.events.emit("resume", phase=phase, epoch=state.epoch)
        return state

    def metadata(self, metrics: dict, phases: str) -> ModelMetadata:
        return run_metadata(
            self.config, self.model, self.train_cases or [], self.val_cases or [], self.history, metrics, phases
        )

    def restore_best(self, phase: int) -> None:
        """Load the best weights of a phase; after phase 1 only the localization network counts."""
        self.distributed.barrier()  # rank 0 may have just written it
        path = self.run_dir / f"best-phase{phase}.safetensors"
        if path.exists():
            best, _ = load_model(path, self.device)
            if phase == 1:
                self.model.localizer.load_state_dict(best.localizer.state_dict())
            else:
                self.model.load_state_dict(best.state_dict())

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

    # ---------------------------------------------------------------- the loop
    def train_epoch(
        self, phase: int, epoch: int, batches: list[list], optimizer: torch.optim.Optimizer, batch_loss: BatchLoss
    ) -> float:
        """One pass over the global ``batches``; returns the mean training loss over all ranks."""
        total_loss, count = 0.0, 0
        for batch_index, batch in enumerate(batches):
            self.cancel.check()
            local, weight = self.distributed.shard(batch)
            loss = batch_loss(local, batch_index)
            self.precision.step(loss * weight, optimizer)
            value = float(loss.detach())
            total_loss += value * len(local) * (weight > 0)
            count += len(local) * (weight > 0)
            self.events.emit("progress", phase=phase, epoch=epoch, done=batch_index + 1, total=len(batches), loss=value)
        return self.distributed.global_mean(total_loss, count)

    def end_epoch(
        self,
        phase: int,
        epoch: int,
        state: PhaseState,
        optimizer: torch.optim.Optimizer,
        started: float,
        train_loss: float,
        extra: dict | None = None,
    ) -> bool:
        """Validate, log, keep the best model, checkpoint; return whether to stop early."""
        settings = self.config.phase1 if phase == 1 else self.config.phase2
        last = settings.epochs + (0 if phase == 1 else self.config.phase2.joint_epochs)
        metrics = self.validate(use_classifier=phase == 2) if self.config.validate and self.val_cases else {}
        record = {
            "event": "epoch",
            "phase": phase,
            "epoch": epoch,
            "seconds": time.perf_counter() - started,
            **(extra or {}),
            "train_loss": train_loss,
            **{f"val_{k}": v for k, v in metrics.items()},
        }
        self.history.append(record)
        self.events.emit("epoch", **{k: v for k, v in record.items() if k != "event"})
        if metrics.get("score", state.best + 1) > state.best:  # without validation: the last epoch
            state.best, state.best_epoch, state.best_metrics = metrics.get("score", -1.0), epoch, metrics
            if self.distributed.main:
                best = {f"phase{phase}_validation": metrics, f"phase{phase}_best_epoch": epoch}
                path = self.run_dir / f"best-phase{phase}.safetensors"
                save_model(self.model, self.metadata(best, "1" if phase == 1 else "1+2"), path)
        state.epoch = epoch
        # while a curriculum still admits cases, patience does not stop phase 1: every case trains
        admitting = phase == 1 and self.curriculum is not None and not self.curriculum.complete(epoch)
        stop = epoch - state.best_epoch >= settings.patience and not admitting
        state.done = stop or epoch == last
        self.checkpoints.save(self.model, optimizer, str(phase), state, self.history)
        if stop:
            self.events.emit("early_stop", phase=phase, epoch=epoch, best_epoch=state.best_epoch)
        return stop

    def augment(
        self, images: torch.Tensor, maps: torch.Tensor, masks: torch.Tensor, seeds: list[tuple]
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        preprocess = self.config.preprocess
        return augment_batch(images, maps, masks, preprocess.roles, preprocess.spacing, self.config.augment, seeds)

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
                state = LocalizationPhase(self).run()
                metrics.update(phase1_validation=state.best_metrics, phase1_best_epoch=state.best_epoch)
            elif (self.run_dir / "best-phase1.safetensors").exists():
                self.restore_best(1)
            if phases in ("2", "both"):
                state = ClassificationPhase(self).run()
                metrics.update(phase2_validation=state.best_metrics, phase2_best_epoch=state.best_epoch)
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

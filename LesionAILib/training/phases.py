"""The two training phases: localization on lesion-biased crops, then classification on mined candidates.

Each phase sets up its epochs (learning rate, frozen or trained encoder, which samples, in which
order) and says what the loss of one batch shard is; the batch loop, the end of an epoch and the
state on disk are the :class:`~LesionAILib.training.trainer.Trainer`'s, shared by both.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Sequence
from functools import partial
from typing import TYPE_CHECKING

import numpy as np
import torch

from LesionAILib.errors import ConfigError
from LesionAILib.training.checkpoints import PhaseState
from LesionAILib.training.cohorts import CropSampler
from LesionAILib.training.losses import classification_loss, localization_loss
from LesionAILib.training.mining import TrainingCandidate, candidate_crops, mine_candidates, read_mined, write_mined

if TYPE_CHECKING:
    from LesionAILib.training.trainer import Trainer


def localization_crops(
    sampler: CropSampler, items: Sequence[tuple[int, int]], epoch: int, device: torch.device
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Crops ``(case index, draw)`` of ``epoch``: images [N, C, z, y, x] float32, heatmap target
    [N, 1, z, y, x] float32 and csPCa mask [N, 1, z, y, x] uint8, on ``device``."""
    samples = [sampler.sample(i, epoch, draw) for i, draw in items]
    images = torch.from_numpy(np.stack([s["image"] for s in samples])).to(device)
    target = torch.from_numpy(np.stack([s["target"] for s in samples]))[:, None].to(device)
    cspca = torch.from_numpy(np.stack([s["cspca"] for s in samples]))[:, None].to(device)
    return images, target, cspca


def crop_items(order: Sequence[int], crops_per_case: int) -> list[tuple[int, int]]:
    """The ``(case index, draw)`` crops of one phase-1 epoch: ``crops_per_case`` passes over
    ``order``; each listing of a case gets its own draw, so a case listed twice (a curriculum
    repeating its admitted cases) gives two different crops."""
    listed: Counter[int] = Counter()
    items = []
    for _ in range(crops_per_case):
        for index in order:
            items.append((int(index), listed[int(index)]))
            listed[int(index)] += 1
    return items


class LocalizationPhase:
    """Phase 1: the localization network regresses the heatmap on random crops (cosine learning rate)."""

    def __init__(self, trainer: Trainer):
        self.trainer = trainer
        self.config = trainer.config

    def batch_loss(
        self, model: torch.nn.Module, sampler: CropSampler, epoch: int, local: list[tuple[int, int]], batch_index: int
    ) -> torch.Tensor:
        """Loss of the crops ``local`` = (case index, draw) of ``epoch``."""
        trainer = self.trainer
        crops = localization_crops(sampler, local, epoch, trainer.device)
        images, target, cspca = trainer.augment(*crops, [(self.config.seed, epoch, i, draw) for i, draw in local])
        with trainer.precision.autocast():
            output = model(images)
        return localization_loss(output, target[:, 0], cspca[:, 0], self.config.phase1)

    def run(self) -> PhaseState:
        trainer, config, p1 = self.trainer, self.config, self.config.phase1
        localizer = trainer.model.localizer
        model = trainer.distributed.wrap(localizer, trainer.device)
        optimizer = torch.optim.AdamW(localizer.parameters(), lr=p1.lr, weight_decay=p1.weight_decay)
        finished = trainer.checkpoints.finished_phase1()
        if finished is not None:
            trainer.restore_best(1)  # phase 1 finished in an earlier session
            return finished
        if trainer.curriculum is not None and trainer.curriculum.epochs != p1.epochs:
            raise ConfigError(
                f"the curriculum ramps over {trainer.curriculum.epochs} epochs but phase 1 has {p1.epochs}"
            )
        state = trainer.resume(optimizer, "1")
        sampler = CropSampler(trainer.train_cases, p1.crop, p1.lesion_fraction, config.seed)
        trainer.model.train()
        for epoch in range(state.epoch + 1, p1.epochs + 1):
            started = time.perf_counter()
            torch.manual_seed(config.seed * 100_003 + epoch)
            for group in optimizer.param_groups:
                group["lr"] = p1.lr * 0.5 * (1 + np.cos(np.pi * (epoch - 1) / p1.epochs))
            items = crop_items(trainer.epoch_order(epoch, sampler), p1.crops_per_case)
            batches = trainer.distributed.batches(items, p1.batch_size)
            train_loss = trainer.train_epoch(
                1, epoch, batches, optimizer, partial(self.batch_loss, model, sampler, epoch)
            )
            if trainer.end_epoch(1, epoch, state, optimizer, started, train_loss):
                break
        trainer.restore_best(1)
        trainer.checkpoints.record_phase1(state)
        trainer.events.emit("phase_done", phase=1, best_epoch=state.best_epoch, best_score=state.best)
        return state


class ClassificationPhase:
    """Phase 2: the classifier on mined candidates, encoder frozen; then, optionally, joint fine-tuning."""

    def __init__(self, trainer: Trainer):
        self.trainer = trainer
        self.config = trainer.config

    def mine(self) -> list[TrainingCandidate]:
        """Phase-1 candidates and ground-truth lesions of every training case, with their grades
        (:mod:`LesionAILib.training.mining`); mined once per configuration, by rank 0."""
        trainer = self.trainer

        def progress(done: int, total: int) -> None:
            trainer.events.emit("progress", phase=2, stage="mine", done=done, total=total)

        with trainer.distributed.main_first():  # rank 0 mines and writes; the others read its result
            samples = read_mined(trainer.run_dir, self.config.digest())
            if samples is None:
                trainer.model.eval()
                samples = mine_candidates(
                    trainer.model.localizer,
                    trainer.train_cases,
                    trainer.run_dir,
                    self.config.phase2.max_candidates,
                    trainer.device,
                    trainer.precision.autocast,
                    trainer.cancel,
                    progress,
                )
                trainer.model.train()
                write_mined(trainer.run_dir, self.config.digest(), samples)
        return samples

    def batch_loss(
        self,
        model: torch.nn.Module,
        samples: list[TrainingCandidate],
        localizer_sampler: CropSampler,
        epoch: int,
        joint: bool,
        local: list[int],
        batch_index: int,
    ) -> torch.Tensor:
        """Loss of the candidates ``samples[i]`` for ``i`` in ``local``; in a ``joint`` epoch plus the
        localization loss of as many crops, which keeps the shared encoder a good localizer."""
        trainer, device = self.trainer, self.trainer.device
        chosen = [samples[i] for i in local]
        images, maps = candidate_crops(
            trainer.train_cases, trainer.run_dir, chosen, trainer.model.config.classifier.crop
        )
        images, maps, _ = trainer.augment(
            images.to(device),
            maps.to(device),
            torch.zeros(maps.shape, dtype=torch.uint8, device=device),
            [(self.config.seed, 2, epoch, i) for i in local],
        )
        grade = torch.tensor([s.grade for s in chosen], device=device)
        whole = target = cspca = None
        if joint:
            picks = [(int(i) % len(trainer.train_cases), batch_index) for i in local]
            whole, target, cspca = localization_crops(localizer_sampler, picks, epoch, device)
        with trainer.precision.autocast():
            output = model(images=whole, crops=torch.cat([images, maps], 1))
        loss = classification_loss(output, (grade >= 2).float(), grade, self.config.phase2.grade_weight)
        if joint:
            loss = loss + localization_loss(output, target[:, 0], cspca[:, 0], self.config.phase1)
        return loss

    def epoch_samples(self, samples: list[TrainingCandidate], epoch: int) -> list[int]:
        """Indices into ``samples`` that classifier epoch ``epoch`` trains on, in order.

        Every candidate of every training case, shuffled — with a curriculum, of every case it
        orders plus the epoch's replay draw (the ramp is phase 1's and is not restarted). With
        ``phase2.samples_per_epoch`` set, exactly that many: further shuffled passes over the
        candidates, cut at that count, so the classifier's budget does not depend on how many
        candidates the mining found (every candidate is seen if the count is at least theirs).
        """
        trainer, config = self.trainer, self.config
        eligible = list(range(len(samples)))
        if trainer.curriculum is not None:
            ids = [case.case_id for case in trainer.train_cases]
            cases = set(trainer.curriculum.classifier_indices(epoch, config.seed, ids))
            eligible = [i for i in eligible if samples[i].case in cases]
        if not eligible:
            return []
        rng = np.random.default_rng([config.seed, epoch, 2])
        wanted = config.phase2.samples_per_epoch or len(eligible)
        order: list[int] = []
        while len(order) < wanted:
            order += [eligible[i] for i in rng.permutation(len(eligible))]
        return order[:wanted]

    def _optimizer(self, joint: bool) -> torch.optim.Optimizer:
        """AdamW over the classifier, or over every parameter for joint fine-tuning."""
        p2, model = self.config.phase2, self.trainer.model
        parameters = model.parameters() if joint else model.classifier.parameters()
        return torch.optim.AdamW(parameters, lr=p2.joint_lr if joint else p2.lr, weight_decay=p2.weight_decay)

    def run(self) -> PhaseState:
        trainer, config, p2 = self.trainer, self.config, self.config.phase2
        if trainer.model.classifier is None:
            raise ConfigError("the model configuration has no classifier; phase 2 needs one")
        samples = self.mine()
        previous = trainer.checkpoints.document()
        # the checkpoint of epoch e holds the optimizer that trained epoch e
        optimizer_joint = bool(previous and previous.get("phase") == "2" and previous["epoch"] > p2.epochs)
        optimizer = self._optimizer(optimizer_joint)
        state = trainer.resume(optimizer, "2")
        if state.done:
            trainer.restore_best(2)
            return state
        phase1 = config.phase1
        localizer_sampler = CropSampler(trainer.train_cases, phase1.crop, phase1.lesion_fraction, config.seed + 1)
        trainer.model.train()
        model, wrapped_joint = None, None
        for epoch in range(state.epoch + 1, p2.epochs + p2.joint_epochs + 1):
            started = time.perf_counter()
            torch.manual_seed(config.seed * 100_003 + 50_000 + epoch)
            joint = epoch > p2.epochs
            for parameter in trainer.model.encoder_parameters():
                parameter.requires_grad_(joint)
            if joint and not optimizer_joint:
                optimizer, optimizer_joint = self._optimizer(True), True  # joint fine-tune: every parameter trains
            if model is None or wrapped_joint != joint:
                model, wrapped_joint = trainer.distributed.wrap(trainer.model, trainer.device), joint  # (re)hook
            batches = trainer.distributed.batches(self.epoch_samples(samples, epoch), p2.batch_size)
            batch_loss = partial(self.batch_loss, model, samples, localizer_sampler, epoch, joint)
            train_loss = trainer.train_epoch(2, epoch, batches, optimizer, batch_loss)
            if trainer.end_epoch(2, epoch, state, optimizer, started, train_loss, {"joint": joint}):
                break
        trainer.restore_best(2)
        trainer.events.emit("phase_done", phase=2, best_epoch=state.best_epoch, best_score=state.best)
        return state

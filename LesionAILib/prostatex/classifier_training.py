"""Training of the ProstateX patch classifier: augmentation, one member, the ensemble, epochs chosen by inner CV.

The recipe (:class:`TrainingSettings`): BCE with ``pos_weight`` = negatives/positives and label
smoothing 0.1; augmentation by a random shift of ±2 pixels (edge-padded), per-channel intensity
jitter and left-right flips; AdamW (weight decay 1e-2), one-cycle learning rate up to 1e-3, batch
32. The number of epochs is chosen from ``epoch_choices`` by an inner patient-grouped
cross-validation inside the training data only (:func:`fit_classifier`).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from LesionAILib.dataclass_dicts import DictSerialisable
from LesionAILib.errors import ConfigError
from LesionAILib.evaluation.roc import auroc
from LesionAILib.prostatex.classifier import (
    MultiScaleNet,
    PatchClassifier,
    PatchClassifierConfig,
    PatchInputs,
    mirror_averaged_logit,
)

NetworkFactory = Callable[[PatchClassifierConfig], nn.Module]


@dataclass(frozen=True)
class TrainingSettings(DictSerialisable):
    """The training recipe (see module docstring). ``epoch_choices`` are chosen between by inner CV."""

    epoch_choices: tuple[int, ...] = (120, 240)
    batch_size: int = 32
    learning_rate: float = 1e-3
    weight_decay: float = 1e-2
    label_smoothing: float = 0.1
    shift_pixels: int = 2
    intensity_jitter: float = 0.1
    warmup_fraction: float = 0.2


# --------------------------------------------------------------------------- training
def _augment(batch: PatchInputs, settings: TrainingSettings, generator: torch.Generator) -> PatchInputs:
    """Random shift of the images (±``shift_pixels``, edge-padded; maps stay put), intensity jitter, mirror."""
    images, localization = batch.images, batch.localization
    count, size = images.shape[0], images.shape[-1]
    shift = settings.shift_pixels
    if shift:
        padded = F.pad(images, (shift, shift, shift, shift), mode="replicate")
        offsets = torch.randint(0, 2 * shift + 1, (count, 2), generator=generator)
        positions = torch.arange(size)
        rows = (offsets[:, 0, None] + positions)[:, :, None]  # [N, size, 1]
        columns = (offsets[:, 1, None] + positions)[:, None, :]  # [N, 1, size]
        samples = torch.arange(count)[:, None, None]
        images = padded.permute(0, 2, 3, 1)[samples, rows, columns].permute(0, 3, 1, 2)
    if settings.intensity_jitter:
        jitter = settings.intensity_jitter
        gain = 1.0 + jitter * torch.randn(count, images.shape[1], 1, 1, generator=generator)
        offset = 0.5 * jitter * torch.randn(count, images.shape[1], 1, 1, generator=generator)
        images = (images - 0.5) * gain + 0.5 + offset
    flip = (torch.rand(count, generator=generator) < 0.5)[:, None, None, None]
    images = torch.where(flip, images.flip(-1), images)
    localization = torch.where(flip, localization.flip(-1), localization)
    return PatchInputs(images, localization, batch.zone)


def train_member(
    inputs: PatchInputs,
    labels: np.ndarray,
    epochs: int,
    config: PatchClassifierConfig,
    settings: TrainingSettings,
    seed: int,
    network: NetworkFactory | None = None,
) -> nn.Module:
    """Train one :class:`MultiScaleNet` (or ``network(config)``, any module called as ``net(images,
    localization, zone)`` → logit [N]) on ``inputs`` with bool/0-1 ``labels`` [N] (CPU, deterministic per seed)."""
    torch.manual_seed(seed)
    generator = torch.Generator().manual_seed(seed)
    net = (network or MultiScaleNet)(config)
    optimizer = torch.optim.AdamW(net.parameters(), lr=settings.learning_rate, weight_decay=settings.weight_decay)
    count = len(inputs)
    batches = int(np.ceil(count / settings.batch_size))
    schedule = torch.optim.lr_scheduler.OneCycleLR(
        optimizer, settings.learning_rate, total_steps=max(epochs * batches, 1), pct_start=settings.warmup_fraction
    )
    truth = torch.as_tensor(np.asarray(labels), dtype=torch.float32)
    if not 0 < truth.sum() < count:
        raise ConfigError("training needs both clinically significant and non-significant findings")
    target = truth * (1.0 - settings.label_smoothing) + 0.5 * settings.label_smoothing
    pos_weight = (1.0 - truth.mean()) / truth.mean()
    net.train()
    for _ in range(epochs):
        order = torch.randperm(count, generator=generator)
        for start in range(0, count, settings.batch_size):
            index = order[start : start + settings.batch_size]
            if len(index) > 1:  # batch normalisation needs two samples
                batch = _augment(inputs.subset(index), settings, generator)
                logit = net(batch.images, batch.localization, batch.zone)
                loss = F.binary_cross_entropy_with_logits(logit, target[index], pos_weight=pos_weight)
                optimizer.zero_grad()
                loss.backward()
                optimizer.step()
            schedule.step()
    return net.eval()


def train_ensemble(
    inputs: PatchInputs,
    labels: np.ndarray,
    epochs: int,
    config: PatchClassifierConfig,
    settings: TrainingSettings,
    seed: int = 0,
    log: Callable[[str], None] | None = None,
) -> PatchClassifier:
    """``config.members`` members (seeds ``seed``, ``seed + 1``, …) and the training data's zone frequencies."""
    classifier = PatchClassifier(config)
    for index in range(config.members):
        classifier.members[index] = train_member(inputs, labels, epochs, config, settings, seed + index)
        if log:
            log(f"member {index + 1}/{config.members} trained ({epochs} epochs, {len(inputs)} findings)")
    counts = inputs.zone.sum(0)
    classifier.zone_prior.copy_(counts / counts.sum() if counts.sum() > 0 else classifier.zone_prior)
    return classifier.eval()


def choose_epochs(
    inputs: PatchInputs,
    labels: np.ndarray,
    groups: np.ndarray,
    config: PatchClassifierConfig,
    settings: TrainingSettings,
    seed: int = 0,
    log: Callable[[str], None] | None = None,
    network: NetworkFactory | None = None,
) -> tuple[int, dict[int, float]]:
    """The epoch count of ``settings.epoch_choices`` with the best inner cross-validated AUROC.

    One member per (held-out group, choice), trained on the other groups (patient-grouped folds of
    the training data only) and scored with mirror averaging; AUROC pooled over the held-out
    predictions. ``network`` as for :func:`train_member`. Returns ``(epochs, {choice: AUROC})``; a
    single choice is returned untested.
    """
    if len(settings.epoch_choices) == 1:
        return settings.epoch_choices[0], {}
    labels = np.asarray(labels).astype(bool)
    groups = np.asarray(groups)
    held_out = {epochs: np.zeros(len(labels)) for epochs in settings.epoch_choices}
    for number, group in enumerate(np.unique(groups)):
        train, test = np.nonzero(groups != group)[0], np.nonzero(groups == group)[0]
        for epochs in settings.epoch_choices:
            net = train_member(
                inputs.subset(train), labels[train], epochs, config, settings, seed + 100 + number, network
            )
            with torch.no_grad():
                held_out[epochs][test] = mirror_averaged_logit(net, inputs.subset(test)).numpy()
    scores = {epochs: auroc(labels, values) for epochs, values in held_out.items()}
    best = max(settings.epoch_choices, key=lambda epochs: scores[epochs])
    if log:
        log("inner CV AUROC by epochs: " + ", ".join(f"{e}: {v:.3f}" for e, v in scores.items()) + f" → {best}")
    return best, scores


def fit_classifier(
    inputs: PatchInputs,
    labels: np.ndarray,
    groups: np.ndarray,
    config: PatchClassifierConfig,
    settings: TrainingSettings,
    seed: int = 0,
    log: Callable[[str], None] | None = None,
) -> tuple[PatchClassifier, dict]:
    """Choose the epochs by inner CV over ``groups`` (patient-grouped), then train the ensemble on everything.

    Returns the classifier and its training record ``{"epochs", "inner_cv_auroc", "findings", "positives"}``.
    """
    epochs, scores = choose_epochs(inputs, labels, groups, config, settings, seed, log)
    classifier = train_ensemble(inputs, labels, epochs, config, settings, seed, log)
    record = {
        "epochs": epochs,
        "inner_cv_auroc": {str(e): round(v, 4) for e, v in scores.items()},
        "findings": len(inputs),
        "positives": int(np.asarray(labels).astype(bool).sum()),
    }
    return classifier, record



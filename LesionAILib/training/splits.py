"""The train/validation split: which cases train and which are held out to validate."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TypeVar

import numpy as np

from LesionAILib.training.cohorts import CaseRecord, read_cohort
from LesionAILib.training.config import TrainConfig

Item = TypeVar("Item")

# Independent random streams of one seed: a deployment's hold-out does not follow the training
# split drawn from the same seed.
TRAINING_STREAM = 7
DEPLOYMENT_STREAM = 11


def split_train_validation(
    items: Sequence[Item], val_fraction: float, seed: int, stream: int = TRAINING_STREAM
) -> tuple[list[Item], list[Item]]:
    """``(train, validation)``: ``round(val_fraction × n)`` items (at least one) held out at random.

    The held-out items are the first of a permutation drawn from ``default_rng([seed, stream])``;
    both lists keep the items' original order.
    """
    order = np.random.default_rng([seed, stream]).permutation(len(items))
    held_out = set(order[: max(1, int(round(val_fraction * len(items))))].tolist())
    train = [item for i, item in enumerate(items) if i not in held_out]
    return train, [item for i, item in enumerate(items) if i in held_out]


def training_and_validation_records(config: TrainConfig) -> tuple[list[CaseRecord], list[CaseRecord]]:
    """The training cohorts' cases and the validation cases: ``config.val``'s cohorts, or else
    :func:`split_train_validation` of the training cases by ``config.val_fraction`` and ``config.seed``."""
    records = [r for folder in config.train for r in read_cohort(folder).cases]
    if config.val:
        return records, [r for folder in config.val for r in read_cohort(folder).cases]
    return split_train_validation(records, config.val_fraction, config.seed)

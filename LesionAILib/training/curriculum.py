"""Curriculum: the order in which training cases are admitted, at an equal training budget per epoch."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from LesionAILib.errors import ConfigError


@dataclass
class Curriculum:
    """Admit training cases in a given order (multi-site similarity order, deployment uncertainty order).

    Only the *order* of admission is the curriculum's: every epoch trains for the same number of
    steps whatever is admitted, so two curricula over the same cases (or a curriculum and
    admitting everything at once) differ in nothing else.

    * Phase-1 epoch ``e`` (1-based, of ``epochs``) admits the first ``ceil(n × f(e))`` of the
      ``n`` cases of ``order``, ``f(e) = min(1, start_fraction + (1 - start_fraction) × (e - 1) / R)``
      with ``R = min(ramp_epochs, epochs - 1)``: the ramp always ends within the phase, so its last
      epoch admits every case. The epoch holds ``n`` draws of new cases — the admitted ones in
      turn, each ⌊n / a⌋ or ⌈n / a⌉ times — plus :attr:`replay_count` reference cases.
    * The classifier phase does not restart the ramp: each of its epochs trains on every case of
      ``order`` plus that epoch's replay draw (:meth:`classifier_cases`).
    * ``replay`` names cases of an earlier dataset: ``replay_fraction`` of every epoch's draws come
      from them (drawn without replacement per epoch), so the earlier site is not forgotten.
    """

    order: list[str]
    epochs: int
    start_fraction: float = 0.3
    ramp_epochs: int = 5
    replay: list[str] = field(default_factory=list)
    replay_fraction: float = 0.3

    def __post_init__(self):
        if not self.order:
            raise ConfigError("a curriculum needs at least one case to admit")
        if self.epochs < 1:
            raise ConfigError(f"a curriculum needs at least one epoch, got {self.epochs}")
        if not 0 <= self.replay_fraction < 1:
            raise ConfigError(f"replay_fraction must be in [0, 1), got {self.replay_fraction}")

    @property
    def ramp(self) -> int:
        """Epochs from the first admission to the last (0: everything admitted from epoch 1)."""
        return max(0, min(self.ramp_epochs, self.epochs - 1))

    def admitted(self, epoch: int) -> int:
        """How many cases of ``order`` phase-1 epoch ``epoch`` admits."""
        progress = 1.0 if self.ramp == 0 else (epoch - 1) / self.ramp
        fraction = min(1.0, self.start_fraction + (1 - self.start_fraction) * progress)
        return max(1, int(np.ceil(len(self.order) * fraction)))

    def complete(self, epoch: int) -> bool:
        """Whether epoch ``epoch`` admits every case (early stopping waits for it)."""
        return self.admitted(epoch) == len(self.order)

    @property
    def replay_count(self) -> int:
        """Reference cases replayed per epoch: ``replay_fraction`` of the epoch's draws."""
        if not self.replay or self.replay_fraction <= 0:
            return 0
        wanted = int(round(len(self.order) * self.replay_fraction / (1 - self.replay_fraction)))
        return min(wanted, len(self.replay))

    def _replayed(self, epoch: int, seed: int, stream: int) -> list[str]:
        rng = np.random.default_rng([seed, epoch, stream])
        return [self.replay[i] for i in rng.choice(len(self.replay), size=self.replay_count, replace=False)]

    def epoch_cases(self, epoch: int, seed: int) -> list[str]:
        """The case ids phase-1 epoch ``epoch`` trains on, in training order (deterministic; a case
        may appear more than once while the ramp admits fewer than all; always ``n + replay_count``)."""
        admitted, total = self.admitted(epoch), len(self.order)
        rng = np.random.default_rng([seed, epoch, 4])
        counts = np.full(admitted, total // admitted)
        counts[rng.choice(admitted, size=total % admitted, replace=False)] += 1
        chosen = [case for case, count in zip(self.order[:admitted], counts, strict=True) for _ in range(count)]
        chosen += self._replayed(epoch, seed, 3)
        return [chosen[i] for i in rng.permutation(len(chosen))]

    def classifier_cases(self, epoch: int, seed: int) -> list[str]:
        """The case ids whose candidates classifier epoch ``epoch`` trains on: all of ``order`` and
        this epoch's replay draw."""
        return list(self.order) + self._replayed(epoch, seed, 5)

    def _indices(self, cases: list[str], case_ids: Sequence[str]) -> list[int]:
        position = {case_id: i for i, case_id in enumerate(case_ids)}
        missing = [c for c in self.order + self.replay if c not in position]
        if missing:
            raise ConfigError(f"curriculum names cases that are not in the training data: {', '.join(missing[:3])}")
        return [position[c] for c in cases]

    def epoch_indices(self, epoch: int, seed: int, case_ids: Sequence[str]) -> list[int]:
        """:meth:`epoch_cases` as indices into ``case_ids`` (the trainer's training cases)."""
        return self._indices(self.epoch_cases(epoch, seed), case_ids)

    def classifier_indices(self, epoch: int, seed: int, case_ids: Sequence[str]) -> list[int]:
        """:meth:`classifier_cases` as indices into ``case_ids``."""
        return self._indices(self.classifier_cases(epoch, seed), case_ids)

"""Curriculum: which training cases an epoch admits, in a given order (similarity or uncertainty)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from LesionAILib.errors import ConfigError


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

    def epoch_indices(self, epoch: int, seed: int, case_ids: Sequence[str]) -> list[int]:
        """:meth:`epoch_cases` as indices into ``case_ids`` (the trainer's training cases)."""
        position = {case_id: i for i, case_id in enumerate(case_ids)}
        missing = [c for c in self.order + self.replay if c not in position]
        if missing:
            raise ConfigError(f"curriculum names cases that are not in the training data: {', '.join(missing[:3])}")
        return [position[c] for c in self.epoch_cases(epoch, seed)]

"""Multi-site training by similarity order: adapt a pretrained model to a second dataset.

1. Describe every case of the reference dataset (the one the model was trained on) and of the
   new dataset with the pretrained model (:func:`LesionAILib.adaptation.ordering.order_by_similarity`).
2. Train on the new dataset in order of decreasing similarity: the most similar cases are admitted
   first and the less similar ones progressively (:class:`LesionAILib.training.curriculum.Curriculum`), while
   a share of every epoch replays reference cases so the first site is not forgotten. Every epoch
   has the same number of steps whatever is admitted, and the last phase-1 epoch admits every case.
3. Phases 1 and 2 as in ordinary training, starting from the pretrained weights; the classifier
   phase trains on the candidates of every new case (plus replay).

``order="random"`` admits the new cases in a random order and ``order="none"`` admits all of
them from the first epoch — the comparisons in ``benchmarks/multisite.py``. The three differ only
in the admission order: same steps, same replay, same classifier data.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from LesionAILib.adaptation.ordering import order_by_similarity
from LesionAILib.errors import ConfigError
from LesionAILib.inference.analyzer import Analyzer
from LesionAILib.jobs.events import CancelToken, EventLog
from LesionAILib.models.modelfile import load_model
from LesionAILib.training.cohorts import prepare_cases, read_cohort
from LesionAILib.training.config import TrainConfig
from LesionAILib.training.curriculum import Curriculum
from LesionAILib.training.splits import training_and_validation_records
from LesionAILib.training.trainer import Trainer

ORDERS = ("similarity", "random", "none")


@dataclasses.dataclass
class MultisiteSettings:
    """How the second dataset is admitted and how much of the first is replayed."""

    order: str = "similarity"
    start_fraction: float = 0.3
    ramp_epochs: int = 5
    replay_fraction: float = 0.3
    neighbours: int = 5

    def __post_init__(self):
        if self.order not in ORDERS:
            raise ConfigError(f"unknown order {self.order!r}; use one of {', '.join(ORDERS)}")


def multisite_train(
    config: TrainConfig,
    run_dir: str | Path,
    pretrained: str | Path,
    reference: Sequence[str | Path],
    settings: MultisiteSettings | None = None,
    phases: str = "both",
    output: str | Path | None = None,
    events: EventLog | None = None,
    cancel: CancelToken | None = None,
) -> Path:
    """Train ``pretrained`` further on ``config.train`` (the new site) with replay of ``reference``.

    The architecture and preprocessing come from the pretrained model file; ``config`` supplies the
    data, epochs and learning rates. Validation uses ``config.val`` or a split of the new site.
    ``cancel`` stops it at the next step (default: the run folder's ``CANCEL`` file). Returns the model file path.
    """
    settings = settings or MultisiteSettings()
    run_dir = Path(run_dir)
    events = events or EventLog(run_dir / "progress.jsonl")
    model, metadata = load_model(pretrained, "cpu")
    config = dataclasses.replace(config, model=metadata.architecture, preprocess=metadata.preprocess)
    new_records, val_records = training_and_validation_records(config)
    reference_records = [r for folder in reference for r in read_cohort(folder).cases]
    clash = {r.case_id for r in new_records} & {r.case_id for r in reference_records}
    if clash:
        raise ConfigError(f"case ids appear in both datasets (e.g. {sorted(clash)[0]}); they must be unique")

    preparing = events.progress_callback("prepare")
    new_cases = prepare_cases(new_records, config.preprocess, config.cache_dir, preparing)
    reference_cases = prepare_cases(reference_records, config.preprocess, config.cache_dir, preparing)
    val_cases = prepare_cases(val_records, config.preprocess, config.cache_dir, preparing)
    ids = [r.case_id for r in new_records]
    if settings.order == "similarity":
        analyzer = Analyzer((model, metadata), device=config.device)
        ranking = order_by_similarity(
            analyzer, reference_records, new_records, settings.neighbours, events.progress_callback("similarity")
        )
        ids = [item.case_id for item in ranking]
        events.emit("order", by="similarity", cases=[item.to_dict() for item in ranking])
    elif settings.order == "random":
        ids = [ids[i] for i in np.random.default_rng([config.seed, 13]).permutation(len(ids))]
    start, ramp = (1.0, 1) if settings.order == "none" else (settings.start_fraction, settings.ramp_epochs)
    curriculum = Curriculum(
        ids,
        epochs=config.phase1.epochs,
        start_fraction=start,
        ramp_epochs=ramp,
        replay=[r.case_id for r in reference_records],
        replay_fraction=settings.replay_fraction,
    )
    trainer = Trainer(config, run_dir, events, cancel, new_cases + reference_cases, val_cases, model, curriculum)
    return trainer.run(phases, output)

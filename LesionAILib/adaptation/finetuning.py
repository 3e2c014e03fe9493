"""Deployment fine-tuning: adapt the active model to a site's own annotated cases.

1. Read the deployment dataset (:mod:`LesionAILib.adaptation.deployment`); incomplete or corrupt cases are
   reported and skipped. Hold out ``val_fraction`` of the annotated cases (deterministic).
2. Order the remaining cases by the base model's uncertainty (:mod:`LesionAILib.adaptation.ordering`),
   most uncertain first, and fine-tune with that order as a curriculum (the most uncertain cases
   are admitted first, the rest progressively; every epoch the same number of crops, and the last
   phase-1 epoch admits every case), phase 1 then phase 2 — the classifier trains on the
   candidates of every annotated training case from its first epoch.
3. Validate the base model and the fine-tuned one on the held-out cases (PI-CAI ranking score).
4. Save the result as a **new version** in the model store — never overwriting anything. It
   becomes the active version only if it validates at least as well as the base, unless
   ``force``. ``lesionai models rollback`` switches back.

A run killed at any point resumes from its last checkpoint when started again with the same
``run_dir``; a failed or cancelled run leaves the store (and its active version) untouched.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

from LesionAILib.adaptation.deployment import DeploymentDataset, read_deployment
from LesionAILib.adaptation.ordering import OrderedCase, order_by_uncertainty
from LesionAILib.errors import LesionAIError
from LesionAILib.inference.analyzer import Analyzer
from LesionAILib.jobs.events import CancelToken, EventLog
from LesionAILib.models.modelfile import ModelMetadata, load_model
from LesionAILib.models.store import ModelStore
from LesionAILib.training.cohorts import CaseRecord, prepare_cases
from LesionAILib.training.config import Phase1Config, Phase2Config, TrainConfig
from LesionAILib.training.curriculum import Curriculum
from LesionAILib.training.splits import DEPLOYMENT_STREAM, split_train_validation
from LesionAILib.training.trainer import Trainer

MIN_ANNOTATED = 4


@dataclass
class FinetuneSettings:
    """Fine-tuning budget (small learning rates: the model is adapted, not retrained)."""

    epochs: int = 8
    classifier_epochs: int = 4
    lr: float = 3e-4
    classifier_lr: float = 3e-4
    batch_size: int = 4
    crops_per_case: int = 4
    val_fraction: float = 0.25
    start_fraction: float = 0.4
    ramp_epochs: int = 4
    uncertainty_samples: int = 6
    seed: int = 0
    device: str = "auto"


@dataclass
class FinetuneResult:
    version: str
    base: str
    activated: bool
    validation_before: dict
    validation_after: dict
    train_cases: int
    val_cases: int
    order: list[dict]
    skipped: list[str]

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


# --------------------------------------------------------------------------- 1. data
def annotated_split(
    deployment: DeploymentDataset, settings: FinetuneSettings
) -> tuple[list[CaseRecord], list[CaseRecord]]:
    """(train, held-out) records of the annotated cases; too few annotated cases are an error."""
    annotated = deployment.annotated
    if len(annotated) < MIN_ANNOTATED:
        raise LesionAIError(
            f"fine-tuning needs at least {MIN_ANNOTATED} annotated cases; {deployment.root} has {len(annotated)}",
            hint="annotate more cases (lesionai order --by uncertainty suggests which)",
        )
    train, held_out = split_train_validation(annotated, settings.val_fraction, settings.seed, DEPLOYMENT_STREAM)
    return [case.record() for case in train], [case.record() for case in held_out]


def finetune_config(
    metadata: ModelMetadata, settings: FinetuneSettings, run_dir: Path, description: str
) -> TrainConfig:
    """The training configuration of a fine-tuning run: the base model's grid and architecture,
    the fine-tuning budget of ``settings``, the cache inside ``run_dir``."""
    return TrainConfig(
        name=f"{metadata.name}-finetuned",
        description=description,
        seed=settings.seed,
        cache_dir=str(run_dir / "cache"),
        device=settings.device,
        preprocess=metadata.preprocess,
        model=metadata.architecture,
        phase1=Phase1Config(
            epochs=settings.epochs,
            batch_size=settings.batch_size,
            crops_per_case=settings.crops_per_case,
            crop=tuple(min(c, s) for c, s in zip(Phase1Config.crop, metadata.preprocess.shape, strict=True)),
            lr=settings.lr,
            patience=settings.epochs,
        ),
        phase2=Phase2Config(
            epochs=settings.classifier_epochs, lr=settings.classifier_lr, patience=settings.classifier_epochs
        ),
    )


# --------------------------------------------------------------------------- 2. order
def uncertainty_curriculum(
    analyzer: Analyzer,
    records: list[CaseRecord],
    settings: FinetuneSettings,
    progress: Callable[[int, int], None] | None = None,
) -> tuple[list[OrderedCase], Curriculum]:
    """The training cases by decreasing uncertainty of the base model, and the curriculum admitting them so."""
    ranking = order_by_uncertainty(analyzer, records, settings.uncertainty_samples, progress)
    curriculum = Curriculum(
        [item.case_id for item in ranking],
        epochs=settings.epochs,
        start_fraction=settings.start_fraction,
        ramp_epochs=settings.ramp_epochs,
    )
    return ranking, curriculum


# --------------------------------------------------------------------------- 4. store
def publish(
    store: ModelStore, path: Path, base: str, before: dict, after: dict, val_cases: int, train_cases: int, force: bool
) -> tuple[str, bool]:
    """Add the fine-tuned model as a new version; activate it if it validates at least as well as
    ``base`` (or ``force``). Returns (version, activated)."""
    better = after["score"] >= before["score"]
    note = (
        f"fine-tuned from {base} on {train_cases} cases; held-out score {after['score']:.3f} vs "
        f"{before['score']:.3f} before" + ("" if better else ("; activated by force" if force else "; not activated"))
    )
    version = store.add(
        path, parent=base, validation={"before": before, "after": after, "val_cases": val_cases}, note=note
    )
    if better or force:
        store.activate(version)
    return version, better or force


def finetune(
    dataset: str | Path,
    store: ModelStore,
    base: str | None = None,
    settings: FinetuneSettings | None = None,
    run_dir: str | Path | None = None,
    force: bool = False,
    events: EventLog | None = None,
    cancel: CancelToken | None = None,
) -> FinetuneResult:
    """Fine-tune ``base`` (default: the store's active version) on ``dataset`` (see module docstring)."""
    settings = settings or FinetuneSettings()
    deployment = read_deployment(dataset)
    base = base or store.active
    base_path = store.path(base)
    run_dir = Path(run_dir) if run_dir else store.root / "runs" / datetime.now(timezone.utc).strftime("%Y%m%d-%H%M%S")
    events = events or EventLog(run_dir / "progress.jsonl")
    for problem in deployment.problems:
        events.emit("skipped", reason=problem)
    train_records, val_records = annotated_split(deployment, settings)

    def progress(stage: str) -> Callable[[int, int], None]:
        return lambda done, total: events.emit("progress", stage=stage, done=done, total=total)

    model, metadata = load_model(base_path, "cpu")
    description = f"fine-tuned from {base} on {len(train_records)} deployment cases of {dataset}"
    config = finetune_config(metadata, settings, run_dir, description)
    train_cases = prepare_cases(train_records, config.preprocess, config.cache_dir, progress("prepare"))
    val_cases = prepare_cases(val_records, config.preprocess, config.cache_dir, progress("prepare"))
    analyzer = Analyzer((model, metadata), device=settings.device)
    ranking, curriculum = uncertainty_curriculum(analyzer, train_records, settings, progress("uncertainty"))
    events.emit("order", by="uncertainty", cases=[item.to_dict() for item in ranking])

    # 3. fine-tune, validating before and after on the held-out cases
    cancel = cancel or CancelToken(run_dir / "CANCEL")
    trainer = Trainer(config, run_dir, events, cancel, train_cases, val_cases, model, curriculum)
    with_classifier = model.classifier is not None
    before = trainer.validate(use_classifier=with_classifier)
    events.emit("validation", model=base, **before)
    path = trainer.run("both" if with_classifier else "1", run_dir / "model.safetensors")
    after = trainer.validate(use_classifier=with_classifier)
    events.emit("validation", model="finetuned", **after)

    version, activated = publish(store, path, base, before, after, len(val_cases), len(train_cases), force)
    ranked = [item.to_dict() for item in ranking]
    result = FinetuneResult(
        version, base, activated, before, after, len(train_cases), len(val_cases), ranked, deployment.problems
    )
    events.emit("finetuned", **result.to_dict())
    return result

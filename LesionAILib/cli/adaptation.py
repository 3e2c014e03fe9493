"""``lesionai models`` (the versioned store), ``order`` (uncertainty / similarity) and ``finetune`` (a new version)."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from LesionAILib.cli import options
from LesionAILib.errors import LesionAIError
from LesionAILib.jobs.events import ORDERED

_STORE_HELP = "model store folder (default $LESIONAI_HOME/models)"


def register(commands: argparse._SubParsersAction) -> None:
    models = options.add_command(
        commands,
        "models",
        run_models,
        help="list model versions; activate one or roll back",
        description="The model store keeps every fine-tuned version; one is active. Switching is atomic.",
    )
    models.add_argument("action", nargs="?", choices=("list", "activate", "rollback"), default="list")
    models.add_argument("version", nargs="?", help="version to activate (e.g. v2, demo)")
    models.add_argument("--store", help=_STORE_HELP)
    models.add_argument("--json", action="store_true")

    order = options.add_command(
        commands,
        "order",
        run_order,
        help="order cases by model uncertainty or by similarity to a reference dataset",
        description="--by uncertainty DATASET: most uncertain first (which case to annotate next, the "
        "fine-tuning order). --by similarity --reference A B: B's cases most similar to A first (the "
        "multi-site training order).",
    )
    order.add_argument("dataset", help="cohort folder or deployment dataset")
    order.add_argument("--by", choices=("uncertainty", "similarity"), required=True)
    order.add_argument("--reference", help="reference dataset for --by similarity")
    order.add_argument(
        "--unannotated", action="store_true", help="only the unannotated cases of a deployment dataset (next to label)"
    )
    order.add_argument("--samples", type=int, default=8, help="Monte-Carlo dropout samples per case (uncertainty)")
    options.add_model_option(order, "the store's active model with --store, else the bundled demo model")
    order.add_argument("--store", help=_STORE_HELP)
    options.add_device_option(order)
    order.add_argument("--out", help="also write the order as JSON here")
    order.add_argument("--json", action="store_true", help="print a JSON list of {case, score}")
    options.add_job_options(order)

    finetune = options.add_command(
        commands,
        "finetune",
        run_finetune,
        help="fine-tune the active model on a deployment dataset (uncertainty order) into a new version",
        description="Fine-tunes on the annotated deployment cases, most uncertain first, validates on held-out "
        "ones and stores a new model version; it becomes active only if it validates at least as well.",
    )
    finetune.add_argument("--dataset", required=True, help="deployment dataset folder")
    finetune.add_argument("--store", help=_STORE_HELP)
    finetune.add_argument("--base", help="version to start from (default: the active one)")
    finetune.add_argument("--run-dir", help="run folder (checkpoints; rerun with the same folder to resume)")
    finetune.add_argument("--epochs", type=int, default=8, help="localization epochs (default 8)")
    finetune.add_argument("--classifier-epochs", type=int, default=4, help="classification epochs (default 4)")
    finetune.add_argument("--force", action="store_true", help="activate even if validation is worse")
    options.add_device_option(finetune)
    options.add_job_options(finetune)


def _store(args):
    from LesionAILib.models.store import ModelStore

    return ModelStore(args.store)


# --------------------------------------------------------------------------- models
def run_models(args) -> int:
    store = _store(args)
    if args.action == "activate":
        store.activate(args.version)
        print(f"active model: {store.active}")
    elif args.action == "rollback":
        print(f"active model: {store.rollback()}")
    versions = store.versions()
    if args.json:
        print(
            json.dumps(
                {"store": str(store.root), "active": store.active, "versions": [v.to_dict() for v in versions]},
                indent=2,
            )
        )
        return 0
    print(f"model store {store.root}")
    for version in versions:
        after = version.validation.get("after", {}).get("score") if version.validation else None
        score = f"validation score {after:.3f}" if after is not None else ""
        marker = "*" if version.active else " "
        print(f"{marker} {version.version:<6} {version.created:<26} {score:<24} {version.note}")
    return 0


# --------------------------------------------------------------------------- order
def _cases_of(folder: str, unannotated: bool = False) -> list:
    """Case records of a folder: a deployment dataset (optionally its unannotated cases only), else a cohort."""
    from LesionAILib.adaptation.deployment import read_deployment
    from LesionAILib.training.cohorts import read_cohort

    if (Path(folder) / "manifest.json").exists():
        dataset = read_deployment(folder)
        for problem in dataset.problems:
            print(f"lesionai: skipped {problem}", file=sys.stderr)
        return [c.record() for c in (dataset.unannotated if unannotated else dataset.cases)]
    if unannotated:
        raise LesionAIError("--unannotated needs a deployment dataset (a folder with manifest.json)", folder)
    return read_cohort(folder).cases


def run_order(args) -> int:
    from LesionAILib.adaptation.ordering import order_by_similarity, order_by_uncertainty
    from LesionAILib.atomic_io import write_json_atomic
    from LesionAILib.inference.analyzer import Analyzer

    if args.by == "similarity" and not args.reference:
        raise LesionAIError("--by similarity needs --reference DATASET_A")
    events, cancel = options.job_events(args), options.cancel_token(args)
    with cancel.installed():
        cases = _cases_of(args.dataset, args.unannotated)
        ordered = []
        if cases:
            events.progress("loading the model", 0, len(cases))
            analyzer = Analyzer(args.model or (_store(args).active_path() if args.store else None), device=args.device)
            progress = events.progress_callback(args.by, cancel)
            if args.by == "uncertainty":
                ordered = order_by_uncertainty(analyzer, cases, args.samples, progress)
            else:
                ordered = order_by_similarity(analyzer, _cases_of(args.reference), cases, progress=progress)
        events.close()
        cancel.check()
    rows = [item.to_dict() for item in ordered]
    if args.out:
        write_json_atomic(
            args.out, {"by": args.by, "dataset": args.dataset, "reference": args.reference, "order": rows}
        )
    if args.json:
        print(json.dumps(rows, indent=2))
    else:
        for rank, item in enumerate(ordered, start=1):
            print(f"{rank:>4}  {item.case_id:<24} {item.score:9.4f}")
    events.emit(ORDERED, by=args.by, order=rows, first=ordered[0].case_id if ordered else None)
    return 0


# --------------------------------------------------------------------------- finetune
def run_finetune(args) -> int:
    from LesionAILib.adaptation.finetuning import FinetuneSettings, finetune

    store = _store(args)
    settings = FinetuneSettings(epochs=args.epochs, classifier_epochs=args.classifier_epochs, device=args.device)
    run = Path(args.run_dir) if args.run_dir else None
    events = options.job_events(args, (run or store.root / "runs" / "latest") / "progress.jsonl")
    cancel = options.cancel_token(args) if args.cancel_file else None  # else: the run folder's CANCEL file
    result = finetune(args.dataset, store, args.base, settings, run, args.force, events, cancel)
    state = (
        "now active"
        if result.activated
        else "saved, not activated (validated worse; use --force or `lesionai models activate`)"
    )
    print(
        f"model version {result.version} ({state}); held-out score {result.validation_after['score']:.3f} "
        f"vs {result.validation_before['score']:.3f} for {result.base}"
    )
    return 0

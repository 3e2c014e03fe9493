"""Multi-site training order: similarity order vs random order vs no ordering (phantom sites).

A model trained on site A continues training on site D (the phantom site furthest from A) with
replay of site A, for the same number of epochs in each arm; only the admission order differs:

* ``similarity`` — D's cases most similar to A first (curriculum), the seed's multi-site method;
* ``random`` — the same curriculum schedule with a random order;
* ``none`` — every D case from the first epoch (ordinary fine-tuning with replay).

Reported on held-out D cases (did it adapt?) and held-out A cases (did it forget?), mean ± sd over
seeds. Shares the cohorts and the site-A model with ``benchmarks/active_learning.py``.

Run: ``.venv/bin/python benchmarks/multisite.py [--seeds 3] [--large]``.
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import numpy as np  # noqa: E402
from active_learning import LARGE, SMOKE, Size, base_config, cohort, evaluate  # noqa: E402
from common import ROOT, machine, print_table  # noqa: E402

from LesionAILib.adaptation.multisite import ORDERS, MultisiteSettings, multisite_train  # noqa: E402
from LesionAILib.jobs.events import EventLog  # noqa: E402
from LesionAILib.models.modelfile import load_model  # noqa: E402
from LesionAILib.training.cohorts import prepare_cases, read_cohort  # noqa: E402
from LesionAILib.training.trainer import Trainer  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--work", default=str(ROOT / ".benchmark-work" / "active-learning"))
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--epochs", type=int, default=6, help="epochs of multi-site training per arm")
    parser.add_argument("--large", action="store_true")
    parser.add_argument("--smoke", action="store_true")
    args = parser.parse_args()
    size = LARGE if args.large else SMOKE if args.smoke else Size()
    work = Path(args.work)
    started = time.perf_counter()

    source_folder = cohort(work, "A", size.source_cases, 1)
    target_folder = cohort(work, "D", size.pool_cases + size.test_cases, 2)
    config = base_config(size, work, 0)
    base_path = work / "site-A-model.safetensors"
    if not base_path.exists():
        Trainer(dataclasses.replace(config, train=[str(source_folder)]), work / "runs" / "site-A").run(
            "both", base_path
        )
    target = read_cohort(target_folder).cases
    held_out_a = read_cohort(cohort(work, "A", size.test_cases, 3)).cases
    d_test = prepare_cases(target[size.pool_cases :], config.preprocess, config.cache_dir)
    a_test = prepare_cases(held_out_a, config.preprocess, config.cache_dir)
    train_d = work / "multisite" / "D-train"
    if not train_d.exists():  # the pool cases as their own cohort folder (symlinked images and labels)
        for record in target[: size.pool_cases]:
            for path in [*record.images.values(), record.cspca_mask, record.instances]:
                if path:
                    link = train_d / Path(path).relative_to(target_folder)
                    link.parent.mkdir(parents=True, exist_ok=True)
                    link.symlink_to(path)
        for name in ("lesions.csv", "marksheet.csv"):
            (train_d / name).symlink_to(target_folder / name)

    base = load_model(base_path, "cpu")
    before = {"D": evaluate(base, d_test), "A": evaluate(base, a_test)}
    scores = {order: {"D": [], "A": []} for order in ORDERS}
    for seed in range(args.seeds):
        for order in ORDERS:
            run_config = dataclasses.replace(
                config,
                seed=seed,
                train=[str(train_d)],
                val=[],
                validate=False,
                val_fraction=0.0,
                phase1=dataclasses.replace(config.phase1, epochs=args.epochs, lr=5e-4),
                phase2=dataclasses.replace(config.phase2, epochs=max(2, args.epochs // 2), lr=5e-4),
            )
            run = work / "multisite" / f"{order}-s{seed}"
            path = multisite_train(
                run_config,
                run,
                base_path,
                [str(source_folder)],
                MultisiteSettings(order=order, start_fraction=0.3, ramp_epochs=max(1, args.epochs - 2)),
                output=run / "model.safetensors",
                events=EventLog(run / "progress.jsonl"),
            )
            model = load_model(path, "cpu")
            for site, cases in (("D", d_test), ("A", a_test)):
                scores[order][site].append(evaluate(model, cases))
            print(
                f"seed {seed} {order:<10}: D AP {scores[order]['D'][-1]['ap']:.3f} "
                f"A AP {scores[order]['A'][-1]['ap']:.3f}",
                file=sys.stderr,
                flush=True,
            )

    def cell(values: list[dict], metric: str) -> str:
        numbers = np.array([v[metric] for v in values])
        return f"{numbers.mean():.3f} ± {numbers.std():.3f}"

    rows = [
        [
            "site-A model (before)",
            f"{before['D']['ap']:.3f}",
            f"{before['D']['auroc']:.3f}",
            f"{before['A']['ap']:.3f}",
            f"{before['A']['auroc']:.3f}",
        ]
    ]
    rows += [
        [
            f"{order} order",
            cell(scores[order]["D"], "ap"),
            cell(scores[order]["D"], "auroc"),
            cell(scores[order]["A"], "ap"),
            cell(scores[order]["A"], "auroc"),
        ]
        for order in ORDERS
    ]
    print(f"machine: {machine()}")
    print(
        f"site A → site D, {size.pool_cases - 1} D training cases (the split holds one out), "
        f"{len(d_test)} held-out D and {len(a_test)} held-out A cases, {args.epochs} epochs per arm, "
        f"{args.seeds} seeds, {(time.perf_counter() - started) / 60:.1f} min"
    )
    print_table(["arm", "D AP", "D AUROC", "A AP (forgetting)", "A AUROC"], rows)
    best = max(ORDERS, key=lambda o: np.mean([v["score"] for v in scores[o]["D"]]))
    print(f"best_order_on_site_D={best}")


if __name__ == "__main__":
    main()

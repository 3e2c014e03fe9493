"""Multi-site training order: similarity order vs random order vs no ordering (phantom sites).

A model trained on site A continues training on site D (the phantom site furthest from A) with
30 % replay of site A. The arms differ **only in the admission order** of D's cases:

* ``similarity`` — D's cases most similar to A first (curriculum), LesionAI's multi-site method;
* ``random`` — the same ramp with a random order;
* ``none`` — every D case admitted from the first epoch.

Same budget in every arm (:class:`LesionAILib.training.curriculum.Curriculum`): every phase-1 epoch
has as many draws of D cases as D has (the admitted ones in turn) plus the same replay draw, the
ramp ends within phase 1 so its last epoch admits every D case, and the classifier phase trains on
the candidates of every D case (no second ramp) with a fixed number of samples per epoch
(``Phase2Config.samples_per_epoch``). The optimisation steps each run took are counted from its
progress log and printed.

Reported on held-out D cases (gain: did it adapt?) beside held-out A cases (forgetting: what did it
lose?), mean ± sample sd and 95 % t-intervals over seeds, and each arm's paired difference to
``none``. Shares the work folder (cohorts, site-A model) with ``benchmarks/active_learning.py``;
results are cached per arm and seed (``<work>/results/multisite/``), a rerun resumes.

Run: ``.venv/bin/python benchmarks/multisite.py`` (default 3 seeds, 6 + 3 epochs; ≈ 25 min on 2
CPU cores plus the site-A model if not yet trained).
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import adaptation_setup as shared  # noqa: E402
import numpy as np  # noqa: E402
from common import ROOT, machine, print_table  # noqa: E402

from LesionAILib.adaptation.multisite import ORDERS, MultisiteSettings, multisite_train  # noqa: E402
from LesionAILib.jobs.events import EventLog  # noqa: E402
from LesionAILib.models.modelfile import load_model  # noqa: E402

CLASSIFIER_SAMPLES = 384
REPLAY = 0.3


def pool_cohort(work: Path, target_folder: Path, records) -> Path:
    """The D pool cases as their own cohort folder (symlinked images and labels)."""
    train_d = work / "multisite" / "D-train"
    if not train_d.exists():
        for record in records:
            for path in [*record.images.values(), record.cspca_mask, record.instances]:
                if path:
                    link = train_d / Path(path).relative_to(target_folder)
                    link.parent.mkdir(parents=True, exist_ok=True)
                    link.symlink_to(path)
        for name in ("lesions.csv", "marksheet.csv"):
            (train_d / name).symlink_to(target_folder / name)
    return train_d


def interval(values) -> str:
    low, high = shared.t_interval(values)
    return f"{np.mean(values):+.3f} [{low:+.3f}, {high:+.3f}]"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--work", default=str(ROOT / ".benchmark-work" / "adaptation"))
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--epochs", type=int, default=6, help="phase-1 epochs of multi-site training per arm")
    parser.add_argument("--large", action="store_true")
    parser.add_argument("--quick", action="store_true", help="6-epoch site-A model, 20 test cases (loaded CPU)")
    parser.add_argument("--orders", default=",".join(ORDERS), help="arms to run (the report needs all)")
    parser.add_argument("--report-only", action="store_true", help="tables of the seeds already cached; trains nothing")
    parser.add_argument("--smoke", action="store_true")
    args = parser.parse_args()
    size = shared.chosen_size(args)
    work = Path(args.work)
    started = time.perf_counter()

    setup = shared.shared_setup(size, work)
    source_folder, base_path = setup.source_folder, setup.base_path
    config = shared.base_config(size, work, 0)
    d_test, a_test = setup.prepared["d_test"], setup.prepared["a_test"]
    train_d = pool_cohort(work, setup.target_folder, setup.pool)
    cache = shared.ResultCache(work / "results" / "multisite")

    base = load_model(base_path, "cpu")
    before = cache.load("before", 0) or {"D": shared.evaluate(base, d_test), "A": shared.evaluate(base, a_test)}
    cache.save("before", 0, before)
    results: dict[str, list[dict]] = {order: [] for order in ORDERS}
    for seed in range(args.seeds):
        if args.report_only:
            cached = [cache.load(order, seed) for order in ORDERS]
            if all(d.get("epochs") == args.epochs for d in cached):
                for order, document in zip(ORDERS, cached, strict=True):
                    results[order].append(document)
            continue
        for order in args.orders.split(","):
            document = cache.load(order, seed)
            if not document or document.get("epochs") != args.epochs:
                document = run_arm(config, order, seed, args.epochs, train_d, source_folder, base_path, work)
                model = load_model(work / "multisite" / f"{order}-s{seed}" / "model.safetensors", "cpu")
                document.update(D=shared.evaluate(model, d_test), A=shared.evaluate(model, a_test))
                cache.save(order, seed, document)
            results[order].append(document)
            print(
                f"seed {seed} {order:<10}: D AP {document['D']['ap']:.3f} A AP {document['A']['ap']:.3f} "
                f"steps {document['steps']}",
                file=sys.stderr,
                flush=True,
            )
    if args.orders != ",".join(ORDERS):
        return  # some arms only (a second process sharing the work): the report needs every arm
    if not results["none"]:
        sys.exit("no seed has finished every arm yet")
    if len(results["none"]) < args.seeds:
        print(f"PARTIAL: {len(results['none'])} of {args.seeds} seeds have finished every arm")
    report(results, before, args, len(d_test), len(a_test), size, started)


def run_arm(config, order, seed, epochs, train_d, source_folder, base_path, work) -> dict:
    run_config = dataclasses.replace(
        config,
        seed=seed,
        train=[str(train_d)],
        val=[],
        validate=False,
        val_fraction=0.0,
        phase1=dataclasses.replace(config.phase1, epochs=epochs, lr=5e-4),
        phase2=dataclasses.replace(
            config.phase2, epochs=max(2, epochs // 2), lr=5e-4, samples_per_epoch=CLASSIFIER_SAMPLES
        ),
    )
    run = work / "multisite" / f"{order}-s{seed}"
    multisite_train(
        run_config,
        run,
        base_path,
        [str(source_folder)],
        MultisiteSettings(order=order, start_fraction=0.3, ramp_epochs=max(1, epochs - 2), replay_fraction=REPLAY),
        output=run / "model.safetensors",
        events=EventLog(run / "progress.jsonl"),
    )
    return {"order": order, "seed": seed, "epochs": epochs, "steps": shared.training_steps(run)}


def report(results, before, args, d_count, a_count, size, started) -> None:
    rows = [["site-A model (before)", f"{before['D']['ap']:.3f}", "—", f"{before['D']['auroc']:.3f}"]]
    rows[0] += [f"{before['A']['ap']:.3f}", "—", f"{before['A']['auroc']:.3f}", "—"]
    for order in ORDERS:
        d_ap = [r["D"]["ap"] for r in results[order]]
        a_ap = [r["A"]["ap"] for r in results[order]]
        rows.append(
            [
                f"{order} order",
                shared.mean_sd(d_ap),
                interval(np.array(d_ap) - before["D"]["ap"]),
                shared.mean_sd([r["D"]["auroc"] for r in results[order]]),
                shared.mean_sd(a_ap),
                interval(before["A"]["ap"] - np.array(a_ap)),
                shared.mean_sd([r["A"]["auroc"] for r in results[order]]),
                ", ".join(sorted({f"{r['steps']['1']}+{r['steps']['2']}" for r in results[order]})),
            ]
        )
    seeds = len(results["none"])
    print(f"machine: {machine()}")
    print(
        f"site A → site D, {size.pool_cases} D pool cases (the training split holds one out), {d_count} held-out D "
        f"and {a_count} held-out A cases, {args.epochs} phase-1 + {max(2, args.epochs // 2)} classifier epochs "
        f"({CLASSIFIER_SAMPLES} samples each) per arm, {REPLAY:.0%} replay of A, {seeds} seeds, "
        f"{(time.perf_counter() - started) / 60:.1f} min"
    )
    headers = ["arm", "D AP", "gain in D AP [95 % CI]", "D AUROC", "A AP", "forgetting: A AP lost [95 % CI]"]
    print_table([*headers, "A AUROC", "steps (phase 1 + 2)"], rows)
    print("paired difference to the none arm (mean [95 % t-interval] over seeds):")
    paired = []
    for order in ORDERS:
        if order == "none":
            continue
        rows_d = [r["D"]["ap"] - n["D"]["ap"] for r, n in zip(results[order], results["none"], strict=True)]
        rows_a = [r["A"]["ap"] - n["A"]["ap"] for r, n in zip(results[order], results["none"], strict=True)]
        paired.append([f"{order} − none", interval(rows_d), interval(rows_a)])
    print_table(["arms", "D AP", "A AP"], paired)
    steps = {f"{r['steps']['1']}+{r['steps']['2']}" for order in ORDERS for r in results[order]}
    print(f"equal optimisation steps in every arm and seed: {len(steps) == 1} ({', '.join(sorted(steps))})")
    best = max(ORDERS, key=lambda o: np.mean([r["D"]["score"] for r in results[o]]))
    print(f"best_order_on_site_D={best}")


if __name__ == "__main__":
    main()

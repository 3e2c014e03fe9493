"""Active learning at a new site: which cases should the annotators label first?

The loop (per strategy and seed): a model trained on site A → site D's unannotated pool → pick
``k`` cases by a strategy → "annotate" them (take the phantom ground truth) → fine-tune the site-A
model on everything annotated so far → evaluate on D's held-out cases (picai-eval AP and AUROC,
model grid) → repeat. Site D is the phantom site furthest from A (other resolution, TE, b-value,
ADC calibration, bias field and DWI misregistration).

Strategies: ``uncertainty`` (most uncertain first under the current model: MC dropout, TTA and
classifier entropy, :mod:`LesionAILib.adaptation.ordering`), ``random``, ``similarity`` (most similar to site A
first, the multi-site order) and ``first`` (the pool's own order, as cases arrive).

Every fine-tune has the same budget (fixed numbers of crops and classifier samples), so strategies
differ only in which cases they chose. ``label_ratio_uncertainty_vs_random`` = the number of
annotated cases uncertainty ordering needs to reach the AP that random ordering reaches with the
largest budget, divided by that budget (linear interpolation between rounds; below 1 saves labels;
"inf" if never reached).

Run: ``.venv/bin/python benchmarks/active_learning.py [--seeds 3] [--large]`` (default sized for
≈ 30 min on 2 CPU cores; ``--large`` for a GPU). Writes ``--work``/active_learning.{json,png}.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import numpy as np  # noqa: E402
import torch  # noqa: E402
from common import ROOT, machine, print_table  # noqa: E402

from LesionAILib.adaptation.ordering import case_uncertainty, descriptors, similarity_scores  # noqa: E402
from LesionAILib.evaluation.validation import prepared_detections  # noqa: E402
from LesionAILib.inference.analyzer import Analyzer  # noqa: E402
from LesionAILib.models.modelfile import load_model  # noqa: E402
from LesionAILib.phantom.cohort import write_cohort  # noqa: E402
from LesionAILib.training.cohorts import prepare_cases, read_cohort  # noqa: E402
from LesionAILib.training.config import Phase1Config, Phase2Config, TrainConfig  # noqa: E402
from LesionAILib.training.trainer import Trainer, picai_scores  # noqa: E402

STRATEGIES = ("uncertainty", "random", "similarity", "first")


@dataclasses.dataclass
class Size:
    source_cases: int = 60
    pool_cases: int = 40
    test_cases: int = 30
    rounds: int = 4
    per_round: int = 4
    grid: tuple = (16, 64, 64)
    spacing: tuple = (3.0, 1.5, 1.5)
    widths: tuple = (6, 12, 24, 24)
    source_epochs: int = 16
    source_crops_per_case: int = 4
    finetune_crops: int = 160
    finetune_classifier_epochs: int = 3
    uncertainty_samples: int = 4


LARGE = Size(120, 80, 60, 6, 8, (20, 96, 96), (3.0, 1.0, 1.0), (8, 16, 32, 32), 25, 2, 400, 6, 8)
SMOKE = Size(10, 8, 6, 2, 2, (16, 64, 64), (3.0, 1.5, 1.5), (4, 8, 8, 8), 1, 1, 16, 1, 2)


def cohort(work: Path, site: str, cases: int, seed: int) -> Path:
    folder = work / "cohorts" / f"{site}-{cases}-{seed}"
    if not (folder / "cohort.json").exists():
        write_cohort(folder, cases, site=site, seed=seed)
    return folder


def base_config(size: Size, work: Path, seed: int) -> TrainConfig:
    return TrainConfig.from_dict(
        {
            "name": "site-A-model",
            "seed": seed,
            "cache_dir": str(work / "cache"),
            "device": "auto",
            "preprocess": {"shape": list(size.grid), "spacing": list(size.spacing)},
            "model": {
                "localizer": {"variant": "fusion", "widths": list(size.widths), "dropout": 0.1},
                "classifier": {"crop": [8, 32, 32], "widths": [8, 16, 32], "hidden": 32},
            },
            "phase1": {
                "epochs": size.source_epochs,
                "batch_size": 4,
                "crops_per_case": 2,
                "crop": [size.grid[0], 48, 48],
                "patience": size.source_epochs,
            },
            "phase2": {"epochs": max(2, size.source_epochs // 2), "batch_size": 16, "patience": size.source_epochs},
        }
    )


def finetune(base_path: Path, cases, size: Size, work: Path, seed: int, tag: str) -> tuple:
    model, metadata = load_model(base_path, "cpu")
    per_case = max(1, int(np.ceil(size.finetune_crops / len(cases))))
    config = dataclasses.replace(
        base_config(size, work, seed),
        validate=False,
        phase1=dataclasses.replace(
            Phase1Config(), epochs=1, batch_size=4, crops_per_case=per_case, crop=(size.grid[0], 48, 48), lr=5e-4
        ),
        phase2=Phase2Config(epochs=size.finetune_classifier_epochs, batch_size=16, lr=5e-4),
        model=metadata.architecture,
    )
    trainer = Trainer(config, work / "runs" / tag, None, None, cases, [], initial_model=model)
    path = trainer.run("both", work / "runs" / tag / "model.safetensors")
    return load_model(path, "cpu")


def evaluate(model_and_metadata, test_cases) -> dict:
    analyzer = Analyzer(model_and_metadata, device="cpu")
    detections, labels, _ = prepared_detections(analyzer, test_cases)
    return picai_scores(detections, labels)


def pick(strategy: str, pool: list, chosen: set, k: int, current, rng, similarity: dict, samples: int) -> list:
    remaining = [c for c in pool if c.case_id not in chosen]
    if strategy == "first":
        return remaining[:k]
    if strategy == "random":
        return [remaining[i] for i in rng.choice(len(remaining), size=k, replace=False)]
    if strategy == "similarity":
        return sorted(remaining, key=lambda c: -similarity[c.case_id])[:k]
    analyzer = Analyzer(current, device="cpu")
    scores = {
        c.case_id: case_uncertainty(analyzer, c.preprocessed(analyzer.metadata.preprocess.roles), samples)["score"]
        for c in remaining
    }
    return sorted(remaining, key=lambda c: -scores[c.case_id])[:k]


def label_ratio(budgets: list[int], uncertainty: list[float], random: list[float]) -> float:
    target = random[-1]
    for i, value in enumerate(uncertainty):
        if value >= target:
            if i == 0:
                return budgets[0] / budgets[-1]
            low, high = uncertainty[i - 1], value
            fraction = (target - low) / (high - low) if high > low else 1.0
            return (budgets[i - 1] + fraction * (budgets[i] - budgets[i - 1])) / budgets[-1]
    return float("inf")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--work", default=str(ROOT / ".benchmark-work" / "active-learning"))
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--large", action="store_true", help="bigger cohorts and networks (for a GPU)")
    parser.add_argument("--smoke", action="store_true", help="tiny sizes: checks the script runs (numbers meaningless)")
    args = parser.parse_args()
    size = LARGE if args.large else SMOKE if args.smoke else Size()
    work = Path(args.work)
    started = time.perf_counter()

    source_folder = cohort(work, "A", size.source_cases, 1)
    source = read_cohort(source_folder).cases
    target = read_cohort(cohort(work, "D", size.pool_cases + size.test_cases, 2)).cases
    pool_records, test_records = target[: size.pool_cases], target[size.pool_cases :]
    config = base_config(size, work, 0)
    base_path = work / "site-A-model.safetensors"
    if not base_path.exists():
        Trainer(dataclasses.replace(config, train=[str(source_folder)]), work / "runs" / "site-A").run(
            "both", base_path
        )
    pool = prepare_cases(pool_records, config.preprocess, config.cache_dir)
    test = prepare_cases(test_records, config.preprocess, config.cache_dir)
    base = load_model(base_path, "cpu")
    base_scores = evaluate(base, test)

    analyzer = Analyzer(base, device="cpu")
    similarity = dict(
        zip(
            [r.case_id for r in pool_records],
            similarity_scores(descriptors(analyzer, source[:30]), descriptors(analyzer, pool_records)),
            strict=True,
        )
    )

    budgets = [size.per_round * (r + 1) for r in range(size.rounds)]
    results = {
        s: {"ap": np.zeros((args.seeds, size.rounds)), "auroc": np.zeros((args.seeds, size.rounds))} for s in STRATEGIES
    }
    for seed in range(args.seeds):
        for strategy in STRATEGIES:
            rng = np.random.default_rng([seed, 99])
            chosen: list = []
            current = base
            for round_index in range(size.rounds):
                chosen += pick(
                    strategy,
                    pool,
                    {c.case_id for c in chosen},
                    size.per_round,
                    current,
                    rng,
                    similarity,
                    size.uncertainty_samples,
                )
                torch.manual_seed(seed)
                current = finetune(base_path, chosen, size, work, seed, f"{strategy}-s{seed}-r{round_index}")
                scores = evaluate(current, test)
                results[strategy]["ap"][seed, round_index] = scores["ap"]
                results[strategy]["auroc"][seed, round_index] = scores["auroc"]
                print(
                    f"seed {seed} {strategy:<11} N={budgets[round_index]:>3}: AP {scores['ap']:.3f} "
                    f"AUROC {scores['auroc']:.3f}",
                    file=sys.stderr,
                    flush=True,
                )

    rows = []
    for strategy in STRATEGIES:
        ap, auroc = results[strategy]["ap"], results[strategy]["auroc"]
        rows.append(
            [
                strategy,
                *(f"{ap[:, i].mean():.3f}±{ap[:, i].std():.3f} / {auroc[:, i].mean():.3f}" for i in range(size.rounds)),
            ]
        )
    ratio = label_ratio(
        budgets, results["uncertainty"]["ap"].mean(0).tolist(), results["random"]["ap"].mean(0).tolist()
    )
    print(f"machine: {machine()}")
    print(
        f"site-A model on D's {len(test)} held-out cases before fine-tuning: AP {base_scores['ap']:.3f}, "
        f"AUROC {base_scores['auroc']:.3f}; pool {len(pool)} cases; {args.seeds} seeds; "
        f"{(time.perf_counter() - started) / 60:.1f} min"
    )
    print_table(["strategy", *[f"N={n}: AP (mean±sd) / AUROC" for n in budgets]], rows)
    write_outputs(work, budgets, results, base_scores)
    print(f"label_ratio_uncertainty_vs_random={ratio:.2f}")


def write_outputs(work: Path, budgets, results, base_scores) -> None:
    from LesionAILib.rendering import plt, save_figure

    figure, axes = plt.subplots(1, 2, figsize=(11, 4.2))
    for strategy, values in results.items():
        for axis, metric in zip(axes, ("ap", "auroc"), strict=True):
            mean, sd = values[metric].mean(0), values[metric].std(0)
            axis.errorbar(
                [0, *budgets], [base_scores[metric], *mean], yerr=[0, *sd], marker="o", capsize=3, label=strategy
            )
    for axis, metric in zip(axes, ("AP", "AUROC"), strict=True):
        axis.set_xlabel("annotated site-D cases")
        axis.set_ylabel(f"{metric} on held-out site-D cases")
        axis.grid(alpha=0.3)
    axes[0].legend()
    figure.suptitle("Active learning from site A to site D (phantoms; mean ± sd over seeds)")
    save_figure(figure, work / "active_learning.png")
    (work / "active_learning.json").write_text(
        json.dumps(
            {
                "budgets": budgets,
                "before": base_scores,
                "results": {s: {m: v.tolist() for m, v in r.items()} for s, r in results.items()},
            },
            indent=2,
        )
    )


if __name__ == "__main__":
    main()

"""Active learning at a new site: how many labels does each case-selection strategy need?

The loop (per strategy and seed): the site-A model → site D's unannotated pool → pick cases by a
strategy → "annotate" them (the phantom ground truth) → fine-tune the site-A model on everything
annotated so far → evaluate on D's held-out cases (picai-eval AP and AUROC, model grid). Site D is
the phantom site furthest from A (other resolution, TE, b-value, ADC calibration, bias field and
DWI misregistration).

Strategies: ``random``; ``first`` (the pool's arrival order); ``similarity`` (most similar to site
A first, the multi-site order); ``uncertainty`` (most uncertain under the current model: MC
dropout, TTA and classifier entropy, :mod:`LesionAILib.adaptation.ordering`); and
``uncertainty-diverse`` (of the 3k most uncertain, k chosen greedily farthest from every case
annotated so far in the site-A model's descriptor space — the improvement tried when plain
uncertainty does not beat random).

Protocol, fixed before any result was looked at:

* **Target** = 90 % of the AP reached by fine-tuning on *all* pool cases (arm ``all``), measured
  in the same run with the same seeds and budget. **Labels needed** = the smallest budget whose
  AP reaches the target (no interpolation; never reached → the whole pool, marked censored).
* Headline: labels needed on the seed-mean curves, uncertainty / random; the interval is a
  percentile bootstrap over seeds (paired: a resample takes the same seeds for every arm and for
  the target). Per-seed labels needed are tabled as mean ± sample sd.
* **Equal optimisation budget at every budget size, for every strategy**: phase 1 is one pass of
  ``CROPS`` crops (``CROPS / N`` per case; every budget divides ``CROPS``), phase 2 is
  ``CLASSIFIER_EPOCHS`` epochs of exactly ``CLASSIFIER_SAMPLES`` candidates each
  (``Phase2Config.samples_per_epoch``: shuffled passes over the mined candidates, cut at that count),
  so the step count does not depend on how many candidates the chosen cases produce. The steps
  each run took are counted from its progress log and printed.

Every fine-tune starts from the site-A model (seed 0); a seed sets the fine-tuning seed and the
random picks. Results are cached per arm and seed (``<work>/results/active-learning/``); a rerun
resumes. Run: ``.venv/bin/python benchmarks/active_learning.py`` (default: 5 seeds, budgets
4/8/12/16/24 of a 40-case pool, five strategies; ≈ 1.5 h on 2 CPU cores). Last line:
``label_ratio_uncertainty_vs_random=<r> ci_low=<a> ci_high=<b>``.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import time
from collections import Counter
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import numpy as np  # noqa: E402
import torch  # noqa: E402
from adaptation_setup import (  # noqa: E402
    ResultCache,
    Size,
    base_config,
    chosen_size,
    evaluate,
    mean_sd,
    shared_setup,
    t_interval,
    training_steps,
)
from common import ROOT, machine, print_table  # noqa: E402

from LesionAILib.adaptation.ordering import case_uncertainty, descriptors, similarity_scores  # noqa: E402
from LesionAILib.atomic_io import write_json_atomic  # noqa: E402
from LesionAILib.inference.analyzer import Analyzer  # noqa: E402
from LesionAILib.models.modelfile import load_model  # noqa: E402
from LesionAILib.training.config import Phase1Config, Phase2Config  # noqa: E402
from LesionAILib.training.mining import read_mined  # noqa: E402
from LesionAILib.training.trainer import Trainer  # noqa: E402

STRATEGIES = ("random", "first", "similarity", "uncertainty", "uncertainty-diverse")
TARGET_FRACTION = 0.9
CROPS = 240
CLASSIFIER_EPOCHS = 3
CLASSIFIER_SAMPLES = 256
UNCERTAINTY_SAMPLES = 4
BOOTSTRAP = 2000


def finetune(base_path: Path, cases, size: Size, work: Path, seed: int, tag: str, budget: tuple) -> tuple:
    """Fine-tune the site-A model on ``cases`` at the fixed ``budget`` (phase-1 crops, classifier
    samples per epoch); returns (model, metadata) and the run's record."""
    crops, classifier_samples = budget
    model, metadata = load_model(base_path, "cpu")
    config = dataclasses.replace(
        base_config(size, work, seed),
        validate=False,
        phase1=dataclasses.replace(
            Phase1Config(),
            epochs=1,
            batch_size=4,
            crops_per_case=max(1, crops // len(cases)),
            crop=(size.grid[0], 48, 48),
            lr=5e-4,
        ),
        phase2=Phase2Config(epochs=CLASSIFIER_EPOCHS, batch_size=16, lr=5e-4, samples_per_epoch=classifier_samples),
        model=metadata.architecture,
    )
    run = work / "runs" / tag
    torch.manual_seed(seed)
    path = Trainer(config, run, None, None, cases, [], initial_model=model).run("both", run / "model.safetensors")
    mined = read_mined(run, config.digest()) or []
    record = {
        "steps": training_steps(run),
        "crops": config.phase1.crops_per_case * len(cases),
        "candidates": len(mined),
    }
    return load_model(path, "cpu"), record


def uncertainties(current, cases, samples: int) -> dict[str, float]:
    analyzer = Analyzer(current, device="cpu")
    roles = analyzer.metadata.preprocess.roles
    return {c.case_id: case_uncertainty(analyzer, c.preprocessed(roles), samples)["score"] for c in cases}


def pick(strategy: str, remaining: list, chosen_ids: list[str], k: int, rng, context: dict, current) -> list:
    """The next ``k`` cases of ``remaining`` by ``strategy``."""
    if strategy == "first":
        return remaining[:k]
    if strategy == "random":
        return [remaining[i] for i in rng.choice(len(remaining), size=k, replace=False)]
    if strategy == "similarity":
        return sorted(remaining, key=lambda c: (-context["similarity"][c.case_id], c.case_id))[:k]
    scores = context["base_uncertainty"] if current is None else uncertainties(current, remaining, UNCERTAINTY_SAMPLES)
    ranked = sorted(remaining, key=lambda c: (-scores[c.case_id], c.case_id))
    if strategy == "uncertainty":
        return ranked[:k]
    # uncertainty-diverse: among the 3k most uncertain, greedily the one farthest from all annotated
    features, picked, pool = context["features"], [], ranked[: 3 * k]
    for _ in range(k):
        anchors = [features[c] for c in chosen_ids + [p.case_id for p in picked]]
        if not anchors:
            best = pool[0]
        else:
            best = max(pool, key=lambda c: min(np.linalg.norm(features[c.case_id] - a) for a in anchors))
        picked.append(best)
        pool = [c for c in pool if c is not best]
    return picked


def run_arm(strategy, seed, budgets, pool, test, base_path, size, work, cache, context) -> dict:
    """Every budget of one strategy and seed, resuming from the cached rounds."""
    document = cache.load(strategy, seed) or {"strategy": strategy, "seed": seed, "rounds": []}
    done = [r["budget"] for r in document["rounds"]]
    if done != budgets[: len(done)]:  # cached with other budgets: those rounds do not apply
        document["rounds"] = []
    rng = np.random.default_rng([seed, 99])
    chosen: list = []
    current = None
    by_id = {c.case_id: c for c in pool}
    for index, budget in enumerate(budgets):
        remaining = [c for c in pool if c.case_id not in {x.case_id for x in chosen}]
        tag = f"{strategy}-s{seed}-n{budget}"
        if index < len(document["rounds"]):  # done in an earlier session: take its choice
            if strategy == "random":  # keep the random stream where the first session had it
                rng.choice(len(remaining), size=budget - len(chosen), replace=False)
            chosen = [by_id[i] for i in document["rounds"][index]["chosen"]]
            if strategy.startswith("uncertainty") and index + 1 == len(document["rounds"]):
                current = load_model(work / "runs" / tag / "model.safetensors", "cpu")
            continue
        if strategy == "all":
            picked = remaining
        else:
            picked = pick(strategy, remaining, [c.case_id for c in chosen], budget - len(chosen), rng, context, current)
        chosen += picked
        current, record = finetune(base_path, chosen, size, work, seed, tag, context["budget"])
        scores = evaluate(current, test)
        document["rounds"].append({"budget": budget, "chosen": [c.case_id for c in chosen], **scores, **record})
        cache.save(strategy, seed, document)
        print(
            f"seed {seed} {strategy:<19} N={budget:>3}: AP {scores['ap']:.3f} AUROC {scores['auroc']:.3f} "
            f"steps {record['steps']} candidates {record['candidates']}",
            file=sys.stderr,
            flush=True,
        )
    return document


def labels_needed(curve: np.ndarray, target: float, budgets: list[int], pool_size: int) -> tuple[int, bool]:
    """The smallest budget whose AP reaches ``target``; (pool size, True) when none does."""
    for budget, value in zip(budgets, curve, strict=True):
        if value >= target:
            return budget, False
    return pool_size, True


def bootstrap_ratio(curves: dict, full: np.ndarray, budgets, pool_size, arm: str, seed: int = 7) -> tuple:
    """Percentile bootstrap over seeds of labels-needed(arm) / labels-needed(random) (paired)."""
    rng = np.random.default_rng(seed)
    count = len(full)
    ratios = []
    for _ in range(BOOTSTRAP):
        take = rng.integers(0, count, count)
        target = TARGET_FRACTION * full[take].mean()
        arm_needed, _ = labels_needed(curves[arm][take].mean(0), target, budgets, pool_size)
        random_needed, _ = labels_needed(curves["random"][take].mean(0), target, budgets, pool_size)
        ratios.append(arm_needed / random_needed)
    return float(np.percentile(ratios, 2.5)), float(np.percentile(ratios, 97.5))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--work", default=str(ROOT / ".benchmark-work" / "adaptation"))
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--budgets", default="4,8,12,16,24", help="annotated-case counts (each divides 240)")
    parser.add_argument("--strategies", default=",".join(STRATEGIES))
    parser.add_argument("--crops", type=int, default=CROPS, help="phase-1 crops per fine-tune")
    parser.add_argument("--classifier-samples", type=int, default=CLASSIFIER_SAMPLES, help="per classifier epoch")
    parser.add_argument("--report-only", action="store_true", help="tables of the seeds already cached; trains nothing")
    parser.add_argument(
        "--train-only",
        action="store_true",
        help="train the listed strategies' arms (not `all`), no report: two processes can share a work folder",
    )
    parser.add_argument("--figure", default=str(ROOT / "docs" / "active_learning.png"))
    parser.add_argument("--large", action="store_true", help="bigger cohorts and networks (for a GPU)")
    parser.add_argument("--quick", action="store_true", help="6-epoch site-A model, 20 test cases (loaded CPU)")
    parser.add_argument("--smoke", action="store_true", help="tiny sizes: checks the script runs (numbers meaningless)")
    args = parser.parse_args()
    size = chosen_size(args)
    budgets = [int(b) for b in args.budgets.split(",")]
    strategies = [s for s in args.strategies.split(",") if s]
    if not args.train_only and ("random" not in strategies or "uncertainty" not in strategies):
        sys.exit("--strategies must include random and uncertainty (the headline compares them)")
    work = Path(args.work)
    started = time.perf_counter()

    setup = shared_setup(size, work)
    source, pool_records, base_path = setup.source, setup.pool, setup.base_path
    budgets = [b for b in budgets if b < len(pool_records)]
    pool, test = setup.prepared["pool"], setup.prepared["d_test"]
    base = load_model(base_path, "cpu")
    cache = ResultCache(work / "results" / "active-learning")
    context = base_context(work, base, source, pool_records, pool, cache)
    base_scores = cache.load("base", 0) or evaluate(base, test)
    cache.save("base", 0, base_scores)
    context["budget"] = (args.crops, args.classifier_samples)

    documents: dict[str, dict[int, dict]] = {arm: {} for arm in ["all", *strategies]}
    for seed in range(args.seeds):
        if args.report_only:
            cached = {arm: cache.load(arm, seed) for arm in documents}
            wanted = {arm: [len(pool)] if arm == "all" else budgets for arm in documents}
            if all([r["budget"] for r in cached[arm].get("rounds", [])] == wanted[arm] for arm in documents):
                for arm in documents:
                    documents[arm][seed] = cached[arm]
            continue
        if not args.train_only:
            documents["all"][seed] = run_arm(
                "all", seed, [len(pool)], pool, test, base_path, size, work, cache, context
            )
        for strategy in strategies:
            documents[strategy][seed] = run_arm(
                strategy, seed, budgets, pool, test, base_path, size, work, cache, context
            )
    if args.train_only:
        print(f"trained {', '.join(strategies)} for {args.seeds} seeds; run without --train-only for the report")
        return
    if not documents["all"]:
        sys.exit("no seed has finished every arm yet")
    if len(documents["all"]) < args.seeds:
        print(f"PARTIAL: {len(documents['all'])} of {args.seeds} seeds have finished every arm")
    report(documents, strategies, budgets, len(pool), len(test), base_scores, args, started, Path(args.figure))


def base_context(work: Path, base, source, pool_records, pool, cache: ResultCache) -> dict:
    """Similarity to site A, descriptors and base-model uncertainty of the pool (computed once, cached)."""
    path = cache.folder / "pool-context.json"
    if path.exists():
        saved = json.loads(path.read_text(encoding="utf-8"))
    else:
        analyzer = Analyzer(base, device="cpu")
        reference, rows = descriptors(analyzer, source[:30]), descriptors(analyzer, pool_records)
        mean, std = reference.mean(0), reference.std(0)
        std[std < 1e-8] = 1.0
        ids = [r.case_id for r in pool_records]
        saved = {
            "similarity": dict(zip(ids, similarity_scores(reference, rows).tolist(), strict=True)),
            "features": dict(zip(ids, ((rows - mean) / std).tolist(), strict=True)),
            "base_uncertainty": uncertainties(base, pool, UNCERTAINTY_SAMPLES),
        }
        write_json_atomic(path, saved)
    saved["features"] = {k: np.asarray(v) for k, v in saved["features"].items()}
    return saved


def report(documents, strategies, budgets, pool_size, test_size, base_scores, args, started, figure) -> None:
    seeds = sorted(documents["all"])
    full = np.array([documents["all"][s]["rounds"][0]["ap"] for s in seeds])
    curves = {s: np.array([[r["ap"] for r in documents[s][seed]["rounds"]] for seed in seeds]) for s in strategies}
    aurocs = {s: np.array([[r["auroc"] for r in documents[s][seed]["rounds"]] for seed in seeds]) for s in strategies}
    target = TARGET_FRACTION * full.mean()
    print(f"machine: {machine()}")
    print(
        f"site-A model on D's {test_size} held-out cases before fine-tuning: AP {base_scores['ap']:.3f}, AUROC "
        f"{base_scores['auroc']:.3f}; pool {pool_size} cases; {len(seeds)} seeds; budget per fine-tune: "
        f"{args.crops} phase-1 crops, {CLASSIFIER_EPOCHS} × {args.classifier_samples} classifier samples; "
        f"{(time.perf_counter() - started) / 60:.1f} min"
    )
    all_auroc = [documents["all"][s]["rounds"][0]["auroc"] for s in seeds]
    print(
        f"all {pool_size} pool cases annotated: AP {mean_sd(full)}, AUROC {mean_sd(all_auroc)}; "
        f"target = {TARGET_FRACTION:.0%} of its mean AP = {target:.3f}"
    )
    if target <= base_scores["ap"]:
        print(
            f"WARNING: the target ({target:.3f}) does not exceed the untuned site-A model's AP "
            f"({base_scores['ap']:.3f}): every budget reaches it, so labels needed says nothing at this size"
        )
    rows = []
    for strategy in strategies:
        cells = [
            f"{mean_sd(curves[strategy][:, i])} / {aurocs[strategy][:, i].mean():.3f}" for i in range(len(budgets))
        ]
        needed, censored = labels_needed(curves[strategy].mean(0), target, budgets, pool_size)
        per_seed = [
            labels_needed(curves[strategy][j], TARGET_FRACTION * full[j], budgets, pool_size)[0]
            for j in range(len(seeds))
        ]
        rows.append([strategy, *cells, f"{'≥ ' if censored else ''}{needed}", mean_sd(per_seed)])
    headers = ["strategy", *[f"N={n}: AP / AUROC" for n in budgets], "labels needed", "per seed"]
    print_table(headers, rows)
    print("paired AP difference to random (mean and 95 % t-interval over seeds):")
    difference_rows = []
    for strategy in strategies:
        if strategy == "random":
            continue
        cells = []
        for i in range(len(budgets)):
            differences = curves[strategy][:, i] - curves["random"][:, i]
            low, high = t_interval(differences)
            cells.append(f"{differences.mean():+.3f} [{low:+.3f}, {high:+.3f}]")
        difference_rows.append([strategy, *cells])
    print_table(["strategy", *[f"N={n}" for n in budgets]], difference_rows)
    steps = {
        (s, seed, r["budget"]): tuple(r["steps"].values())
        for s in strategies
        for seed, d in documents[s].items()
        for r in d["rounds"]
    }
    equal = all(len({v for (_, _, b), v in steps.items() if b == budget}) == 1 for budget in budgets)
    print(
        "optimisation steps (phase 1, phase 2) per budget: "
        + ", ".join(f"N={b}: {sorted({v for (_, _, n), v in steps.items() if n == b})}" for b in budgets)
        + f"; equal across strategies: {equal}"
    )
    if not equal:
        # Records made before training_steps counted each (phase, epoch, batch) once hold a
        # killed attempt's steps as well; name them so the reader can tell that from a budget gap.
        usual = Counter(steps.values()).most_common(1)[0][0]
        odd = [f"{s}-s{seed} N={b}: {v}" for (s, seed, b), v in sorted(steps.items()) if v != usual]
        print(f"  records off the usual {usual}: " + ", ".join(odd))
    write_figure(figure, budgets, curves, aurocs, full, base_scores, pool_size)
    ratios = {}
    for strategy in strategies:
        if strategy == "random":
            continue
        needed, _ = labels_needed(curves[strategy].mean(0), target, budgets, pool_size)
        random_needed, _ = labels_needed(curves["random"].mean(0), target, budgets, pool_size)
        low, high = bootstrap_ratio(curves, full, budgets, pool_size, strategy)
        ratios[strategy] = (needed / random_needed, low, high)
        print(f"label ratio {strategy} vs random: {needed / random_needed:.2f} [{low:.2f}, {high:.2f}]")
    ratio, low, high = ratios["uncertainty"]
    print(f"label_ratio_uncertainty_vs_random={ratio:.2f} ci_low={low:.2f} ci_high={high:.2f}")


def write_figure(path: Path, budgets, curves, aurocs, full, base_scores, pool_size) -> None:
    from LesionAILib.rendering import plt, save_figure

    figure, axes = plt.subplots(1, 2, figsize=(11, 4.2))
    for strategy in curves:
        for axis, values, metric in ((axes[0], curves[strategy], "ap"), (axes[1], aurocs[strategy], "auroc")):
            mean = np.concatenate([[base_scores[metric]], values.mean(0)])
            sd = np.concatenate([[0.0], values.std(0, ddof=1) if len(values) > 1 else np.zeros(len(budgets))])
            line = axis.plot([0, *budgets], mean, marker="o", label=strategy)[0]
            axis.fill_between([0, *budgets], mean - sd, mean + sd, color=line.get_color(), alpha=0.15)
    axes[0].axhline(
        TARGET_FRACTION * full.mean(),
        color="black",
        linestyle="--",
        linewidth=1,
        label=f"target: {TARGET_FRACTION:.0%} of all {pool_size} annotated",
    )
    full_sd = full.std(ddof=1) if len(full) > 1 else 0.0
    axes[0].errorbar([pool_size], [full.mean()], yerr=[full_sd], color="black", marker="s", capsize=3)
    axes[0].axhline(full.mean(), color="grey", linestyle=":", linewidth=1, label=f"all {pool_size} annotated")
    for axis, metric in zip(axes, ("AP", "AUROC"), strict=True):
        axis.set_xlabel("annotated site-D cases")
        axis.set_ylabel(f"{metric} on held-out site-D cases")
        axis.grid(alpha=0.3)
    axes[0].legend(fontsize=8)
    figure.suptitle(f"Active learning from site A to site D (phantoms; mean ± sample sd over {len(full)} seeds)")
    save_figure(figure, path)


if __name__ == "__main__":
    main()

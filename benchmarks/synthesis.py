"""Abnormality by synthesis: label-free map vs the supervised detector vs the two fused (phantoms), and on ProstateX.

**Phantoms.** The 3D inpainting network trains on site-A phantoms (labelled lesions left out of the
loss; no label is used otherwise) and calibrates its normal-tissue statistics on held-out site-A
cases. Validation site B chooses the fusion weight; sites C (inside the training sites' range) and
E (outside it, issue 14) are held out and reported in their own tables, E also with the
normal-tissue statistics refitted on lesion-free site-E cases (what a site does with its own
negative studies: no lesion label; the network is not retrained). For each B/C/E case, on the
synthesis grid (3 × 1 × 1 mm around the gland, whose mask is the phantom's own):

* **abnormality**: candidates (PI-CAI dynamic extraction) of the [0, 1]-scaled abnormality map;
* **detector**: the bundled demo model's detection map (two-phase, classifier probabilities) —
  and, like for like with the others, its combined heatmap through the same extraction;
* **fused**: ``w · heatmap + (1 − w) · abnormality`` through the same extraction, ``w`` in
  {0.25, 0.5, 0.75} chosen by the PI-CAI ranking score on site B only.

Detection maps go to the T2 grid and are scored with picai-eval (AUROC, AP, FROC; 95 % case
bootstrap intervals) against the csPCa masks.

**ProstateX** (real patients; 305 findings, the dataset's patient-grouped 5 folds): per fold, the
2D inpainting (:mod:`LesionAILib.synthesis.patch_inpainting`: ADC + high-b, central 12 mm excluded
from the loss) and the patch classifier (reduced recipe, below) train on the four training folds;
the held-out findings get the abnormality score (centre hidden, synthesised from the ring), the
classifier probability, and the fused score = mean of the two after standardising each by its
training-fold mean and SD (no fitted weight: nothing tuned on the test fold). Also a logistic
stacking fitted on the training folds' *out-of-fold* scores of the other outer folds (optimistic:
those scores came from models that saw the test fold's findings as training data). AUROC pooled
out of fold, 95 % patient-bootstrap intervals (:func:`LesionAILib.evaluation.roc.summarise`).

Run: ``nice -n 10 .venv/bin/python benchmarks/synthesis.py [--quick]``; everything is cached per
case / fold / seed under ``.lesionai-cache/benchmarks/synthesis`` so a stopped run resumes.
Last line: ``phantom_abnormality_auroc=… phantom_fused_auroc=… prostatex_fused_cv_auroc=…
prostatex_classifier_cv_auroc=…``.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")
sys.path.insert(0, str(Path(__file__).resolve().parent))

import numpy as np  # noqa: E402
import SimpleITK as sitk  # noqa: E402
import torch  # noqa: E402
from common import ROOT, machine, print_table, require_shared  # noqa: E402

CACHE = ROOT / ".lesionai-cache" / "benchmarks" / "synthesis"
WEIGHTS = (0.25, 0.5, 0.75)


def log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


# --------------------------------------------------------------------------- phantoms
def phantom_volumes(site: str, seed: int, indices: range):
    from LesionAILib.phantom.cases import generate_case
    from LesionAILib.synthesis.datasets import load_volume, save_volume
    from LesionAILib.synthesis.volumes import phantom_volume

    volumes = []
    for index in indices:
        path = CACHE / "volumes" / f"{site}{index:04d}-s{seed}.npz"
        if not path.exists():
            path.parent.mkdir(parents=True, exist_ok=True)
            save_volume(phantom_volume(generate_case(seed, site, index)), path)
        volumes.append(load_volume(path))
    log(f"site {site}: {len(volumes)} volumes ready")
    return volumes


def synthesis_model(train_count: int, steps: int, seed: int):
    from LesionAILib.synthesis.mapping import MaskSettings
    from LesionAILib.synthesis.model_file import SynthesisMetadata, load_synthesis_model, save_synthesis_model
    from LesionAILib.synthesis.network import InpaintingConfig
    from LesionAILib.synthesis.training import SynthesisTraining, calibrate, train_inpainting
    from LesionAILib.synthesis.volumes import SYNTHESIS_PREPROCESS

    path = CACHE / f"phantom-synthesis-n{train_count}-steps{steps}-seed{seed}.safetensors"
    if path.exists():
        return load_synthesis_model(path)
    calibration_count = max(2, train_count // 5)
    volumes = phantom_volumes("A", 1, range(train_count + calibration_count))
    recipe, masks, architecture = SynthesisTraining(steps=steps, seed=seed), MaskSettings(), InpaintingConfig()
    start = time.perf_counter()
    net, history = train_inpainting(
        volumes[:train_count],
        architecture,
        recipe,
        masks,
        CACHE / f"run-n{train_count}-steps{steps}-seed{seed}",
        [f"A{i}" for i in range(train_count)],
        lambda s, n, loss: log(f"synthesis step {s}/{n}: loss {loss:.4f}"),
    )
    statistics = calibrate(net, volumes[train_count:], masks)
    metadata = SynthesisMetadata(
        name=f"phantom synthesis (site A, {train_count} cases, {steps} steps)",
        architecture=architecture,
        normal_tissue=statistics,
        preprocess=SYNTHESIS_PREPROCESS,
        masks=masks.to_dict(),
        training={
            "cases": train_count,
            "calibration_cases": calibration_count,
            "recipe": recipe.to_dict(),
            "history": history,
            "minutes": round((time.perf_counter() - start) / 60, 1),
        },
        synthetic_training_data=True,
    )
    save_synthesis_model(net, metadata, path)
    return load_synthesis_model(path)


def phantom_maps(model, site: str, seed: int, indices: range) -> list[dict]:
    """Per case (cached): the three detection maps on the T2 grid, the label, timings."""
    from LesionAILib.inference.analyzer import Analyzer
    from LesionAILib.phantom.cases import generate_case
    from LesionAILib.preprocessing.resampling import resample_sitk_image
    from LesionAILib.synthesis.analysis import AbnormalityAnalyzer
    from LesionAILib.synthesis.normalisation import candidate_scale

    detector = Analyzer(device="cpu")
    abnormality = AbnormalityAnalyzer(model, device="cpu")
    volumes = phantom_volumes(site, seed, indices)
    rows = []
    for index, volume in zip(indices, volumes, strict=True):
        path = CACHE / "maps" / f"{site}{index:04d}-s{seed}-{model[1].sha256[:12]}.npz"
        if not path.exists():
            phantom = generate_case(seed, site, index)
            case = phantom_case(phantom)
            start = time.perf_counter()
            combined, _, _ = abnormality.map_volume(volume)
            seconds = time.perf_counter() - start
            result = detector.analyze(case)
            heatmap = sitk.GetArrayFromImage(resample_sitk_image(result.heatmap, volume.grid, "linear"))
            maps = {
                "abnormality": np.where(volume.region, candidate_scale(combined), 0.0),
                "heatmap": np.where(volume.region, heatmap, 0.0),
            }
            path.parent.mkdir(parents=True, exist_ok=True)
            np.savez(
                path,
                detection=sitk.GetArrayFromImage(result.detection_map),
                label=sitk.GetArrayFromImage(phantom.cspca_mask),
                seconds=seconds,
                **maps,
            )
        with np.load(path) as data:
            rows.append({k: data[k] for k in data.files} | {"volume": volume, "case_id": f"{site}{index:04d}"})
        log(f"{site}{index:04d}: maps ready")
    return rows


def phantom_case(phantom):
    from LesionAILib.studies.case import SeriesSource, make_case

    sources = {r: SeriesSource(r, "synthetic", [phantom.case_id]) for r in ("t2w", "adc", "hbv")}
    return make_case({"t2w": phantom.t2w, "adc": phantom.adc, "hbv": phantom.hbv}, phantom.patient_id, "", sources)


def detection_on_t2(probability_map: np.ndarray, volume) -> np.ndarray:
    from LesionAILib.inference.candidate_regions import candidate_map_in_t2
    from LesionAILib.inference.candidates import detection_map, extract_candidates

    candidates, labels = extract_candidates(probability_map, volume.grid)
    regions = candidate_map_in_t2(labels, candidates, volume.grid, volume.t2_grid)
    return detection_map(regions.labels, regions.candidates)


def evaluate(rows: list[dict], method, bootstrap: int):
    from LesionAILib.evaluation.metrics import evaluate_arrays

    maps = [method(row) for row in rows]
    return evaluate_arrays(maps, [row["label"] for row in rows], [row["case_id"] for row in rows], bootstrap=bootstrap)


PHANTOM_TEST_SITES = ("C", "E")


def phantom_methods(weight: float) -> dict:
    fused = lambda w: lambda r: detection_on_t2(w * r["heatmap"] + (1 - w) * r["abnormality"], r["volume"])  # noqa: E731
    return {
        "abnormality map alone (no lesion labels)": lambda r: detection_on_t2(r["abnormality"], r["volume"]),
        "detector: bundled model (two-phase detection map)": lambda r: r["detection"],
        "detector heatmap, same extraction": lambda r: detection_on_t2(r["heatmap"], r["volume"]),
        f"fused: {weight:g}·heatmap + {1 - weight:g}·abnormality": fused(weight),
    }


def cell(value, interval) -> str:
    if value is None:
        return "n/a"
    return f"{value:.3f}" + (f" [{interval[0]:.3f}, {interval[1]:.3f}]" if interval else "")


def site_table(title: str, test: list[dict], weight: float, bootstrap: int) -> tuple[float, float]:
    """Print one held-out site's table; returns (abnormality alone, fused) AUROC."""
    rows, results = [], {}
    for name, method in phantom_methods(weight).items():
        result = evaluate(test, method, bootstrap)
        results[name] = result
        froc = result.froc_sensitivity.get(1.0)
        rows.append(
            [
                name,
                cell(result.auroc, result.ci95.get("auroc")),
                cell(result.ap, result.ci95.get("ap")),
                cell(result.score, result.ci95.get("score")),
                "n/a" if froc is None else f"{froc:.3f}",
            ]
        )
    positives = sum(int(r["label"].any()) for r in test)
    print(f"{title} ({len(test)} cases, {positives} with csPCa)")
    print_table(["method", "AUROC [95% CI]", "AP [95% CI]", "ranking score", "FROC sens @ 1 FP"], rows)
    seconds = [float(r["seconds"]) for r in test]
    print(
        f"abnormality map per case (synthesis grid, CPU): median {np.median(seconds):.1f} s, "
        f"max {np.max(seconds):.1f} s over {len(seconds)} cases"
    )
    names = list(results)
    return results[names[0]].auroc, results[names[3]].auroc


def recalibrated_on_site(model, site: str, count: int):
    """The same network with its normal-tissue statistics refitted on ``count`` lesion-free cases of ``site``.

    What a site does with its own negative studies: no lesion label, only the case-level fact that a
    study is negative. The cases (indices from 100, seed 2) are not among the test cases (0 … n-1).
    """
    from LesionAILib.synthesis.model_file import load_synthesis_model, save_synthesis_model
    from LesionAILib.synthesis.training import calibrate

    net, metadata = model
    path = CACHE / f"phantom-synthesis-{metadata.sha256[:12]}-calibrated-{site}{count}.safetensors"
    if path.exists():
        return load_synthesis_model(path)
    negatives, index = [], 100
    while len(negatives) < count:
        volume = phantom_volumes(site, 2, range(index, index + 1))[0]
        if volume.lesions is not None and not volume.lesions.any():
            negatives.append(volume)
        index += 1
    statistics = calibrate(net, negatives, metadata.mask_settings)
    log(f"site {site} normal tissue from {count} negative cases (indices 100-{index - 1}): {statistics}")
    recalibrated = dataclasses.replace(
        metadata,
        name=f"{metadata.name}, normal tissue of site {site}",
        normal_tissue=statistics,
        training={**metadata.training, "recalibrated_on": f"{count} lesion-free site-{site} cases"},
        sha256="",
    )
    save_synthesis_model(net, recalibrated, path)
    return load_synthesis_model(path)


def run_phantoms(args) -> tuple[float, float]:
    """Tables for held-out sites C (inside the training sites' range) and E (outside it), and E with the
    normal-tissue statistics refitted on E's own negative cases; returns C's AUROCs."""
    model = synthesis_model(args.train_cases, args.steps, args.seed)
    validation = phantom_maps(model, "B", 2, range(args.val_cases))
    weight_scores = {w: evaluate(validation, phantom_methods(w)[list(phantom_methods(w))[3]], 0).score for w in WEIGHTS}
    weight = max(WEIGHTS, key=lambda w: weight_scores[w] or 0.0)
    log("fusion weight by site-B ranking score: " + ", ".join(f"{w}: {s:.3f}" for w, s in weight_scores.items()))
    about = (
        f"synthesis model: {args.train_cases} site-A training cases, {args.steps} steps; fusion weight {weight:g} "
        f"chosen on site B ({len(validation)} cases)"
    )
    headline = {}
    for site in PHANTOM_TEST_SITES:
        test = phantom_maps(model, site, 2, range(args.test_cases))
        headline[site] = site_table(f"Phantoms, held-out site {site}; {about}", test, weight, args.bootstrap)
    recalibrated = recalibrated_on_site(model, "E", args.val_cases)
    test = phantom_maps(recalibrated, "E", 2, range(args.test_cases))
    title = f"Phantoms, held-out site E, normal tissue refitted on {args.val_cases} negative site-E cases; {about}"
    site_table(title, test, weight, args.bootstrap)
    return headline["C"]


# --------------------------------------------------------------------------- ProstateX
def prostatex_fold_scores(findings, fold: int, args) -> dict:
    """Out-of-fold scores of one fold (and in-sample ones of its training findings), each part cached."""
    train, test = np.nonzero(findings.folds != fold)[0], np.nonzero(findings.folds == fold)[0]
    inpainting = CACHE / "prostatex" / f"fold{fold}-inpainting-steps{args.patch_steps}-seed{args.seed}.npz"
    classifier_path = CACHE / "prostatex" / f"fold{fold}-classifier-members{args.members}-seed{args.seed}.npz"
    if not inpainting.exists():
        inpainting.parent.mkdir(parents=True, exist_ok=True)
        np.savez(inpainting, **fold_abnormality_scores(findings, fold, train, test, args))
    if not classifier_path.exists():
        np.savez(classifier_path, **fold_classifier_scores(findings, fold, train, test, args))
    scores = {}
    for path in (inpainting, classifier_path):
        with np.load(path) as data:
            scores |= {k: data[k] for k in data.files}
    log(f"fold {fold} done")
    return scores


def fold_abnormality_scores(findings, fold: int, train: np.ndarray, test: np.ndarray, args) -> dict:
    from LesionAILib.synthesis.patch_inpainting import (
        PatchTraining,
        abnormality_scores,
        normal_tissue_statistics,
        train_patch_inpainting,
    )

    images = findings.inputs.images[:, 1:3].numpy()
    recipe = PatchTraining(steps=args.patch_steps, batch=16, seed=args.seed + fold)
    start = time.perf_counter()
    net = train_patch_inpainting(
        images[train], recipe, lambda s, n, loss: log(f"fold {fold} inpainting {s}/{n}: {loss:.4f}")
    )
    statistics = normal_tissue_statistics(net, images[train], recipe)
    inpainting_seconds = time.perf_counter() - start
    scores = {f"train_{k}": v for k, v in abnormality_scores(net, statistics, images[train]).items()}
    scores |= {f"test_{k}": v for k, v in abnormality_scores(net, statistics, images[test]).items()}
    scores["inpainting_seconds"] = np.array(inpainting_seconds)
    return scores


def fold_classifier_scores(findings, fold: int, train: np.ndarray, test: np.ndarray, args) -> dict:
    from LesionAILib.prostatex.classifier import PatchClassifierConfig
    from LesionAILib.prostatex.classifier_training import TrainingSettings, fit_classifier

    scores = {}
    config = PatchClassifierConfig(members=args.members)
    settings = TrainingSettings(epoch_choices=(120,))
    subset = findings.subset(train)
    classifier, _ = fit_classifier(
        subset.inputs, subset.labels, subset.folds, config, settings, args.seed + 1000 * fold
    )
    held = findings.subset(test)
    scores["train_classifier"] = classifier.probabilities(subset.inputs, list(subset.zones))
    scores["test_classifier"] = classifier.probabilities(held.inputs, list(held.zones))
    return scores


def _logit(p: np.ndarray) -> np.ndarray:
    p = np.clip(p, 1e-6, 1 - 1e-6)
    return np.log(p / (1 - p))


def _standardised(train: np.ndarray, test: np.ndarray) -> np.ndarray:
    return (test - train.mean()) / max(train.std(), 1e-9)


def _logistic(features: np.ndarray, labels: np.ndarray) -> np.ndarray:
    x = torch.as_tensor(np.c_[features, np.ones(len(features))], dtype=torch.float64)
    y = torch.as_tensor(labels, dtype=torch.float64)
    weights = torch.zeros(x.shape[1], dtype=torch.float64, requires_grad=True)
    optimizer = torch.optim.LBFGS([weights], max_iter=200, line_search_fn="strong_wolfe")

    def objective():
        optimizer.zero_grad()
        loss = torch.nn.functional.binary_cross_entropy_with_logits(x @ weights, y) + 1e-3 * weights[:-1].pow(2).sum()
        loss.backward()
        return loss

    optimizer.step(objective)
    return weights.detach().numpy()


def run_prostatex(args) -> tuple[float, float]:
    from LesionAILib.evaluation.roc import summarise
    from LesionAILib.prostatex.findings import load_findings

    findings = load_findings(require_shared("prostatex-findings"))
    folds = {int(fold): prostatex_fold_scores(findings, int(fold), args) for fold in np.unique(findings.folds)}
    methods = {
        name: np.zeros(len(findings))
        for name in (
            "abnormality score alone (mean robust z, no labels)",
            "signed abnormality (ADC below, high-b above synthesis)",
            "patch classifier alone",
            "fused: classifier + abnormality (standardised mean)",
            "fused: classifier + signed abnormality (standardised mean)",
            "fused: logistic stacking (optimistic)",
        )
    }
    names = list(methods)
    out_of_fold = {}
    for fold, scores in folds.items():
        test = findings.folds == fold
        out_of_fold[fold] = (scores["test_classifier"], scores["test_signed"])
        methods[names[0]][test] = scores["test_abnormality"]
        methods[names[1]][test] = scores["test_signed"]
        methods[names[2]][test] = scores["test_classifier"]
        train_logit, test_logit = _logit(scores["train_classifier"]), _logit(scores["test_classifier"])
        for name, key in ((names[3], "abnormality"), (names[4], "signed")):
            methods[name][test] = 0.5 * (
                _standardised(train_logit, test_logit) + _standardised(scores[f"train_{key}"], scores[f"test_{key}"])
            )
    for fold in folds:
        others = [f for f in folds if f != fold]
        features = np.concatenate([np.c_[_logit(out_of_fold[f][0]), out_of_fold[f][1]] for f in others])
        labels = np.concatenate([findings.labels[findings.folds == f] for f in others])
        weights = _logistic(features, labels)
        test = findings.folds == fold
        methods[names[5]][test] = (
            np.c_[_logit(out_of_fold[fold][0]), out_of_fold[fold][1], np.ones(test.sum())] @ weights
        )
    summaries = {
        n: summarise(findings.labels, s, findings.folds, findings.patients, args.bootstrap) for n, s in methods.items()
    }
    print(
        f"ProstateX findings, patient-grouped 5-fold CV ({len(findings)} findings, "
        f"{findings.labels.sum()} significant); "
        f"2D inpainting {args.patch_steps} steps per fold; classifier {args.members} members, "
        "120 epochs (reduced recipe)"
    )
    rows = [
        [
            n,
            f"{s.auroc:.3f} [{s.interval[0]:.3f}, {s.interval[1]:.3f}]",
            f"{s.fold_mean:.3f} ({s.fold_sd:.3f})",
            f"{s.sensitivity_at_90_specificity:.3f}",
        ]
        for n, s in summaries.items()
    ]
    print_table(["method", "CV AUROC [95% CI]", "fold AUROC mean (sd)", "sens @ 90% spec"], rows)
    paired = paired_difference(findings, methods[names[3]], methods[names[2]], args.bootstrap)
    print(f"fused − classifier AUROC: {paired[0]:+.3f} [{paired[1]:+.3f}, {paired[2]:+.3f}] (paired patient bootstrap)")
    return summaries[names[3]].auroc, summaries[names[2]].auroc


def paired_difference(findings, first: np.ndarray, second: np.ndarray, resamples: int) -> tuple[float, float, float]:
    from LesionAILib.evaluation.roc import auroc

    patients = np.unique(findings.patients)
    rows = {p: np.nonzero(findings.patients == p)[0] for p in patients}
    rng = np.random.default_rng(0)
    differences = []
    for _ in range(resamples):
        drawn = np.concatenate([rows[p] for p in rng.choice(patients, len(patients))])
        labels = findings.labels[drawn]
        if 0 < labels.sum() < len(labels):
            differences.append(auroc(labels, first[drawn]) - auroc(labels, second[drawn]))
    point = auroc(findings.labels, first) - auroc(findings.labels, second)
    low, high = np.percentile(differences, [2.5, 97.5])
    return float(point), float(low), float(high)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="smoke run: tiny sizes")
    parser.add_argument("--train-cases", type=int, default=16)
    parser.add_argument("--steps", type=int, default=300, help="3D inpainting steps")
    parser.add_argument("--val-cases", type=int, default=10)
    parser.add_argument("--test-cases", type=int, default=24)
    parser.add_argument("--patch-steps", type=int, default=300, help="2D inpainting steps per fold")
    parser.add_argument("--members", type=int, default=3, help="patch-classifier members per fold")
    parser.add_argument("--bootstrap", type=int, default=1000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--skip-phantoms", action="store_true")
    args = parser.parse_args()
    if args.quick:
        args.train_cases, args.steps, args.val_cases, args.test_cases = 3, 10, 2, 3
        args.patch_steps, args.members, args.bootstrap = 20, 1, 50
    torch.set_num_threads(1)
    print(f"machine: {machine()}")
    fused, classifier = run_prostatex(args)  # first: the real-patient numbers are the decisive ones
    phantom = (float("nan"), float("nan")) if args.skip_phantoms else run_phantoms(args)
    print(json.dumps({"sizes": vars(args)}))
    print(
        f"phantom_abnormality_auroc={phantom[0]:.4f} phantom_fused_auroc={phantom[1]:.4f} "
        f"prostatex_fused_cv_auroc={fused:.4f} prostatex_classifier_cv_auroc={classifier:.4f}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())

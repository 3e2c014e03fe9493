"""ProstateX classifier on real patients: patient-grouped 5-fold cross-validation, ours, its localization-map
arms and three baselines.

Data: ``../shared/data/prostatex-findings`` — 305 findings of 197 patients (68 clinically
significant), T2/ADC/high-b 32 × 32 patches, the dataset's patient-grouped folds (seed 20261126).

Methods, same folds, same findings, everything tunable chosen inside the training folds only:

* **ours** — the multi-scale CNN ensemble of :mod:`LesionAILib.prostatex.classifier` (5 members,
  mirror averaging); its epochs (120 or 240) by an inner patient-grouped CV over the four training
  folds. Three arms differ only in the localization-map channel
  (:mod:`LesionAILib.prostatex.localization_maps`): ``blob`` — the centred Gaussian the shipped
  model is trained with, the same for every finding; ``low_adc`` — the blob times a low-ADC
  likelihood made from the finding's own ADC patch; ``none`` — the channel zeroed (removed).
* **single network** — one CNN (:mod:`LesionAILib.prostatex.baseline_network`) on a spatially
  consistent stack (ADC and high-b resampled onto the T2 patch's pixels, 16 mm field of view) plus
  the zone, trained with exactly our recipe (class-weighted BCE, label smoothing, shift / intensity
  / mirror augmentation, AdamW one-cycle) and its epochs chosen by the same inner CV; mirror
  averaging at test time. What it isolates: the multi-scale views and the five-member ensemble.
* **mean central ADC** — minus the mean of the central 4 × 4 ADC pixels (8 × 8 mm); no fitting.
* **logistic regression** — L2 (C = 1, fixed a priori) on simple patch features: central 4 × 4
  mean, 10th and 90th percentile of each sequence, plus the zone one-hot.

Metrics (:mod:`LesionAILib.evaluation.roc`): pooled out-of-fold AUROC with a 95 % patient-bootstrap
interval, mean (sd) of the per-fold AUROCs, sensitivity at 90 % specificity, specificity at 90 %
sensitivity, and each arm's AUROC difference to ours (blob) with a paired patient-bootstrap interval.
Each method's out-of-fold scores are cached per method, seed and fold in ``--cache``: a stopped run
resumes with the next fold.

Run: ``OMP_NUM_THREADS=1 .venv/bin/python benchmarks/prostatex_classifier.py [--quick] [--seed S]
[--cache DIR] [--save-model PATH]`` (``--save-model`` then fits the shipped model — blob map — on all
305 findings, epochs again by inner CV over the five folds, and stores the CV numbers in its
metadata). Last line: ``cv_auroc=<ours, blob> adc_baseline_auroc=<mean central ADC>
single_network_auroc=<single network> low_adc_map_auroc=<ours, low_adc> no_map_auroc=<ours, none>``.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections.abc import Callable
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")
sys.path.insert(0, str(Path(__file__).resolve().parent))

import numpy as np  # noqa: E402
import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402
from common import ROOT, machine, print_table, require_shared  # noqa: E402

from LesionAILib.atomic_io import write_json_atomic  # noqa: E402
from LesionAILib.evaluation.roc import ScoreSummary, paired_difference_interval, summarise  # noqa: E402
from LesionAILib.prostatex.baseline_network import StackedPatchNet, stacked_inputs  # noqa: E402
from LesionAILib.prostatex.classifier import (  # noqa: E402
    ClassifierMetadata,
    PatchClassifierConfig,
    mirror_averaged_logit,
    save_classifier,
)
from LesionAILib.prostatex.classifier_training import (  # noqa: E402
    TrainingSettings,
    choose_epochs,
    fit_classifier,
    train_member,
)
from LesionAILib.prostatex.findings import Findings, classifier_fit_predict, cross_validate, load_findings  # noqa: E402

CENTRE = slice(14, 18)  # the central 4 × 4 pixels of a 32 × 32 patch
FitPredict = Callable[[Findings, Findings], np.ndarray]
OURS = "ours: multi-scale CNN ensemble, blob map (shipped recipe)"
LOW_ADC = "ours, low-ADC map instead of the blob"
NO_MAP = "ours, no map (channel zeroed)"
SINGLE = "single network, aligned T2/ADC/high-b stack, same recipe"
ADC = "mean central ADC (4 × 4 pixels)"
LOGISTIC = "logistic regression, simple patch features + zone"
CACHE_KEYS = {
    OURS: "ours-blob",
    LOW_ADC: "ours-low-adc",
    NO_MAP: "ours-no-map",
    SINGLE: "single-network",
    ADC: "central-adc",
    LOGISTIC: "logistic",
}


def log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


# --------------------------------------------------------------------------- baselines
def central_adc(_train: Findings, test: Findings) -> np.ndarray:
    """Lower ADC is more suspicious: minus the mean of the central 4 × 4 ADC pixels."""
    return -test.inputs.images[:, 1, CENTRE, CENTRE].mean((1, 2)).double().numpy()


def simple_features(findings: Findings) -> torch.Tensor:
    """[N, 12] float64: central 4 × 4 mean, 10th and 90th percentile per sequence, then the zone one-hot."""
    centre = findings.inputs.images[:, :, CENTRE, CENTRE].reshape(len(findings), 3, -1).double()
    statistics = [centre.mean(2), centre.quantile(0.1, dim=2), centre.quantile(0.9, dim=2)]
    return torch.cat([torch.stack(statistics, 2).reshape(len(findings), -1), findings.inputs.zone.double()], 1)


def logistic_regression(train: Findings, test: Findings, inverse_regularisation: float = 1.0) -> np.ndarray:
    """L2 logistic regression on standardised :func:`simple_features` (scikit-learn's objective, fitted by L-BFGS)."""
    features, labels = simple_features(train), torch.as_tensor(train.labels, dtype=torch.float64)
    mean, scale = features.mean(0), features.std(0, unbiased=False).clamp_min(1e-6)
    standardised = (features - mean) / scale
    weights = torch.zeros(features.shape[1], dtype=torch.float64, requires_grad=True)
    bias = torch.zeros(1, dtype=torch.float64, requires_grad=True)
    optimizer = torch.optim.LBFGS([weights, bias], max_iter=1000, tolerance_grad=1e-10, line_search_fn="strong_wolfe")

    def objective():
        optimizer.zero_grad()
        logits = standardised @ weights + bias
        loss = inverse_regularisation * F.binary_cross_entropy_with_logits(logits, labels, reduction="sum")
        loss = loss + 0.5 * weights.pow(2).sum()
        loss.backward()
        return loss

    optimizer.step(objective)
    with torch.no_grad():
        return (((simple_features(test) - mean) / scale) @ weights + bias).numpy()


def single_network(config: PatchClassifierConfig, settings: TrainingSettings, seed: int, records: list) -> FitPredict:
    """The single-network baseline as a cross-validation method: epochs by the same inner CV, one member."""
    member_config = PatchClassifierConfig(config.width, config.hidden, config.dropout, members=1)

    def fit_predict(train: Findings, test: Findings) -> np.ndarray:
        fold_seed = seed + 1000 * int(test.folds[0])
        inputs, held_out = stacked_inputs(train.inputs), stacked_inputs(test.inputs)
        epochs, scores = choose_epochs(
            inputs, train.labels, train.folds, member_config, settings, fold_seed, log, StackedPatchNet
        )
        net = train_member(inputs, train.labels, epochs, member_config, settings, fold_seed, StackedPatchNet)
        records.append({"epochs": epochs, "inner_cv_auroc": {str(e): round(v, 4) for e, v in scores.items()}})
        with torch.no_grad():
            return mirror_averaged_logit(net, held_out).double().numpy()

    return fit_predict


# --------------------------------------------------------------------------- caching per fold
def cached(method: FitPredict, folder: Path, records: list) -> FitPredict:
    """``method`` with its held-out scores (and the fold's training record, if it appends one to
    ``records``) kept in ``folder/fold<k>.json``; a cached fold is read instead of refitted."""

    def fit_predict(train: Findings, test: Findings) -> np.ndarray:
        path = folder / f"fold{int(test.folds[0])}.json"
        ids = [f"{p}#{f}" for p, f in zip(test.patients, test.finding_ids, strict=True)]
        if path.exists():
            stored = json.loads(path.read_text())
            if stored["findings"] == ids:
                if stored.get("record") is not None:
                    records.append(stored["record"])
                return np.asarray(stored["scores"], np.float64)
        before, start = len(records), time.perf_counter()
        scores = np.asarray(method(train, test), np.float64)
        record = records[-1] if len(records) > before else None
        data = {"findings": ids, "scores": scores.tolist(), "seconds": time.perf_counter() - start, "record": record}
        write_json_atomic(path, data)
        return scores

    return fit_predict


def fold_seconds(folder: Path) -> float:
    return sum(json.loads(path.read_text())["seconds"] for path in folder.glob("fold*.json"))


# --------------------------------------------------------------------------- run
def row(name: str, summary: ScoreSummary, seconds: float, difference: str) -> list[str]:
    low, high = summary.interval
    return [
        name,
        f"{summary.auroc:.3f} [{low:.3f}, {high:.3f}]",
        difference,
        f"{summary.fold_mean:.3f} ({summary.fold_sd:.3f})",
        f"{summary.sensitivity_at_90_specificity:.3f}",
        f"{summary.specificity_at_90_sensitivity:.3f}",
        f"{seconds:.0f} s",
    ]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="smoke run: 2 members, 20 epochs, 200 bootstrap resamples")
    parser.add_argument("--save-model", metavar="PATH", help="also fit the model on all 305 findings and save it here")
    parser.add_argument("--bootstrap", type=int, default=2000, help="patient-bootstrap resamples (default 2000)")
    parser.add_argument("--seed", type=int, default=0, help="training seed of the CV (default 0; for seed spread)")
    parser.add_argument("--cache", type=Path, default=ROOT / ".lesionai-cache" / "benchmarks" / "prostatex")
    parser.add_argument(
        "--methods",
        default=",".join(CACHE_KEYS.values()),
        help="comma-separated cache keys of the methods to run (default all; a second process can fill "
        "other methods' folds in parallel, and a later run with all of them prints the full table)",
    )
    args = parser.parse_args()
    torch.set_num_threads(1)
    folder = require_shared("prostatex-findings")
    findings = {kind: load_findings(folder, kind) for kind in ("blob", "low_adc", "none")}
    blob = findings["blob"]
    config = PatchClassifierConfig(members=2 if args.quick else 5)
    settings = TrainingSettings(epoch_choices=(20,) if args.quick else (120, 240))
    resamples = 200 if args.quick else args.bootstrap
    log(f"{len(blob)} findings, {len(np.unique(blob.patients))} patients, {blob.labels.sum()} significant")

    # cheapest first, then the new arms and the reference they are compared with, so that a stopped
    # run has the headline comparisons soonest
    methods: dict[str, tuple[Findings, Callable[[list], FitPredict]]] = {
        ADC: (blob, lambda records: central_adc),
        LOGISTIC: (blob, lambda records: logistic_regression),
        SINGLE: (blob, lambda records: single_network(config, settings, args.seed, records)),
        LOW_ADC: (findings["low_adc"], lambda r: classifier_fit_predict(config, settings, args.seed, log, r)),
        OURS: (blob, lambda r: classifier_fit_predict(config, settings, args.seed, log, r)),
        NO_MAP: (findings["none"], lambda r: classifier_fit_predict(config, settings, args.seed, log, r)),
    }
    wanted = set(args.methods.split(","))
    methods = {name: method for name, method in methods.items() if CACHE_KEYS[name] in wanted | {"central-adc"}}
    if OURS not in methods:
        methods[OURS] = (blob, lambda r: classifier_fit_predict(config, settings, args.seed, log, r))
    run_key = f"{'quick' if args.quick else 'full'}-seed{args.seed}"
    scores, records, seconds = {}, {}, {}
    for name, (data, make) in methods.items():
        log(f"cross-validating {name}")
        arm_folder = args.cache / run_key / CACHE_KEYS[name]
        records[name] = []
        scores[name] = cross_validate(data, cached(make(records[name]), arm_folder, records[name]), log)
        seconds[name] = fold_seconds(arm_folder)
    summaries = {name: summarise(blob.labels, s, blob.folds, blob.patients, resamples) for name, s in scores.items()}

    def difference(name: str) -> str:
        if name == OURS:
            return "—"
        delta = summaries[name].auroc - summaries[OURS].auroc
        low, high = paired_difference_interval(blob.labels, scores[name], scores[OURS], blob.patients, resamples)
        return f"{delta:+.3f} [{low:+.3f}, {high:+.3f}]"

    order = [name for name in (OURS, LOW_ADC, NO_MAP, SINGLE, ADC, LOGISTIC) if name in methods]
    print(f"ProstateX findings, patient-grouped 5-fold CV ({len(blob)} findings, {blob.labels.sum()} significant)")
    print(f"machine: {machine()}")
    headers = ["method", "CV AUROC [95% CI]", "Δ vs ours [95% CI]", "fold AUROC mean (sd)"]
    headers += ["sens @ 90% spec", "spec @ 90% sens", "5-fold time"]
    print_table(headers, [row(name, summaries[name], seconds[name], difference(name)) for name in order])
    for name in (name for name in (OURS, LOW_ADC, NO_MAP, SINGLE) if name in methods):
        chosen = ", ".join(str(r["epochs"]) for r in records[name])
        print(f"epochs chosen by the inner CV per outer fold, {name}: {chosen}")
    ours, adc = summaries[OURS], summaries[ADC]

    if args.save_model:
        save_shipped_model(args.save_model, blob, config, settings, ours, adc, records[OURS])

    def value(name: str) -> str:
        return f"{summaries[name].auroc:.4f}" if name in summaries else "nan"

    print(
        f"cv_auroc={value(OURS)} adc_baseline_auroc={value(ADC)} single_network_auroc={value(SINGLE)} "
        f"low_adc_map_auroc={value(LOW_ADC)} no_map_auroc={value(NO_MAP)}"
    )
    return 0


def save_shipped_model(
    path: str,
    findings: Findings,
    config: PatchClassifierConfig,
    settings: TrainingSettings,
    ours: ScoreSummary,
    adc: ScoreSummary,
    records: list[dict],
) -> None:
    """Fit the shipped model (blob map) on every finding, epochs by inner CV over the five folds."""
    start = time.perf_counter()
    classifier, record = fit_classifier(findings.inputs, findings.labels, findings.folds, config, settings, 99000, log)
    minutes = (time.perf_counter() - start) / 60.0
    command = f"OMP_NUM_THREADS=1 .venv/bin/python benchmarks/prostatex_classifier.py --save-model {path}"
    metadata = ClassifierMetadata(
        config=config,
        description="Clinically significant prostate cancer at a point, from ProstateX-style T2/ADC/high-b "
        "patches; multi-scale CNN ensemble trained on all 305 ProstateX training findings.",
        training={
            **record,
            "data": "ProstateX training findings (SPIE-AAPM-NCI PROSTATEx, TCIA, CC BY 3.0): 2011, one site, "
            "Siemens 3T, 197 patients, 305 findings, 68 clinically significant",
            "settings": settings.to_dict(),
            "seed": 99000,
            "command": command,
            "minutes": round(minutes, 1),
            "machine": machine(),
        },
        metrics={
            "protocol": "patient-grouped 5-fold CV of the dataset; epochs by inner CV in the training folds",
            "cv": ours.to_dict(),
            "cv_inner_epochs": [r["epochs"] for r in records],
            "adc_baseline": adc.to_dict(),
            "caveat": "the ProstateX challenge's best hidden-test AUC was 0.87 on a different (hidden) split; "
            "not comparable",
        },
    )
    saved = save_classifier(classifier, metadata, path)
    size_mb = saved.stat().st_size / 1e6
    print(f"model: {saved} ({size_mb:.2f} MB), trained in {minutes:.1f} min ({record['epochs']} epochs per member)")


if __name__ == "__main__":
    sys.exit(main())

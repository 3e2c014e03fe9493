"""Accuracy on a phantom site held out of training: localization only vs two-phase vs a plain U-Net.

Data (generated into ``--work`` if missing, deterministic): training cohorts of sites A, B and D
(80 cases each, seed 1 — the bundled demo model's training data, see its model card) and the
held-out test cohort of site C (80 cases, seed 1), a different scanner profile never seen in
training.

Methods, same data:

* **two-phase** — the bundled demo model (or ``--model``): localization network + classifier
  trained jointly in two phases; each candidate's score is the classifier's probability.
* **localization only** — the same model's localization network alone; a candidate's score is the
  peak of the combined map (what phase 2 adds is the difference between these two rows).
* **plain U-Net** — an early-fusion 3D U-Net with a binary csPCa segmentation objective (cross-
  entropy + soft Dice, in the style of the PI-CAI U-Net baseline) of similar size, trained by this
  script with the same data, grid, crops and augmentation, for 1.25 × the two-phase model's
  phase-1 epochs (phase 1 plus roughly the compute of its classifier phase; measured training
  minutes of both are in the table).

Every case is analysed through the deployed path (:meth:`Analyzer.analyze`, detection maps in
the T2 geometry) and scored with picai-eval (95 % bootstrap intervals over cases).

Run: ``.venv/bin/python benchmarks/accuracy.py [--work DIR] [--model M] [--unet-model U]``.
Last line: ``heldout_auroc=<two-phase AUROC> heldout_ap=<two-phase AP>``.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import ROOT, machine, print_table  # noqa: E402

from LesionAILib.evaluation.validation import cohort_detections, localization_only, score  # noqa: E402
from LesionAILib.inference.analyzer import Analyzer  # noqa: E402
from LesionAILib.models.modelfile import bundled_model_path, read_metadata  # noqa: E402
from LesionAILib.phantom.cohort import write_cohort  # noqa: E402
from LesionAILib.training.cohorts import read_cohort  # noqa: E402
from LesionAILib.training.config import TrainConfig  # noqa: E402
from LesionAILib.training.trainer import Trainer  # noqa: E402

TRAIN_SITES, TEST_SITE, CASES, SEED = ("A", "B", "D"), "C", 80, 1
# early-fusion U-Net with about as many parameters as the fusion localizer + classifier (0.53 M vs 0.58 M)
UNET_MODEL = {"localizer": {"variant": "unet", "widths": [12, 24, 48, 48], "dropout": 0.1}, "classifier": None}


def cohort(work: Path, site: str) -> Path:
    folder = work / "cohorts" / site
    if not (folder / "cohort.json").exists():
        print(f"generating site {site} ({CASES} cases) in {folder}", file=sys.stderr)
        write_cohort(folder, CASES, site=site, seed=SEED)
    return folder


def unet_epochs(phase1_epochs: int) -> int:
    """The baseline's epoch budget: the two-phase model's phase-1 epochs plus a quarter for its
    classifier phase (a phase-2 epoch over candidate crops costs far less than a phase-1 epoch);
    the table reports the measured training minutes of both."""
    return int(round(1.25 * phase1_epochs))


def train_unet(work: Path, model_path: Path, train: list[Path]) -> tuple[Path, float]:
    """The U-Net baseline with the demo model's data, grid, crops, augmentation and epoch budget."""
    reference = read_metadata(model_path).training["config"]
    phase1 = dict(reference["phase1"])
    epochs = unet_epochs(phase1["epochs"])
    phase1.update(epochs=epochs, objective="segmentation", patience=epochs)
    config = TrainConfig.from_dict(
        {
            **{k: reference[k] for k in ("seed", "val_fraction", "preprocess", "augment")},
            "name": "plain-unet-baseline",
            "train": [str(p) for p in train],
            "cache_dir": str(work / "cache"),
            "model": UNET_MODEL,
            "phase1": phase1,
        }
    )
    start = time.perf_counter()
    path = Trainer(config, work / "runs" / "unet").run("1", work / "unet-baseline.safetensors")
    return path, time.perf_counter() - start


def row(name: str, analyzer: Analyzer, records, train_seconds) -> tuple[list, object]:
    start = time.perf_counter()
    detections, labels, ids = cohort_detections(analyzer, records)
    result = score(detections, labels, ids, bootstrap=1000)
    elapsed = time.perf_counter() - start

    def with_ci(metric: str) -> str:
        value, interval = getattr(result, metric), result.ci95.get(metric)
        if value is None:
            return "n/a"
        return f"{value:.3f}" + (f" [{interval[0]:.3f}, {interval[1]:.3f}]" if interval else "")

    froc = result.froc_sensitivity
    return [
        name,
        with_ci("auroc"),
        with_ci("ap"),
        with_ci("score"),
        f"{froc[0.5]:.2f}",
        f"{froc[1.0]:.2f}",
        "—" if train_seconds is None else f"{train_seconds / 60:.0f}",
        f"{1000 * elapsed / len(records):.0f}",
    ], result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--work", default=str(ROOT / ".benchmark-work"), help="cohorts, cache and baseline runs")
    parser.add_argument("--model", help="two-phase model (default: the bundled demo model)")
    parser.add_argument("--unet-model", help="an already trained U-Net baseline (skip training it)")
    parser.add_argument("--no-unet", action="store_true", help="leave the U-Net baseline out (quick look)")
    parser.add_argument("--device", default="auto")
    args = parser.parse_args()

    work = Path(args.work)
    model_path = Path(args.model) if args.model else bundled_model_path()
    train = [cohort(work, site) for site in TRAIN_SITES]
    test_records = read_cohort(cohort(work, TEST_SITE)).cases
    metadata = read_metadata(model_path)
    # training time only when the model's run timed both phases (a model assembled from two runs has not)
    timed_all = metadata.training.get("timed_phases") == [1, 2]
    two_phase_minutes = metadata.training.get("train_seconds") if timed_all else None
    if args.no_unet:
        unet_path, unet_seconds = None, None
    elif args.unet_model:
        unet_path, unet_seconds = Path(args.unet_model), read_metadata(args.unet_model).training.get("train_seconds")
    else:
        unet_path, unet_seconds = train_unet(work, model_path, train)

    two_phase = Analyzer(model_path, device=args.device)
    methods = [
        ("localization only (score = map peak)", localization_only(two_phase), None),
        ("two-phase localization + classification", two_phase, two_phase_minutes),
    ]
    if unet_path is not None:
        methods.append(("plain U-Net segmentation baseline", Analyzer(unet_path, device=args.device), unet_seconds))
    rows, results = [], {}
    for name, analyzer, seconds in methods:
        line, result = row(name, analyzer, test_records, seconds)
        rows.append(line)
        results[name] = result.to_dict()
    print(f"machine: {machine()}")
    print(
        f"held-out site {TEST_SITE}: {len(test_records)} cases "
        f"({sum(1 for r in test_records if r.case_cspca)} with csPCa); trained on sites {', '.join(TRAIN_SITES)}"
    )
    print_table(
        ["method", "AUROC [95% CI]", "AP [95% CI]", "score", "sens@0.5FP", "sens@1FP", "train min", "ms/case"], rows
    )
    best = max(results, key=lambda name: results[name]["score"] or 0)
    print(f"best ranking score: {best}")
    (work / "accuracy.json").write_text(json.dumps(results, indent=2, default=str))
    final = results["two-phase localization + classification"]
    print(f"heldout_auroc={final['auroc']:.3f} heldout_ap={final['ap']:.3f}")


if __name__ == "__main__":
    main()

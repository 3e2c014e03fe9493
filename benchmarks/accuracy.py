"""Accuracy on phantom sites held out of training (C and E): localization only vs two-phase vs a plain U-Net.

Data (generated into ``--work`` if missing, deterministic): training cohorts of sites A, B and D
(80 cases each, seed 1 — the bundled demo model's training data, see its model card) and two
held-out test cohorts (80 cases each, seed 1), scanner profiles never seen in training:

* **site C** — a 1.5 T-like profile that lies inside the range of A/B/D on every acquisition
  parameter but the b-value (reported as before);
* **site E** — outside A/B/D on almost every parameter (coarse 0.7 mm / 4.5 mm T2, 3 mm DWI
  tilted 12°, b50/600 ADC, acquired b1000, ADC calibration +12 %, strong bias field, 6 mm DWI
  shift; fixed by issue 14, ``LesionAILib.phantom.profiles``).

Methods, same cases, same order:

* **two-phase** — the bundled demo model (or ``--model``): localization network + classifier
  trained jointly in two phases; each candidate's score is the classifier's probability.
* **localization only** — the same model's localization network alone; a candidate's score is the
  peak of the combined map (what phase 2 adds is the difference between these two rows).
* **plain U-Net** — an early-fusion 3D U-Net with a binary csPCa segmentation objective (cross-
  entropy + soft Dice, in the style of the PI-CAI U-Net baseline), trained by this script from
  ``Resources/Configs/plain-unet-baseline.json`` — the same recipe ``lesionai train --config
  Resources/Configs/plain-unet-baseline.json --phase 1`` runs — on the same data, grid, crops and
  augmentation, with the two-phase model's optimisation budget (as many optimiser steps as the
  bundled model's phases 1 and 2 took, each on a phase-1 batch; the configuration's description
  says how the number was measured). Training resumes in ``--work/runs/unet`` after a stop.

Every case is analysed through the deployed path (:meth:`Analyzer.analyze`, detection maps in the
T2 geometry), checked (``evaluation/result_checks.py``: a crash or a detection map picai-eval
refuses is counted, a crashed case scores as an empty map) and scored with picai-eval (95 %
bootstrap intervals over cases). Each case's outcome is cached under ``--work/detections/`` per
model file (by its sha256) and method, so a stopped run resumes where it stopped; the key does not
cover the analysis code, so delete that folder after changing how cases are analysed.

Run: ``.venv/bin/python benchmarks/accuracy.py [--work DIR] [--model M] [--no-unet] [--cases N]``.
Last line: ``heldout_auroc=<C> heldout_ap=<C> site_e_auroc=<E> site_e_ap=<E> crashes=<n>
invalid_maps=<n>`` (two-phase model; crashes and invalid maps over every analysis of the run).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
import traceback
from collections.abc import Iterator
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import numpy as np  # noqa: E402
import SimpleITK as sitk  # noqa: E402
from common import ROOT, machine, print_table  # noqa: E402

from LesionAILib.atomic_io import write_atomic  # noqa: E402
from LesionAILib.evaluation.metrics import EvaluationResult, evaluate_arrays  # noqa: E402
from LesionAILib.evaluation.result_checks import result_problems  # noqa: E402
from LesionAILib.evaluation.validation import localization_only, significant_lesion_mask  # noqa: E402
from LesionAILib.inference.analyzer import Analyzer  # noqa: E402
from LesionAILib.models.bundled import bundled_model_path  # noqa: E402
from LesionAILib.models.modelfile import read_metadata  # noqa: E402
from LesionAILib.phantom.cohort import write_cohort  # noqa: E402
from LesionAILib.training.cohorts import CaseRecord, read_cohort  # noqa: E402
from LesionAILib.training.config import load_config  # noqa: E402
from LesionAILib.training.trainer import Trainer  # noqa: E402

TRAIN_SITES, HELD_OUT_SITES, CASES, SEED = ("A", "B", "D"), ("C", "E"), 80, 1
UNET_CONFIG = ROOT / "Resources" / "Configs" / "plain-unet-baseline.json"
LOCALIZATION_ONLY = "localization only (score = map peak)"
TWO_PHASE = "two-phase localization + classification"
UNET = "plain U-Net segmentation baseline"
METHOD_KEYS = {LOCALIZATION_ONLY: "localization-only", TWO_PHASE: "two-phase", UNET: "unet"}


def cohort(work: Path, site: str, cases: int = CASES) -> Path:
    """The site's cohort folder (``cohorts/<site>`` for the default size, else ``cohorts/<site>-<n>``)."""
    folder = work / "cohorts" / (site if cases == CASES else f"{site}-{cases}")
    if not (folder / "cohort.json").exists():
        print(f"generating site {site} ({cases} cases) in {folder}", file=sys.stderr)
        write_cohort(folder, cases, site=site, seed=SEED)
    return folder


def held_out_records(work: Path, site: str, cases: int) -> list[CaseRecord]:
    """The first ``cases`` cases of the site (case i is a pure function of (seed, site, i), so the first
    n of the default cohort are the n-case cohort): from the default cohort when it is there."""
    default = work / "cohorts" / site
    folder = default if cases <= CASES and (default / "cohort.json").exists() else cohort(work, site, cases)
    return read_cohort(folder).cases[:cases]


# --------------------------------------------------------------------------- one case, cached
def outcome_folder(work: Path, model_path: Path, method: str, site: str) -> Path:
    """Where the case outcomes of one model file (by content hash), method and site are cached."""
    sha = read_metadata(model_path).sha256[:12] or model_path.stem
    return work / "detections" / f"{sha}-{METHOD_KEYS[method]}" / site


def analyse_case(analyzer: Analyzer, record: CaseRecord, path: Path) -> dict:
    """Analyse one case (never raises for a crash of the analysis), cache and return its outcome:
    detection map and csPCa label [Z, Y, X] on the T2 grid, crash message, problems, seconds."""
    case = record.open()
    label = significant_lesion_mask(record, case)
    started = time.perf_counter()
    crash, problems = "", []
    try:
        result = analyzer.analyze(case)
        detection = sitk.GetArrayFromImage(result.detection_map).astype(np.float32)
        problems = result_problems(result, case.t2w)
    except Exception as error:  # a crash is what this benchmark counts; the case scores as an empty map
        crash = f"{type(error).__name__}: {error}\n{traceback.format_exc(limit=4)}"
        detection = np.zeros(label.shape, np.float32)
    seconds = time.perf_counter() - started
    if detection.shape != label.shape:  # a detection map off the T2 grid cannot be scored: an empty one
        problems.append(f"detection map shape {detection.shape} is not the T2 grid's {label.shape}")
        detection = np.zeros(label.shape, np.float32)
    outcome = {"detection": detection, "label": label, "crash": crash, "problems": problems, "seconds": seconds}

    def write(temporary: Path) -> None:
        with open(temporary, "wb") as handle:
            np.savez_compressed(
                handle,
                detection=detection,
                label=label,
                crash=np.array(crash),
                problems=np.array(problems, dtype=str),
                seconds=np.array(seconds),
            )

    path.parent.mkdir(parents=True, exist_ok=True)
    write_atomic(path, write)
    return outcome


def read_outcome(path: Path) -> dict:
    with np.load(path, allow_pickle=False) as data:
        return {
            "detection": data["detection"],
            "label": data["label"],
            "crash": str(data["crash"]),
            "problems": [str(p) for p in data["problems"]],
            "seconds": float(data["seconds"]),
        }


class MethodRun:
    """One method on one held-out site: every case analysed once (or read from the cache)."""

    def __init__(self, work: Path, model_path: Path, method: str, analyzer: Analyzer, site: str, records):
        folder = outcome_folder(work, model_path, method, site)
        self.paths = [folder / f"{record.case_id}.npz" for record in records]
        self.records = records
        self.crashes, self.invalid, self.inconsistent, self.seconds = 0, 0, 0, []
        for record, path in zip(records, self.paths, strict=True):
            outcome = read_outcome(path) if path.exists() else analyse_case(analyzer, record, path)
            self.crashes += bool(outcome["crash"])
            self.invalid += any("picai-eval" in problem for problem in outcome["problems"])
            self.inconsistent += bool(outcome["problems"])
            self.seconds.append(outcome["seconds"])
            if outcome["crash"] or outcome["problems"]:
                print(f"{method}, {record.case_id}: {outcome['crash'] or outcome['problems']}", file=sys.stderr)

    def _read(self, key: str) -> Iterator[np.ndarray]:
        for path in self.paths:  # one case at a time: 80 T2-grid maps would not fit in memory together
            yield read_outcome(path)[key]

    def score(self, bootstrap: int) -> EvaluationResult:
        ids = [record.case_id for record in self.records]
        return evaluate_arrays(self._read("detection"), self._read("label"), ids, bootstrap=bootstrap)


# --------------------------------------------------------------------------- the U-Net baseline
def train_unet(work: Path, train: list[Path], epochs: int | None = None) -> tuple[Path, float | None]:
    """The plain U-Net of ``UNET_CONFIG`` trained on ``train`` in ``work/runs/unet`` (resumable);
    ``epochs`` overrides the configuration's budget (smoke runs only)."""
    config = load_config(UNET_CONFIG)
    config.train = [str(p) for p in train]
    config.cache_dir = str(work / "cache")
    if epochs is not None:
        config.phase1.epochs = epochs
    suffix = "" if epochs is None else f"-{epochs}-epochs"
    output = work / f"unet-baseline{suffix}.safetensors"
    if not output.exists() or read_metadata(output).training["config"] != config.to_dict():
        Trainer(config, work / "runs" / f"unet{suffix}").run("1", output)
    return output, read_metadata(output).training.get("train_seconds")


def row(name: str, run: MethodRun, result: EvaluationResult, train_seconds: float | None) -> list[str]:
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
        "n/a" if froc.get(0.5) is None else f"{froc[0.5]:.2f}",
        "n/a" if froc.get(1.0) is None else f"{froc[1.0]:.2f}",
        f"{run.crashes} / {run.invalid}",
        "—" if train_seconds is None else f"{train_seconds / 60:.0f}",
        f"{1000 * float(np.median(run.seconds)):.0f}",
    ]


def number(value: float | None) -> str:
    """A metric with three decimals, ``nan`` when picai-eval leaves it undefined (e.g. no positive case)."""
    return "nan" if value is None else f"{value:.3f}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--work", default=str(ROOT / ".benchmark-work"), help="cohorts, cached outcomes, U-Net run")
    parser.add_argument("--model", help="two-phase model (default: the bundled demo model)")
    parser.add_argument("--no-unet", action="store_true", help="leave the U-Net baseline out")
    parser.add_argument("--cases", type=int, default=CASES, help=f"cases per site (default {CASES})")
    parser.add_argument("--unet-epochs", type=int, help="override the U-Net's epoch budget (smoke runs only)")
    parser.add_argument("--bootstrap", type=int, default=1000, help="bootstrap resamples (default 1000)")
    parser.add_argument("--device", default="auto")
    args = parser.parse_args(argv)

    work = Path(args.work)
    model_path = Path(args.model) if args.model else bundled_model_path()
    metadata = read_metadata(model_path)
    # training time only when the model's run timed both phases (a model assembled from two runs has not)
    timed_both = metadata.training.get("timed_phases") == [1, 2]
    two_phase_seconds = metadata.training.get("train_seconds") if timed_both else None
    two_phase = Analyzer(model_path, device=args.device)
    methods = [
        (LOCALIZATION_ONLY, localization_only(two_phase), model_path, None),
        (TWO_PHASE, two_phase, model_path, two_phase_seconds),
    ]
    if not args.no_unet:
        train = [cohort(work, site) for site in TRAIN_SITES]
        unet_path, unet_seconds = train_unet(work, train, args.unet_epochs)
        methods.append((UNET, Analyzer(unet_path, device=args.device), unet_path, unet_seconds))

    records = {site: held_out_records(work, site, args.cases) for site in HELD_OUT_SITES}
    # the headline method first, so that a stopped run has cached the numbers that matter most
    runs = {
        (name, site): MethodRun(work, path, name, analyzer, site, records[site])
        for name, analyzer, path, _ in sorted(methods, key=lambda method: method[0] != TWO_PHASE)
        for site in HELD_OUT_SITES
    }
    results: dict[str, dict[str, dict]] = {site: {} for site in HELD_OUT_SITES}
    tables = {}
    crashes = invalid = 0
    for site in HELD_OUT_SITES:
        rows = []
        for name, _, _, seconds in methods:
            run = runs[name, site]
            result = run.score(args.bootstrap)
            crashes, invalid = crashes + run.crashes, invalid + run.invalid
            rows.append(row(name, run, result, seconds))
            results[site][name] = {
                **result.to_dict(),
                "crashes": run.crashes,
                "invalid_maps": run.invalid,
                "inconsistent": run.inconsistent,
            }
        positives = sum(1 for record in records[site] if record.case_cspca)
        tables[site] = (len(records[site]), positives, rows)

    print(f"machine: {machine()}")
    print(f"trained on sites {', '.join(TRAIN_SITES)}; model {model_path.name} (sha256 {metadata.sha256[:12]})")
    headers = ["method", "AUROC [95% CI]", "AP [95% CI]", "score", "sens@0.5FP", "sens@1FP", "crash / invalid"]
    for site, (count, positives, rows) in tables.items():
        print(f"\nheld-out site {site}: {count} cases ({positives} with csPCa)")
        print_table([*headers, "train min", "ms/case"], rows)
    (work / "accuracy.json").write_text(json.dumps(results, indent=2, default=str))
    c, e = results["C"][TWO_PHASE], results["E"][TWO_PHASE]
    print(
        f"heldout_auroc={number(c['auroc'])} heldout_ap={number(c['ap'])} site_e_auroc={number(e['auroc'])} "
        f"site_e_ap={number(e['ap'])} crashes={crashes} invalid_maps={invalid}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Shared set-up of the adaptation benchmarks: phantom sites A and D, the site-A model, caches, statistics.

``active_learning.py`` and ``multisite.py`` share one work folder: the cohorts, the preprocessed
cases and the site-A model are made once (a file lock keeps two concurrent scripts from training
it twice). Results are cached as one JSON file per arm and seed under ``<work>/results/<bench>/``,
written atomically after every finished unit, so a stopped script resumes where it was.
"""

from __future__ import annotations

import dataclasses
import fcntl
import json
import math
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from benchmark_state import restore
from scipy import stats

from LesionAILib.atomic_io import write_json_atomic
from LesionAILib.evaluation.validation import prepared_detections
from LesionAILib.inference.analyzer import Analyzer
from LesionAILib.phantom.cohort import write_cohort
from LesionAILib.training.cohorts import prepare_cases, read_cohort
from LesionAILib.training.config import TrainConfig
from LesionAILib.training.trainer import Trainer, picai_scores


@dataclasses.dataclass(frozen=True)
class Size:
    """Cohort sizes, model grid and network of the adaptation benchmarks."""

    source_cases: int = 60
    pool_cases: int = 40
    test_cases: int = 30
    held_out_source: int = 20
    grid: tuple = (16, 64, 64)
    spacing: tuple = (3.0, 1.5, 1.5)
    widths: tuple = (6, 12, 24, 24)
    source_epochs: int = 16


LARGE = Size(120, 80, 60, 40, (20, 96, 96), (3.0, 1.0, 1.0), (8, 16, 32, 32), 25)
# a loaded 2-core machine: the same cohorts and network, a shorter site-A training, fewer test cases
QUICK = Size(60, 40, 20, 20, (16, 64, 64), (3.0, 1.5, 1.5), (6, 12, 24, 24), 6)
SMOKE = Size(10, 8, 6, 4, (16, 64, 64), (3.0, 1.5, 1.5), (4, 8, 8, 8), 1)


def cohort(work: Path, site: str, cases: int, seed: int) -> Path:
    folder = work / "cohorts" / f"{site}-{cases}-{seed}"
    if not (folder / "cohort.json").exists():
        write_cohort(folder, cases, site=site, seed=seed)
    return folder


def base_config(size: Size, work: Path, seed: int) -> TrainConfig:
    """The site-A model's training configuration (also the grid every fine-tune keeps)."""
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


@dataclasses.dataclass
class Setup:
    """The shared data of one work folder: cohort folders, prepared cases and the site-A model."""

    source_folder: Path
    target_folder: Path
    base_path: Path
    source: list  # site-A training records
    pool: list  # site-D pool records (first ``pool_cases`` of D)
    test: list  # site-D held-out records
    held_out_a: list  # site-A held-out records (the cases after the training ones)
    prepared: dict  # "pool", "d_test", "a_test": prepared cases


def shared_setup(size: Size, work: Path) -> Setup:
    """Cohorts, preprocessing and the site-A model (seed 0), made once per work folder under a
    file lock so that two benchmarks started together neither race nor train it twice."""
    work.mkdir(parents=True, exist_ok=True)
    path = work / "site-A-model.safetensors"
    with open(work / "setup.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        # one seed for both sites; a phantom case depends only on (seed, site, index), so the
        # held-out A cases are the ones after the training cases of the same seed
        source_folder = cohort(work, "A", size.source_cases, 1)
        target_folder = cohort(work, "D", size.pool_cases + size.test_cases, 1)
        everything_a = cohort(work, "A", size.source_cases + size.held_out_source, 1)
        held_out_a = read_cohort(everything_a).cases[size.source_cases :]
        config = base_config(size, work, 0)
        restore(work, size)  # the committed site-A model and finished arms, when this size has them
        if not path.exists():
            Trainer(dataclasses.replace(config, train=[str(source_folder)]), work / "runs" / "site-A").run("both", path)
        target = read_cohort(target_folder).cases
        pool, test = target[: size.pool_cases], target[size.pool_cases :]
        prepared = {
            name: prepare_cases(records, config.preprocess, config.cache_dir)
            for name, records in (("pool", pool), ("d_test", test), ("a_test", held_out_a))
        }
    source = read_cohort(source_folder).cases
    return Setup(source_folder, target_folder, path, source, pool, test, held_out_a, prepared)


def evaluate(model_and_metadata, test_cases) -> dict:
    """picai-eval AP / AUROC / score of a model on prepared cases (model grid)."""
    analyzer = Analyzer(model_and_metadata, device="cpu")
    detections, labels, _ = prepared_detections(analyzer, test_cases)
    return picai_scores(detections, labels)


def training_steps(run_dir: Path) -> dict[str, int]:
    """Optimisation steps a run folder's final model went through, per phase.

    Counted from the trainer's progress events (one per batch, with its phase, epoch and batch
    index). A run killed mid-epoch resumes from the previous epoch's checkpoint and redoes that
    epoch, so each (phase, epoch, batch) is counted once: the killed attempt's steps were thrown
    away with its weights. (Before 2026-12-02 every event was counted, so a resumed run's record
    can hold a few steps too many; the active-learning report names such records.)
    """
    seen: dict[str, set[tuple]] = {"1": set(), "2": set()}
    log = run_dir / "progress.jsonl"
    for line in log.read_text(encoding="utf-8").splitlines() if log.exists() else []:
        event = json.loads(line)
        phase = str(event.get("phase"))
        if event.get("event") == "progress" and "loss" in event and phase in seen:
            seen[phase].add((event.get("epoch"), event.get("done")))
    return {phase: len(batches) for phase, batches in seen.items()}


class ResultCache:
    """One JSON document per (arm, seed) under ``folder``; rewritten atomically on every update."""

    def __init__(self, folder: Path):
        self.folder = folder
        folder.mkdir(parents=True, exist_ok=True)

    def path(self, arm: str, seed: int) -> Path:
        return self.folder / f"{arm}-s{seed}.json"

    def load(self, arm: str, seed: int) -> dict:
        path = self.path(arm, seed)
        return json.loads(path.read_text(encoding="utf-8")) if path.exists() else {}

    def save(self, arm: str, seed: int, document: dict) -> None:
        write_json_atomic(self.path(arm, seed), document)


def mean_sd(values: Sequence[float]) -> str:
    """``mean ± sample sd`` (ddof 1; sd ``n/a`` for one value)."""
    values = np.asarray(values, float)
    if len(values) < 2:
        return f"{values.mean():.3f} ± n/a" if len(values) else "n/a"
    return f"{values.mean():.3f} ± {values.std(ddof=1):.3f}"


def t_interval(values: Sequence[float], level: float = 0.95) -> tuple[float, float]:
    """Student-t interval of the mean (``nan`` for fewer than two values)."""
    values = np.asarray(values, float)
    if len(values) < 2:
        return math.nan, math.nan
    half = stats.t.ppf(0.5 + level / 2, len(values) - 1) * values.std(ddof=1) / math.sqrt(len(values))
    return float(values.mean() - half), float(values.mean() + half)


def chosen_size(args) -> Size:
    """The size preset a benchmark's ``--large`` / ``--quick`` / ``--smoke`` flags name (default: :class:`Size`)."""
    return LARGE if args.large else QUICK if args.quick else SMOKE if args.smoke else Size()

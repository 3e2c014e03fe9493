"""ROC metrics of a binary classifier scored per finding: AUROC, operating points, patient bootstrap.

Definitions (scores: higher = more suspicious; labels: 1 = clinically significant):

* **AUROC** — the probability that a random positive scores above a random negative, ties
  counting one half (Mann–Whitney U / (n₊ n₋)); identical to ``sklearn.metrics.roc_auc_score``.
* **sensitivity at 90 % specificity** — the highest true-positive rate among the ROC points (every
  distinct score as a threshold, "score ≥ threshold" positive) whose false-positive rate is ≤ 10 %.
* **specificity at 90 % sensitivity** — the highest 1 − false-positive rate among the ROC points
  whose true-positive rate is ≥ 90 %.
* **95 % interval** — percentile interval of the AUROC over ``resamples`` bootstrap resamples of
  *patients* (all findings of a drawn patient come along), so findings of one patient are never
  treated as independent; resamples with a single class are skipped. The interval of a
  *difference* between two methods on the same findings uses the same resamples for both (paired).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import numpy as np
from scipy.stats import rankdata


def auroc(labels: np.ndarray, scores: np.ndarray) -> float:
    """Area under the ROC curve (see module docstring); labels bool/0-1 [N], scores float [N]."""
    labels = np.asarray(labels).astype(bool)
    scores = np.asarray(scores, dtype=np.float64)
    positives, negatives = int(labels.sum()), int((~labels).sum())
    if positives == 0 or negatives == 0:
        raise ValueError("AUROC needs at least one positive and one negative")
    ranks = rankdata(scores)  # average ranks: ties count one half
    return float((ranks[labels].sum() - positives * (positives + 1) / 2) / (positives * negatives))


def roc_points(labels: np.ndarray, scores: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(false-positive rates, true-positive rates) at every distinct score as threshold, from (0, 0) to (1, 1)."""
    labels = np.asarray(labels).astype(bool)
    order = np.argsort(-np.asarray(scores, dtype=np.float64), kind="stable")
    sorted_scores = np.asarray(scores, dtype=np.float64)[order]
    hits = labels[order]
    last_of_each_score = np.r_[np.nonzero(np.diff(sorted_scores))[0], len(sorted_scores) - 1]
    true_positives = np.cumsum(hits)[last_of_each_score]
    false_positives = np.cumsum(~hits)[last_of_each_score]
    tpr = np.r_[0.0, true_positives / max(hits.sum(), 1)]
    fpr = np.r_[0.0, false_positives / max((~hits).sum(), 1)]
    return fpr, tpr


def sensitivity_at_specificity(labels: np.ndarray, scores: np.ndarray, specificity: float = 0.9) -> float:
    fpr, tpr = roc_points(labels, scores)
    return float(tpr[fpr <= 1.0 - specificity + 1e-12].max())


def specificity_at_sensitivity(labels: np.ndarray, scores: np.ndarray, sensitivity: float = 0.9) -> float:
    fpr, tpr = roc_points(labels, scores)
    return float(1.0 - fpr[tpr >= sensitivity - 1e-12].min())


def patient_bootstrap_interval(
    labels: np.ndarray,
    scores: np.ndarray,
    patients: Sequence[str],
    resamples: int = 2000,
    seed: int = 0,
    level: float = 0.95,
) -> tuple[float, float]:
    """Percentile interval of the AUROC over bootstrap resamples of patients (see module docstring)."""
    labels = np.asarray(labels).astype(bool)
    scores = np.asarray(scores, dtype=np.float64)
    values = [auroc(labels[drawn], scores[drawn]) for drawn in _patient_resamples(labels, patients, resamples, seed)]
    return _percentile_interval(values, level)


def paired_difference_interval(
    labels: np.ndarray, scores: np.ndarray, reference_scores: np.ndarray, patients: Sequence[str], resamples: int = 2000
) -> tuple[float, float]:
    """95 % percentile interval of AUROC(``scores``) − AUROC(``reference_scores``) over the same patient
    resamples for both (a paired comparison of two methods scored on the same findings; seed 0)."""
    labels = np.asarray(labels).astype(bool)
    scores, reference = np.asarray(scores, np.float64), np.asarray(reference_scores, np.float64)
    values = [
        auroc(labels[drawn], scores[drawn]) - auroc(labels[drawn], reference[drawn])
        for drawn in _patient_resamples(labels, patients, resamples, 0)
    ]
    return _percentile_interval(values, 0.95)


def _patient_resamples(labels: np.ndarray, patients: Sequence[str], resamples: int, seed: int) -> Iterator[np.ndarray]:
    """Row indices of ``resamples`` bootstrap draws of patients; draws with a single class are skipped."""
    unique, patient_index = np.unique(np.asarray(patients), return_inverse=True)
    rows = [np.nonzero(patient_index == p)[0] for p in range(len(unique))]
    rng = np.random.default_rng(seed)
    for _ in range(resamples):
        drawn = np.concatenate([rows[p] for p in rng.integers(0, len(unique), len(unique))])
        if 0 < labels[drawn].sum() < len(drawn):
            yield drawn


def _percentile_interval(values: Sequence[float], level: float) -> tuple[float, float]:
    tail = 100.0 * (1.0 - level) / 2.0
    low, high = np.percentile(values, [tail, 100.0 - tail])
    return float(low), float(high)


@dataclass
class ScoreSummary:
    """Cross-validated performance of one method (pooled over folds)."""

    auroc: float
    interval: tuple[float, float]
    fold_aurocs: list[float]
    sensitivity_at_90_specificity: float
    specificity_at_90_sensitivity: float

    @property
    def fold_mean(self) -> float:
        return float(np.mean(self.fold_aurocs))

    @property
    def fold_sd(self) -> float:
        return float(np.std(self.fold_aurocs))

    def to_dict(self) -> dict:
        return {
            "auroc": round(self.auroc, 4),
            "auroc_95ci": [round(v, 4) for v in self.interval],
            "fold_aurocs": [round(v, 4) for v in self.fold_aurocs],
            "sensitivity_at_90_specificity": round(self.sensitivity_at_90_specificity, 4),
            "specificity_at_90_sensitivity": round(self.specificity_at_90_sensitivity, 4),
        }


def summarise(
    labels: np.ndarray,
    scores: np.ndarray,
    folds: np.ndarray,
    patients: Sequence[str],
    resamples: int = 2000,
    seed: int = 0,
) -> ScoreSummary:
    """Pooled AUROC with its patient-bootstrap interval, per-fold AUROCs and the two operating points."""
    labels = np.asarray(labels).astype(bool)
    folds = np.asarray(folds)
    return ScoreSummary(
        auroc=auroc(labels, scores),
        interval=patient_bootstrap_interval(labels, scores, patients, resamples, seed),
        fold_aurocs=[auroc(labels[folds == f], np.asarray(scores)[folds == f]) for f in np.unique(folds)],
        sensitivity_at_90_specificity=sensitivity_at_specificity(labels, scores, 0.9),
        specificity_at_90_sensitivity=specificity_at_sensitivity(labels, scores, 0.9),
    )

"""The ProstateX findings dataset and its evaluation protocol (patient-grouped 5-fold cross-validation).

The dataset (``../shared/data/prostatex-findings/patches_32x32.npz``, read without pickle): 305
findings of 197 patients (68 clinically significant) with T2, ADC and high-b patches made as
:mod:`LesionAILib.prostatex.patches` makes them, zone, label, LPS position and a patient-grouped ``fold`` (0–4).

Protocol: for each fold, fit on the other four and score the held-out one; anything tunable is
chosen on the training folds only (for the classifier: the epochs, by an inner CV over the
remaining folds, :func:`LesionAILib.prostatex.classifier_training.fit_classifier`). The pooled out-of-fold scores
are summarised by :func:`LesionAILib.evaluation.roc.summarise` (AUROC with a patient-bootstrap interval,
operating points).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from LesionAILib.errors import StudyError
from LesionAILib.prostatex.classifier import (
    PatchClassifierConfig,
    PatchInputs,
    zone_one_hot,
)
from LesionAILib.prostatex.classifier_training import TrainingSettings, fit_classifier
from LesionAILib.prostatex.localization_maps import localization_maps

PATCHES_FILE = "patches_32x32.npz"


@dataclass
class Findings:
    """Findings with their inputs (:class:`~LesionAILib.prostatex.classifier.PatchInputs`) and labels.

    Attributes:
        labels: [N] bool, clinically significant (ProstateX ``ClinSig``).
        patients, finding_ids, zones: [N] str (zones PZ, TZ, AS or SV).
        folds: [N] int, the dataset's patient-grouped folds.
        positions_lps: [N, 3] float64, finding centres in LPS mm.
    """

    inputs: PatchInputs
    labels: np.ndarray
    patients: np.ndarray
    finding_ids: np.ndarray
    zones: np.ndarray
    folds: np.ndarray
    positions_lps: np.ndarray

    def __len__(self) -> int:
        return len(self.labels)

    def subset(self, index: np.ndarray) -> Findings:
        return Findings(
            self.inputs.subset(index),
            self.labels[index],
            self.patients[index],
            self.finding_ids[index],
            self.zones[index],
            self.folds[index],
            self.positions_lps[index],
        )

    def index_of(self, patient: str, finding_id: int | str) -> int:
        """Row of a finding, e.g. ``index_of("ProstateX-0000", 1)``."""
        rows = np.nonzero((self.patients == patient) & (self.finding_ids == str(finding_id)))[0]
        if len(rows) != 1:
            raise KeyError(f"no single finding {finding_id} of {patient}")
        return int(rows[0])


def load_findings(folder: str | Path, localization: str = "blob") -> Findings:
    """Read the findings dataset with the ``localization`` maps of
    :mod:`LesionAILib.prostatex.localization_maps` (default: the centred blobs the shipped classifier
    is trained with; ``low_adc`` or ``none``)."""
    path = Path(folder) / PATCHES_FILE
    if not path.exists():
        raise StudyError("ProstateX findings patches not found", path, "check ../shared/data/prostatex-findings")
    with np.load(path, allow_pickle=False) as data:
        images = torch.from_numpy(np.stack([data["t2"], data["adc"], data["hbv"]], 1).astype(np.float32))
        zones = data["zone"].astype(str)
        findings = Findings(
            inputs=PatchInputs(images, localization_maps(images, localization), zone_one_hot(list(zones))),
            labels=data["clinsig"].astype(bool),
            patients=data["patient"].astype(str),
            finding_ids=data["fid"].astype(str),
            zones=zones,
            folds=data["fold"].astype(int),
            positions_lps=data["pos_mm"].astype(np.float64),
        )
    return findings


def cross_validate(
    findings: Findings,
    fit_predict: Callable[[Findings, Findings], np.ndarray],
    log: Callable[[str], None] | None = None,
) -> np.ndarray:
    """Out-of-fold scores [N]: for each fold, ``fit_predict(training findings, held-out findings)``."""
    scores = np.zeros(len(findings))
    for fold in np.unique(findings.folds):
        train, test = np.nonzero(findings.folds != fold)[0], np.nonzero(findings.folds == fold)[0]
        if log:
            log(
                f"fold {fold}: train {len(train)} ({findings.labels[train].sum()} significant), "
                f"test {len(test)} ({findings.labels[test].sum()} significant)"
            )
        scores[test] = fit_predict(findings.subset(train), findings.subset(test))
    return scores


def classifier_fit_predict(
    config: PatchClassifierConfig,
    settings: TrainingSettings,
    seed: int = 0,
    log: Callable[[str], None] | None = None,
    records: list | None = None,
) -> Callable[[Findings, Findings], np.ndarray]:
    """The patch classifier as a :func:`cross_validate` method: epochs by inner CV over the training folds.

    Each fold's training record (chosen epochs, inner-CV AUROCs) is appended to ``records``.
    """

    def fit_predict(train: Findings, test: Findings) -> np.ndarray:
        fold_seed = seed + 1000 * int(test.folds[0])
        classifier, record = fit_classifier(train.inputs, train.labels, train.folds, config, settings, fold_seed, log)
        if records is not None:
            records.append(record)
        return classifier.probabilities(test.inputs, list(test.zones))

    return fit_predict

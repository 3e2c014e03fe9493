"""Score a model on prepared cases (model grid) or on cohorts (full analysis in T2 geometry).

* :func:`prepared_detections` — fast: the cached, preprocessed cases of :mod:`LesionAILib.training.cohorts`
  are analysed on the model grid and compared with their csPCa masks there (training validation,
  active-learning loops).
* the deployed path (``benchmarks/accuracy.py``): every case is opened from disk and analysed by
  :meth:`Analyzer.analyze`; its detection map in the original T2 geometry is compared with
  :func:`significant_lesion_mask`, the cohort's csPCa lesions on the T2 grid.

Both give inputs for :func:`LesionAILib.evaluation.metrics.evaluate_arrays` (picai-eval).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import SimpleITK as sitk
import torch

from LesionAILib.evaluation.metrics import EvaluationResult, evaluate_arrays
from LesionAILib.inference.analyzer import Analyzer
from LesionAILib.inference.candidates import detection_map
from LesionAILib.studies.case import Case
from LesionAILib.training.cohorts import CaseRecord, PreparedCase


class _LocalizerOnly(torch.nn.Module):
    """A model seen without its classifier: candidates are scored by their map peak."""

    def __init__(self, model):
        super().__init__()
        self.inner = model
        self.config = model.config
        self.classifier = None

    def forward(self, images):
        return self.inner(images)


def localization_only(analyzer: Analyzer) -> Analyzer:
    """A copy of ``analyzer`` that ignores the classification network (score = map peak)."""
    view = Analyzer(
        (analyzer.model, analyzer.metadata),
        device=analyzer.device,
        tta=analyzer.tta,
        max_candidates=analyzer.max_candidates,
    )
    view.model = _LocalizerOnly(analyzer.model)
    return view


@torch.no_grad()
def prepared_detections(
    analyzer: Analyzer, cases: Sequence[PreparedCase]
) -> tuple[list[np.ndarray], list[np.ndarray], list[str]]:
    """(detection maps, csPCa masks, case ids) on the model grid."""
    detections, labels, ids = [], [], []
    for case in cases:
        _, _, candidates, label_map = analyzer.analyze_prepared(case.preprocessed(analyzer.metadata.preprocess.roles))
        detections.append(detection_map(label_map, candidates))
        labels.append(case.cspca_mask())
        ids.append(case.case_id)
    return detections, labels, ids


def significant_lesion_mask(record: CaseRecord, case: Case) -> np.ndarray:
    """[Z, Y, X] uint8 on the case's T2 grid: 1 on its clinically significant lesions (ISUP >= 2), else 0."""
    significant = [lesion.lesion_id for lesion in record.lesions if lesion.grade_group >= 2]
    if case.lesion_mask is None:
        return np.zeros(sitk.GetArrayViewFromImage(case.t2w).shape, np.uint8)
    return np.isin(sitk.GetArrayFromImage(case.lesion_mask), significant).astype(np.uint8)


def score(detections, labels, ids, bootstrap: int = 0, sites: dict[str, str] | None = None) -> EvaluationResult:
    """picai-eval metrics of detection maps against labels."""
    return evaluate_arrays(detections, labels, ids, sites=sites, bootstrap=bootstrap)

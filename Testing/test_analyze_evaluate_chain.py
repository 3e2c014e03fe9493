"""The README's research workflow as a user types it: phantom cohort → batch analyze → evaluate.

``lesionai phantom`` writes a PI-CAI cohort, ``lesionai analyze A B ... --out PRED`` writes one result
folder per case (``PRED/<case>/detection_map.nrrd`` and ``.nii.gz``), and ``lesionai evaluate PRED LABELS`` must
pair every one of them with its label and report picai-eval's own numbers for those maps.
"""

from __future__ import annotations

import contextlib
import io
import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk

with contextlib.redirect_stdout(io.StringIO()):  # picai_eval prints a banner on import
    import picai_eval

CASES, SITE, SEED = 4, "A", 1  # seed 1: one csPCa case among the four, so AUROC and AP are defined
FP_PER_CASE = (0.25, 0.5, 1.0, 2.0)


def lesionai(*arguments: str) -> subprocess.CompletedProcess:
    """Run the installed console script (the one next to this interpreter), as a user would."""
    script = shutil.which("lesionai", path=str(Path(sys.executable).parent)) or shutil.which("lesionai")
    assert script, f"the lesionai console script is not installed next to {sys.executable}"
    process = subprocess.run([script, *arguments], capture_output=True, text=True, timeout=600)
    assert process.returncode == 0, f"lesionai {' '.join(arguments)} failed:\n{process.stderr[-2000:]}"
    return process


@pytest.fixture(scope="module")
def chain(tmp_path_factory):
    """Run the three commands once; returns the folders and the evaluation JSON."""
    root = tmp_path_factory.mktemp("chain")
    cohort, pred, metrics_json = root / "cohort", root / "PRED", root / "metrics.json"
    lesionai("phantom", "--out", str(cohort), "--cases", str(CASES), "--site", SITE, "--seed", str(SEED))
    studies = sorted(str(folder) for folder in (cohort / "images").iterdir())
    lesionai("analyze", *studies, "--out", str(pred))
    evaluation = lesionai("evaluate", str(pred), str(cohort / "labels"), "--json", str(metrics_json))
    return {
        "labels": cohort / "labels",
        "pred": pred,
        "metrics": json.loads(metrics_json.read_text()),
        "table": evaluation.stdout,
    }


def read_array(path: Path) -> np.ndarray:
    return sitk.GetArrayFromImage(sitk.ReadImage(str(path)))


def cohort_arrays(chain) -> tuple[list[str], list[np.ndarray], list[np.ndarray]]:
    """Case ids (label stems), detection maps as analyze wrote them, binary labels: read here, not by LesionAI."""
    ids = sorted(path.name.removesuffix(".nii.gz") for path in chain["labels"].glob("*.nii.gz"))
    maps = [read_array(chain["pred"] / case_id / "detection_map.nrrd") for case_id in ids]
    labels = [(read_array(chain["labels"] / f"{case_id}.nii.gz") > 0).astype(np.uint8) for case_id in ids]
    return ids, maps, labels


def test_every_analysed_case_is_paired_and_none_scored_as_empty(chain):
    ids, maps, _ = cohort_arrays(chain)
    metrics = chain["metrics"]
    assert len(ids) == CASES
    assert sorted(path.name for path in chain["pred"].iterdir()) == ids  # analyze: one folder per case
    assert metrics["num_cases"] == CASES and sorted(metrics["cases"]) == ids
    assert not any("scored as empty" in warning for warning in metrics["warnings"])
    with_candidates = [case_id for case_id, detection in zip(ids, maps, strict=True) if detection.max() > 0]
    assert with_candidates, "the demo model found no candidate in any case: the chain test would prove nothing"
    for case_id, detection in zip(ids, maps, strict=True):
        # picai_eval's case score is the map's maximum: a case read as empty would score 0
        assert metrics["cases"][case_id]["confidence"] == pytest.approx(float(detection.max()), abs=1e-6)


def test_metrics_equal_picai_eval_on_the_same_detection_maps(chain):
    ids, maps, labels = cohort_arrays(chain)
    assert 0 < sum(label.any() for label in labels) < CASES  # positives and negatives: AUROC is defined
    reference = picai_eval.evaluate(y_det=maps, y_true=labels, subject_list=ids, num_parallel_calls=1)
    metrics = chain["metrics"]
    assert metrics["num_lesions"] == reference.num_lesions > 0
    assert metrics["num_positive_cases"] == sum(reference.case_target.values())
    assert metrics["ap"] == pytest.approx(reference.AP, abs=1e-9)
    assert metrics["auroc"] == pytest.approx(reference.auroc, abs=1e-9)
    assert metrics["score"] == pytest.approx(reference.score, abs=1e-9)
    for x in FP_PER_CASE:
        assert metrics["froc_sensitivity"][f"{x:g}"] == pytest.approx(float(reference.lesion_TPR_at_FPR(x)), abs=1e-9)
    for case_id in ids:  # per case: picai_eval's (is_lesion, confidence, overlap) of every lesion and candidate
        ours = np.asarray(metrics["cases"][case_id]["lesions"], np.float64).reshape(-1, 3)
        theirs = np.asarray(reference.lesion_results[case_id], np.float64).reshape(-1, 3)
        assert ours.shape == theirs.shape and np.allclose(ours, theirs, atol=1e-9)
    assert f"predictions: {chain['pred']}" in chain["table"]

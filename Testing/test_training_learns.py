"""Training learns: a small localization network goes from chance to a useful validation AP in about 90 s.

Cohorts: 24 training and 16 validation phantom cases of site A (different seeds, so different
patients); model grid 12 × 64 × 64 at 3 × 1.5 × 1.5 mm, a fusion localizer of widths 8/16/32,
24 phase-1 epochs (about 90 s on 2 CPU cores). The validation metrics (picai-eval; lesion-level AP,
and case-level AUROC with case score = the detection map's maximum) are measured with the same code
path for the untrained and the trained network. The untrained network is a second trainer's fresh
initialisation, so measuring it leaves the trained run untouched.

The budget and thresholds come from a sweep over the training seed (the config's ``seed`` 0–5, which
sets the initialisation and the crops), measured 2026-12-03 on 2 threads with
``benchmarks/training_learns_seeds.py`` (this test's code path, one run per seed): best-epoch AP
0.690 / 0.555 / 0.781 / 0.766 / 0.540 / 0.777 (min 0.54), AUROC
0.841 / 0.810 / 0.794 / 0.825 / 0.762 / 0.794 (min 0.76); untrained AP 0 at every seed,
untrained AUROC 0.32–0.70 (an untrained map's maximum already ranks cases somewhat: brighter studies
give higher maxima), so the lesion-level AP — which needs the map to point at the lesion — is the
contrast asserted. Seed 3 (the one used here) at 1 thread instead of 2, a different reduction
order: AP 0.741, AUROC 0.825 (0.766 / 0.825 at 2 threads). The thresholds (AP ≥ 0.40, AUROC ≥ 0.70)
sit 0.14 and 0.06 below the worst seed.

Why 24 epochs: this test first ran 8 epochs, tuned on one machine to AP 0.46–0.53. Lesion-level AP
only appears after epoch 5–13, depending on the seed, so 8 epochs sat on that edge. A different float
reduction order (thread count, another CPU's kernels) flipped it: CI measured AP 0.16, and at 8 epochs
5 of the 6 seeds above give AP 0.
"""

from __future__ import annotations

import pytest
import torch
from conftest import tiny_config

from LesionAILib.models.modelfile import load_model
from LesionAILib.phantom.cohort import write_cohort
from LesionAILib.training.config import TrainConfig
from LesionAILib.training.trainer import Trainer

SETTINGS = {
    "preprocess": {"shape": [12, 64, 64], "spacing": [3.0, 1.5, 1.5]},
    "model": {
        "localizer": {"variant": "fusion", "widths": [8, 16, 32], "pools": [[1, 2, 2], [2, 2, 2]], "dropout": 0.0},
        "classifier": {"crop": [4, 16, 16], "widths": [4, 8], "hidden": 8},
    },
    "phase1": {
        "epochs": 24,
        "batch_size": 8,
        "crops_per_case": 4,
        "crop": [8, 32, 32],
        "patience": 50,
        "lesion_fraction": 0.5,
        "lr": 0.003,
    },
    "phase2": {"epochs": 0},
}


@pytest.mark.slow
def test_phase1_training_reaches_a_validation_ap_the_untrained_network_does_not(tmp_path):
    torch.manual_seed(0)  # the networks' initialisation must not depend on which tests ran before
    write_cohort(tmp_path / "train", 24, site="A", seed=21)
    write_cohort(tmp_path / "val", 16, site="A", seed=22)
    config = TrainConfig.from_dict(
        tiny_config([str(tmp_path / "train")], str(tmp_path / "cache"), val=[str(tmp_path / "val")], **SETTINGS)
    )
    untrained_trainer = Trainer(config, tmp_path / "untrained")
    untrained_trainer.prepare_data()
    assert len(untrained_trainer.train_cases) == 24 and len(untrained_trainer.val_cases) == 16
    positives = sum(any(lesion.grade_group >= 2 for lesion in case.lesions) for case in untrained_trainer.val_cases)
    assert 4 <= positives <= 12, "the validation cohort has both classes"
    untrained = untrained_trainer.validate(use_classifier=False)
    _, metadata = load_model(Trainer(config, tmp_path / "run").run("1"))
    trained = metadata.metrics["phase1_validation"]
    report = f"trained {trained}, untrained {untrained}"
    assert trained["ap"] >= 0.40 and trained["auroc"] >= 0.70, report
    assert untrained["ap"] <= 0.10 and trained["ap"] >= untrained["ap"] + 0.35, report

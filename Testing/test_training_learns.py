"""Training learns: a small localization network goes from chance to a useful validation AUROC in seconds.

Cohorts: 24 training and 16 validation phantom cases of site A (different seeds, so different
patients); model grid 12 × 64 × 64 at 3 × 1.5 × 1.5 mm, a fusion localizer of widths 8/16/32, eight
phase-1 epochs (about 80 s on 2 CPU cores). The validation AUROC (case level, picai-eval, case
score = the detection map's maximum) is measured with the same code path for the untrained and the
trained network. The budget was chosen by trying it (AUROC 0.81–0.89 from epoch 3 to 12, lesion-level AP
0.46–0.53 from epoch 7 on; untrained: AUROC 0.70, AP 0). The untrained network is a second
trainer's fresh initialisation, so measuring it leaves the trained run untouched. An untrained
map's maximum already ranks cases somewhat (AUROC 0.70: brighter studies give higher maxima), so
the lesion-level AP — which needs the map to point at the lesion — is the clearer contrast.
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
        "epochs": 8,
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
def test_phase1_training_reaches_a_validation_auroc_the_untrained_network_does_not(tmp_path):
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
    assert trained["auroc"] >= 0.80 and trained["ap"] >= 0.30, report
    assert untrained["ap"] <= 0.10 and untrained["auroc"] <= trained["auroc"] - 0.10, report

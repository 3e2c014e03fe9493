"""The ProstateX patch classifier: network, protocol, metrics, shipped model, CLI and Analyzer integration."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from conftest import FINDING_0000_LPS, TINY_MODEL, require_module

from LesionAILib.cli.main import main
from LesionAILib.errors import ModelFileError
from LesionAILib.evaluation.roc import auroc, sensitivity_at_specificity, specificity_at_sensitivity
from LesionAILib.geometry import lps_to_ras
from LesionAILib.inference.analyzer import Analyzer
from LesionAILib.inference.candidates import Candidate
from LesionAILib.models.modelfile import ModelMetadata, load_model, save_model
from LesionAILib.models.networks import LesionModel, ModelConfig
from LesionAILib.preprocessing.pipeline import PreprocessConfig
from LesionAILib.prostatex.classifier import (
    BUNDLED_CLASSIFIER,
    CLASSIFIER_NAME,
    MultiScaleNet,
    PatchClassifier,
    PatchClassifierConfig,
    PatchInputs,
    load_classifier,
    mirror_averaged_logit,
)
from LesionAILib.prostatex.classifier_training import TrainingSettings, train_member
from LesionAILib.prostatex.findings import load_findings
from LesionAILib.prostatex.point_classification import PointClassifier


@pytest.fixture(scope="module")
def findings(findings_dir):
    return load_findings(findings_dir)


@pytest.fixture(scope="module")
def shipped():
    return PointClassifier(BUNDLED_CLASSIFIER)


def test_network_views_and_outputs_have_the_documented_shapes():
    torch.manual_seed(0)
    images, localization, zone = torch.rand(4, 3, 32, 32), torch.rand(4, 2, 32, 32), torch.eye(3)[[0, 1, 2, 0]]
    views = MultiScaleNet.views(images, localization)
    assert {k: tuple(v.shape) for k, v in views.items()} == {
        "centre": (4, 3, 16, 16),
        "context": (4, 3, 16, 16),
        "t2w": (4, 2, 16, 16),
    }
    torch.testing.assert_close(views["centre"][:, 0], images[:, 1, 8:24, 8:24] - 0.5)  # ADC, central 16 × 16
    torch.testing.assert_close(views["t2w"][:, 1], torch.nn.functional.avg_pool2d(localization[:, :1], 2)[:, 0])
    member = MultiScaleNet(PatchClassifierConfig()).eval()
    assert member(images, localization, zone).shape == (4,)
    assert sum(p.numel() for p in member.parameters()) < 60_000
    ensemble = PatchClassifier(PatchClassifierConfig(members=3)).eval()
    with torch.no_grad():
        logits = ensemble(images, localization, zone)
        inputs = PatchInputs(images, localization, zone)
        expected = torch.stack([mirror_averaged_logit(member, inputs) for member in ensemble.members])
    torch.testing.assert_close(logits, expected.mean(0))


def test_the_dataset_and_its_folds_are_patient_grouped(findings):
    assert len(findings) == 305 and findings.labels.sum() == 68 and len(np.unique(findings.patients)) == 197
    assert sorted(np.unique(findings.folds)) == [0, 1, 2, 3, 4]
    for patient in np.unique(findings.patients):
        assert len(np.unique(findings.folds[findings.patients == patient])) == 1, patient
    assert findings.inputs.images.shape == (305, 3, 32, 32) and findings.inputs.localization.shape == (305, 2, 32, 32)
    zones = findings.inputs.zone.numpy()
    assert np.all(zones[findings.zones == "SV"] == 0) and np.all(zones[findings.zones != "SV"].sum(1) == 1)


def test_a_short_training_on_a_subset_learns_its_training_findings(findings):
    subset = findings.subset(np.nonzero(findings.folds < 2)[0])  # 119 findings, 25 significant
    settings = TrainingSettings()
    net = train_member(subset.inputs, subset.labels, 25, PatchClassifierConfig(members=1, dropout=0.0), settings, 0)
    with torch.no_grad():
        scores = mirror_averaged_logit(net, subset.inputs).numpy()
    assert auroc(subset.labels, scores) > 0.85
    again = train_member(subset.inputs, subset.labels, 2, PatchClassifierConfig(members=1), settings, 5)
    twice = train_member(subset.inputs, subset.labels, 2, PatchClassifierConfig(members=1), settings, 5)
    for a, b in zip(again.state_dict().values(), twice.state_dict().values(), strict=True):
        torch.testing.assert_close(a, b)  # deterministic per seed


def test_roc_metrics_equal_scikit_learns():
    metrics = require_module("sklearn.metrics", "scikit-learn is a test dependency")
    rng = np.random.default_rng(3)
    labels = rng.random(200) < 0.25
    scores = np.round(labels * 0.8 + rng.normal(size=200), 1)  # with ties
    assert auroc(labels, scores) == pytest.approx(metrics.roc_auc_score(labels, scores), abs=1e-12)
    fpr, tpr, _ = metrics.roc_curve(labels, scores)
    assert sensitivity_at_specificity(labels, scores, 0.9) == pytest.approx(tpr[fpr <= 0.1 + 1e-12].max())
    assert specificity_at_sensitivity(labels, scores, 0.9) == pytest.approx(1 - fpr[tpr >= 0.9 - 1e-12].min())


def test_shipped_model_scores_the_prostatex_0000_finding_as_it_scores_the_stored_patches(shipped, case_0000, findings):
    assert shipped.name == CLASSIFIER_NAME and "not for clinical use" in shipped.metadata.intended_use
    metrics = shipped.metadata.metrics
    assert metrics["cv"]["auroc"] > 0.7 and len(metrics["cv"]["auroc_95ci"]) == 2
    assert shipped.metadata.training["findings"] == 305 and len(shipped.classifier.members) == 5
    result = shipped.classify(case_0000, FINDING_0000_LPS, zone="PZ")
    assert 0.0 <= result.probability <= 1.0
    row = findings.index_of("ProstateX-0000", 1)
    stored = shipped.classifier.probabilities(findings.inputs.subset([row]), ["PZ"])[0]
    assert result.probability == pytest.approx(stored, abs=1e-5)  # extraction reproduces the dataset
    unknown = shipped.classify(case_0000, FINDING_0000_LPS)
    per_zone = [shipped.classify(case_0000, FINDING_0000_LPS, zone=z).probability for z in ("PZ", "TZ", "AS")]
    prior = shipped.classifier.zone_prior.numpy()
    assert unknown.zone is None and unknown.probability == pytest.approx(float(np.dot(prior, per_zone)), abs=1e-6)


def test_shipped_model_file_refuses_tampering_and_the_wrong_loader(tmp_path):
    tampered = tmp_path / "tampered.safetensors"
    raw = bytearray(BUNDLED_CLASSIFIER.read_bytes())
    raw[-7] ^= 0xFF
    tampered.write_bytes(bytes(raw))
    with pytest.raises(ModelFileError, match="checksum mismatch"):
        load_classifier(tampered)
    with pytest.raises(ModelFileError, match="this is a patch classifier") as caught:
        load_model(BUNDLED_CLASSIFIER)  # the detector loader
    assert "\n" not in str(caught.value)
    detector = _tiny_detector(tmp_path)
    with pytest.raises(ModelFileError, match="this is a LesionAI detector"):
        load_classifier(detector)
    truncated = tmp_path / "truncated.safetensors"
    truncated.write_bytes(BUNDLED_CLASSIFIER.read_bytes()[:5000])
    with pytest.raises(ModelFileError, match="truncated"):
        load_classifier(truncated)


def _tiny_detector(folder):
    torch.manual_seed(1)
    config = ModelConfig.from_dict(TINY_MODEL)
    metadata = ModelMetadata(
        name="tiny-untrained",
        architecture=config,
        preprocess=PreprocessConfig(shape=(8, 48, 48), spacing=(3.0, 2.0, 2.0)),
        synthetic_training_data=True,
    )
    return save_model(LesionModel(config).eval(), metadata, folder / "tiny-detector.safetensors")


def test_cli_classify_prints_probability_and_model_as_json_and_writes_the_strip(
    prostatex_dir, tmp_path, capsys, shipped, case_0000
):
    study = str(prostatex_dir / "ProstateX-0000")
    assert main(["classify", study, "--point", "25.7457,31.8707,-38.511", "--json", "--out", str(tmp_path)]) == 0
    printed = json.loads(capsys.readouterr().out)
    assert printed["model"] == CLASSIFIER_NAME and 0.0 <= printed["probability"] <= 1.0
    assert printed["probability"] == pytest.approx(shipped.classify(case_0000, FINDING_0000_LPS).probability, abs=1e-4)
    assert printed["windows"]["adc"]["slice_index"] == 8 and (tmp_path / "patches.png").stat().st_size > 5000
    ras = ",".join(f"{v}" for v in lps_to_ras(FINDING_0000_LPS))
    assert main(["classify", study, f"--point={ras}", "--ras", "--zone", "PZ", "--out", str(tmp_path)]) == 0
    text = capsys.readouterr().out
    assert CLASSIFIER_NAME in text and "not for clinical use" in text


def test_cli_classify_refuses_a_point_outside_the_volume_in_one_line(prostatex_dir, tmp_path, capsys):
    study = str(prostatex_dir / "ProstateX-0000")
    assert main(["classify", study, "--point", "25,31,250", "--out", str(tmp_path)]) == 2
    error = capsys.readouterr().err.strip()
    assert error.startswith("lesionai: error:") and "outside" in error and "\n" not in error
    assert main(["classify", study, "--point", "25,31", "--out", str(tmp_path)]) == 2
    assert "--point expects X,Y,Z" in capsys.readouterr().err


def test_analyzer_rescores_candidates_with_the_classifier_and_keeps_the_detector_probability(
    case_0000, tmp_path, shipped
):
    analyzer = Analyzer(_tiny_detector(tmp_path), device="cpu", patch_classifier=shipped)
    at_finding = Candidate(1, 0.4, 30, 0.1, (0, 0, 0), FINDING_0000_LPS, tuple(lps_to_ras(FINDING_0000_LPS)), 0.4)
    outside = Candidate(2, 0.9, 30, 0.1, (0, 0, 0), (25.0, 31.0, 250.0), (-25.0, -31.0, 250.0), 0.9, score_model="d")
    candidates = [outside, at_finding]
    analyzer.rescore_with_patch_classifier(case_0000, candidates)
    expected = shipped.classify(case_0000, FINDING_0000_LPS).probability
    assert at_finding.probability == pytest.approx(expected) and at_finding.detector_probability == 0.4
    assert at_finding.score_model == CLASSIFIER_NAME and at_finding.to_dict()["detector_probability"] == 0.4
    assert outside.probability == 0.9 and outside.detector_probability is None and "outside" in outside.score_model
    assert candidates == sorted(candidates, key=lambda c: -c.probability)
    result = analyzer.analyze(case_0000)
    assert result.to_dict()["classifier"] == CLASSIFIER_NAME and "patch_classifier" in result.timings
    assert result.candidates, "the check below must not pass on an empty table"
    assert all(c.score_model == CLASSIFIER_NAME or "outside" in c.score_model for c in result.candidates)
    plain = Analyzer(_tiny_detector(tmp_path), device="cpu").analyze(case_0000)
    assert plain.candidates and "classifier" not in plain.to_dict()
    assert all(c.detector_probability is None for c in plain.candidates)

"""Case analysis end to end: geometry of every output, the candidate table, files, the CLI."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest
import SimpleITK as sitk
from conftest import ROOT

from LesionAILib.geometry import Grid, lps_to_ras
from LesionAILib.inference.analyzer import Analyzer
from LesionAILib.inference.results import write_result


def _run(*arguments: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "LesionAILib.cli", *arguments],
        capture_output=True,
        text=True,
        timeout=600,
        env={"PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1", "PATH": "/usr/bin:/bin"},
    )


@pytest.fixture(scope="module")
def phantom_case(phantom_cohort):
    from LesionAILib.training.cohorts import read_cohort

    record = next(r for r in read_cohort(phantom_cohort).cases if r.lesions)
    return record.open()


def test_result_maps_are_in_the_exact_t2_geometry_and_candidates_are_consistent(
    phantom_case, tiny_model_path, tmp_path
):
    analyzer = Analyzer(tiny_model_path, device="cpu")
    result = analyzer.analyze(phantom_case)
    t2 = Grid.from_image(phantom_case.t2w)
    for image in (result.heatmap, result.detection_map, result.candidate_map, *result.sequence_heatmaps.values()):
        assert Grid.from_image(image) == t2
    assert set(result.sequence_heatmaps) == {"t2w", "adc", "hbv"}
    heat = sitk.GetArrayFromImage(result.heatmap)
    assert heat.min() >= 0 and heat.max() <= 1
    labels = sitk.GetArrayFromImage(result.candidate_map)
    detection = sitk.GetArrayFromImage(result.detection_map)
    assert result.case_score == max((c.probability for c in result.candidates), default=0.0)
    probabilities = [c.probability for c in result.candidates]
    assert probabilities == sorted(probabilities, reverse=True)
    assert len(result.candidates) >= 1, "the per-candidate checks below must not pass on an empty table"
    for c in result.candidates:
        np.testing.assert_allclose(c.center_ras_mm, lps_to_ras(c.center_lps_mm))
        region = labels == c.candidate_id
        assert region.any(), "every candidate has a region in the T2 grid"
        assert np.allclose(detection[region], c.probability, atol=1e-6)
        assert 0.0 <= c.probability <= 1.0 and len(c.grade_probabilities) == 6
        assert abs(sum(c.grade_probabilities) - 1.0) < 1e-4
        centroid = t2.index_to_lps(np.argwhere(region).mean(0))
        assert np.linalg.norm(centroid - np.asarray(c.center_lps_mm)) < 3.0, "region and centre agree (mm)"
    written = {p.name for p in write_result(result, phantom_case, tmp_path, analyzer.metadata)}
    assert {
        "heatmap.nii.gz",
        "heatmap.nrrd",
        "detection_map.nii.gz",
        "candidates.csv",
        "candidates.json",
        "result.json",
        "overview.png",
    } <= written
    rows = (tmp_path / "candidates.csv").read_text().splitlines()
    assert len(rows) == 1 + len(result.candidates)


def test_tta_and_device_choice(phantom_case, tiny_model_path):
    plain = Analyzer(tiny_model_path, device="cpu").analyze(phantom_case)
    mirrored = Analyzer(tiny_model_path, device="cpu", tta=True).analyze(phantom_case)
    assert Grid.from_image(mirrored.heatmap) == Grid.from_image(plain.heatmap)
    assert not np.array_equal(sitk.GetArrayFromImage(mirrored.heatmap), sitk.GetArrayFromImage(plain.heatmap))


@pytest.mark.realdata
def test_analyze_command_on_prostatex_0000_writes_maps_in_the_t2_series_geometry(
    prostatex_dir, tiny_model_path, tmp_path
):
    result = _run(
        "analyze",
        str(prostatex_dir / "ProstateX-0000"),
        "--out",
        str(tmp_path),
        "--model",
        str(tiny_model_path),
        "--device",
        "cpu",
    )
    assert result.returncode == 0, result.stderr
    reader = sitk.ImageSeriesReader()
    reader.SetFileNames(
        reader.GetGDCMSeriesFileNames(str(prostatex_dir / "ProstateX-0000/07-07-2011/4.000000-t2tsetra-00702"))
    )
    t2 = reader.Execute()
    for name, tolerance in (("heatmap.nrrd", 1e-9), ("heatmap.nii.gz", 1e-4), ("detection_map.nrrd", 1e-9)):
        image = sitk.ReadImage(str(tmp_path / name))
        assert image.GetSize() == t2.GetSize()
        np.testing.assert_allclose(image.GetSpacing(), t2.GetSpacing(), atol=tolerance)
        np.testing.assert_allclose(image.GetOrigin(), t2.GetOrigin(), atol=tolerance * 100)
        np.testing.assert_allclose(image.GetDirection(), t2.GetDirection(), atol=tolerance)
    candidates = json.loads((tmp_path / "candidates.json").read_text())
    assert isinstance(candidates, list) and len(candidates) >= 1
    for candidate in candidates:
        assert {"probability", "center_lps_mm", "center_ras_mm", "volume_ml", "grade_group"} <= set(candidate)
    summary = json.loads((tmp_path / "result.json").read_text())
    assert summary["case"]["roles"]["t2w"]["series_number"] == 4
    assert any(p.suffix == ".png" for p in tmp_path.iterdir())


def test_analyze_command_errors_are_one_line(tmp_path, tiny_model_path):
    missing = _run("analyze", str(tmp_path / "nothing"), "--out", str(tmp_path / "o"), "--model", str(tiny_model_path))
    assert missing.returncode == 2 and missing.stderr.count("\n") == 1 and "no such file or folder" in missing.stderr
    bad_model = tmp_path / "model.safetensors"
    bad_model.write_bytes(b"not a model")
    result = _run(
        "analyze",
        "--t2w",
        "a.nii",
        "--adc",
        "b.nii",
        "--hbv",
        "c.nii",
        "--out",
        str(tmp_path),
        "--model",
        str(bad_model),
    )
    assert result.returncode == 2 and "Traceback" not in result.stderr and str(bad_model) in result.stderr


def test_evaluate_command_writes_picai_metrics(phantom_case, tiny_model_path, tmp_path):
    predictions, labels = tmp_path / "pred", tmp_path / "labels"
    predictions.mkdir()
    labels.mkdir()
    analyzer = Analyzer(tiny_model_path, device="cpu")
    result = analyzer.analyze(phantom_case)
    sitk.WriteImage(result.detection_map, str(predictions / "case1.nii.gz"))
    label = sitk.Cast(phantom_case.lesion_mask > 0, sitk.sitkUInt8)
    sitk.WriteImage(label, str(labels / "case1.nii.gz"))
    sitk.WriteImage(result.detection_map * 0, str(predictions / "case2.mha"))
    sitk.WriteImage(label * 0, str(labels / "case2.nrrd"))
    out = tmp_path / "metrics.json"
    evaluated = _run("evaluate", str(predictions), str(labels), "--json", str(out), "--bootstrap", "50")
    assert evaluated.returncode == 0, evaluated.stderr
    metrics = json.loads(out.read_text())
    assert {"auroc", "ap", "score"} <= set(metrics) and metrics["num_cases"] == 2

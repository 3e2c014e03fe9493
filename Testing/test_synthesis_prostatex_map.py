"""The real-patient abnormality map: the bundled 2D ProstateX synthesis model slid over a study's gland."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk

from LesionAILib.cli.main import main
from LesionAILib.errors import ModelFileError, StudyError
from LesionAILib.prostatex.patches import NEAREST_VOXEL_AT, PATCH_SIZE
from LesionAILib.synthesis.slice_map import cut_windows, disk_offsets, spread_over_disks, window_centres

ROOT = Path(__file__).resolve().parents[1]
BUNDLED = ROOT / "Resources" / "Models" / "lesionai-synthesis-prostatex-2d.safetensors"


# --------------------------------------------------------------------------- the shipped file
def test_bundled_model_loads_and_names_the_excluded_patients():
    from LesionAILib.synthesis.model_file import load_synthesis_model
    from LesionAILib.synthesis.slice_analysis import SliceAbnormalityAnalyzer, abnormality_analyzer

    assert BUNDLED.stat().st_size < 2_000_000
    net, metadata = load_synthesis_model(BUNDLED)  # integrity (sha256) checked on load
    assert len(metadata.sha256) == 64
    assert net.config.dimensions == 2 and metadata.roles == ("adc", "hbv")
    assert metadata.preprocess is None and metadata.masks["kind"] == "2d-patch"
    assert metadata.training["excluded_patients"] == ["ProstateX-0000", "ProstateX-0001"]
    # the dataset README: 305 findings of 197 patients; the two studies have one finding each
    assert (metadata.training["findings"], metadata.training["patients"]) == (303, 195)
    assert {f["patient"] for f in metadata.metrics["left_out_findings"]} == {"ProstateX-0000", "ProstateX-0001"}
    assert not metadata.synthetic_training_data and "not for clinical use" in metadata.notice
    assert isinstance(abnormality_analyzer(BUNDLED), SliceAbnormalityAnalyzer)


def test_the_3d_analyzer_refuses_the_2d_model():
    from LesionAILib.synthesis.analysis import AbnormalityAnalyzer

    with pytest.raises(ModelFileError, match="2D ProstateX patches"):
        AbnormalityAnalyzer(BUNDLED, device="cpu")


# --------------------------------------------------------------------------- window geometry, aggregation
def test_windows_put_the_centre_pixel_where_a_finding_patch_has_it_and_zero_outside():
    image = np.arange(2 * 3 * 20 * 24, dtype=np.float32).reshape(2, 3, 20, 24) + 1.0
    centres = np.array([[1, 10, 12], [2, 0, 23]])
    windows = cut_windows(image, centres)
    assert windows.shape == (2, 2, PATCH_SIZE, PATCH_SIZE)
    row, column = NEAREST_VOXEL_AT
    assert windows[0, 1, row, column] == image[1, 1, 10, 12]
    assert windows[0, 0, row + 3, column - 5] == image[0, 1, 13, 7]
    # the second centre sits in the top-right corner: the rows above and the columns right are outside
    assert windows[1, 0, row, column] == image[0, 2, 0, 23]
    assert (windows[1, :, :row] == 0).all() and (windows[1, :, :, column + 1 :] == 0).all()


def test_every_region_pixel_is_inside_the_scored_disk_of_a_window():
    rng = np.random.default_rng(5)
    region = np.zeros((3, 40, 40), bool)
    region[1] = rng.random((40, 40)) < 0.05  # scattered single pixels: the hardest case for a lattice
    region[2, 10:30, 5:9] = True
    centres = window_centres(region, stride=2)
    assert (centres[:, 1:] % 2 == 0).all()
    _, coverage = spread_over_disks(np.ones((1, len(centres))), centres, region.shape)
    assert (coverage[region] > 0).all()
    assert not coverage[0].any()  # no region on slice 0, no window there


def test_pixel_value_is_the_mean_of_the_windows_whose_disk_covers_it():
    assert len(disk_offsets(3.0)) == 29  # pixels within 3 px of a centre (counted by hand: 1+4+4+4+4+8+4)
    centres = np.array([[0, 10, 10], [0, 10, 12]])
    values = np.array([[2.0, 6.0], [1.0, -1.0]])  # [C, N]
    mean, coverage = spread_over_disks(values, centres, (1, 20, 20))
    assert mean[:, 0, 10, 7].tolist() == [2.0, 1.0]  # 3 px left of the first centre: only it covers
    assert mean[:, 0, 10, 11].tolist() == [4.0, 0.0]  # between them: the mean of both
    assert mean[:, 0, 10, 15].tolist() == [6.0, -1.0]
    assert coverage[0, 10, 11] == 2 and coverage[0, 10, 16] == 0 and mean[0, 0, 10, 16] == 0.0


# --------------------------------------------------------------------------- on the real ProstateX-0000 study
@pytest.fixture(scope="module")
def map_0000(case_0000, prostatex_dir):
    from LesionAILib.synthesis.slice_analysis import SliceAbnormalityAnalyzer

    gland = sitk.ReadImage(str(prostatex_dir / "gland-taps" / "ProstateX-0000_gland_taps.nii.gz"))
    lesion = sitk.GetArrayFromImage(sitk.ReadImage(str(prostatex_dir / "labels" / "ProstateX-0000_lesions.nii.gz")))
    analyzer = SliceAbnormalityAnalyzer(BUNDLED)
    return analyzer, analyzer.analyze(case_0000, gland), sitk.GetArrayFromImage(gland) > 0, lesion >= 2


@pytest.mark.realdata
def test_map_lies_exactly_on_the_t2_grid_and_is_zero_outside_the_gland(map_0000, case_0000):
    _, result, gland, _ = map_0000
    t2 = case_0000.t2w
    for image in (result.abnormality, result.candidate_map, *result.sequence_maps.values()):
        assert image.GetSize() == t2.GetSize() == (384, 384, 19)
        assert image.GetSpacing() == t2.GetSpacing()
        assert image.GetOrigin() == t2.GetOrigin()
        assert image.GetDirection() == t2.GetDirection()
    values = sitk.GetArrayFromImage(result.abnormality)
    assert np.isfinite(values).all()
    assert (values[~gland] == 0).all()
    assert np.count_nonzero(values[gland]) > 0.9 * gland.sum()


@pytest.mark.realdata
def test_top_candidate_overlaps_the_expert_cspca_lesion(map_0000):
    """Measured (benchmarks/synthesis_prostatex_map.py): candidate 1, peak z 1.89 (next 0.22), lesion mean 0.77
    against a gland median of −0.18. One study, one lesion: a check that the map still finds it, not a rate."""
    _, result, gland, lesion = map_0000
    assert lesion.sum() == 427
    labels = sitk.GetArrayFromImage(result.candidate_map)
    assert result.candidates, "the map gave no candidate"
    assert (labels[lesion] == result.candidates[0].candidate_id).any()
    values = sitk.GetArrayFromImage(result.abnormality)
    assert values[lesion & gland].mean() > np.median(values[gland]) + 0.5


@pytest.mark.realdata
def test_map_is_deterministic(map_0000):
    analyzer, result, _, _ = map_0000
    region = np.zeros_like(result.volume.region)
    k = int(np.argmax(result.volume.region.sum((1, 2))))
    region[k] = result.volume.region[k]
    volume = dataclasses.replace(result.volume, region=region)
    first, second = analyzer.maps(volume), analyzer.maps(volume)
    assert len(first.centres) > 50 and (first.centres[:, 0] == k).all()
    assert np.array_equal(first.signed, second.signed) and np.array_equal(first.discrepancy, second.discrepancy)
    assert np.abs(first.discrepancy).max() > 0


@pytest.mark.realdata
def test_gland_mask_off_the_t2_grid_is_refused(map_0000, case_0000):
    analyzer = map_0000[0]
    adc_grid_mask = sitk.Cast(case_0000.adc > -1e9, sitk.sitkUInt8)
    with pytest.raises(StudyError, match="T2 series' grid"):
        analyzer.analyze(case_0000, adc_grid_mask)


@pytest.mark.realdata
def test_written_outputs_describe_the_signed_map(map_0000, tmp_path):
    from LesionAILib.synthesis.outputs import write_abnormality

    analyzer, result, _, _ = map_0000
    write_abnormality(result, tmp_path, analyzer.metadata.sha256, figures=True)
    summary = json.loads((tmp_path / "abnormality.json").read_text())
    assert summary["model"]["sha256"] == analyzer.metadata.sha256
    assert "signed score" in summary["map"] and summary["boxes"] == result.boxes
    assert (tmp_path / "abnormality_candidate_1.png").stat().st_size > 10_000
    written = sitk.ReadImage(str(tmp_path / "abnormality.nii.gz"))
    assert np.array_equal(sitk.GetArrayFromImage(written), sitk.GetArrayFromImage(result.abnormality))


# --------------------------------------------------------------------------- the training command
@pytest.mark.realdata
def test_train_command_leaves_the_named_patients_out(findings_dir, tmp_path, capsys):
    from LesionAILib.synthesis.model_file import load_synthesis_model

    out = tmp_path / "tiny.safetensors"
    args = ["train-synthesis-prostatex", "--findings", str(findings_dir), "--out", str(out), "--steps", "3"]
    assert main([*args, "--batch", "4", "--width", "4"]) == 0
    _, metadata = load_synthesis_model(out)
    assert metadata.training["excluded_patients"] == ["ProstateX-0000", "ProstateX-0001"]
    assert metadata.training["findings"] == 303 and metadata.training["steps"] == 3
    assert metadata.normal_tissue.samples == 303 * 4 and min(metadata.normal_tissue.mad) > 0
    capsys.readouterr()
    assert main([*args, "--exclude", "ProstateX-9999"]) == 2
    error = capsys.readouterr().err.strip()
    assert error.count("\n") == 0 and "ProstateX-9999" in error and "patches_32x32.npz" in error


@pytest.mark.realdata
def test_analyze_abnormality_with_the_bundled_model_on_a_real_study(prostatex_dir, case_0000, tmp_path, capsys):
    """The README command: the gland segmented once (``--gland``) and shared by both maps."""
    out = tmp_path / "result"
    study = str(prostatex_dir / "ProstateX-0000")
    code = main(["analyze", study, "--out", str(out), "--gland", "--abnormality", "--abnormality-model", str(BUNDLED)])
    assert code == 0
    assert "abnormality map: " in capsys.readouterr().out
    written = sitk.ReadImage(str(out / "abnormality.nii.gz"))
    t2 = case_0000.t2w
    assert written.GetSize() == t2.GetSize()  # NIfTI stores geometry in float32: equal to its precision
    np.testing.assert_allclose(written.GetSpacing(), t2.GetSpacing(), atol=1e-5)
    np.testing.assert_allclose(written.GetOrigin(), t2.GetOrigin(), atol=1e-4)
    np.testing.assert_allclose(written.GetDirection(), t2.GetDirection(), atol=1e-6)
    gland = sitk.GetArrayFromImage(sitk.ReadImage(str(out / "gland.nii.gz"))) > 0
    assert (sitk.GetArrayFromImage(written)[~gland] == 0).all()
    summary = json.loads((out / "abnormality.json").read_text())
    assert summary["model"]["name"] == "lesionai-synthesis-prostatex-2d" and "signed" in summary["map"]
    lesion = sitk.GetArrayFromImage(sitk.ReadImage(str(prostatex_dir / "labels" / "ProstateX-0000_lesions.nii.gz")))
    labels = sitk.GetArrayFromImage(sitk.ReadImage(str(out / "abnormality_candidates.nii.gz")))
    assert (labels[lesion >= 2] == 1).any()  # measured: candidate 1 holds 228 of the 427 lesion voxels

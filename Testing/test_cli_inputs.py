"""Every file input the README documents, through the command line: ``--t2w/--adc/--hbv`` for ``analyze``,
``preprocess`` and ``classify`` (ProstateX-0000 written as NIfTI, and phantom MHA files), and a file replacing
one role of a study folder."""

from __future__ import annotations

import json

import numpy as np
import pytest
import SimpleITK as sitk
from conftest import FINDING_0000_LPS

from LesionAILib.cli.main import main
from LesionAILib.inference.results import read_result
from LesionAILib.studies.picai import find_picai_cases

POINT = ",".join(str(v) for v in FINDING_0000_LPS)


@pytest.fixture(scope="module")
def prostatex_files(case_0000, tmp_path_factory) -> dict[str, str]:
    """ProstateX-0000's T2, ADC and high-b as ``.nii.gz`` files (voxels and geometry as read from DICOM)."""
    folder = tmp_path_factory.mktemp("prostatex-0000-nifti")
    files = {}
    for role in ("t2w", "adc", "hbv"):
        files[role] = str(folder / f"ProstateX-0000_{role}.nii.gz")
        sitk.WriteImage(case_0000.image(role), files[role])
    return files


@pytest.fixture(scope="module")
def phantom_files(phantom_cohort) -> dict[str, str]:
    """The first phantom case's ``<patient>_<study>_{t2w,adc,hbv}.mha`` files."""
    patient, study, folder = find_picai_cases(phantom_cohort)[0]
    return {role: str(folder / f"{patient}_{study}_{role}.mha") for role in ("t2w", "adc", "hbv")}


def _geometry(image: sitk.Image) -> tuple:
    return image.GetSpacing(), image.GetOrigin(), image.GetDirection()


def _file_arguments(files: dict[str, str]) -> list[str]:
    return [part for role in ("t2w", "adc", "hbv") for part in (f"--{role}", files[role])]


def _analyze(arguments: list[str], out, model) -> int:
    return main(["analyze", *arguments, "--out", str(out), "--model", str(model), "--device", "cpu", "--no-figures"])


def _assert_maps_on_the_t2_file_and_candidates_in_them(folder, t2_file: str) -> list:
    stored = read_result(folder)
    t2 = sitk.ReadImage(t2_file)
    for image in (stored.heatmap, stored.detection_map, stored.candidate_map):
        assert image.GetSize() == t2.GetSize()
        for mine, theirs in zip(_geometry(image), _geometry(t2), strict=True):
            np.testing.assert_allclose(mine, theirs, atol=1e-9)
    labels = sitk.GetArrayFromImage(stored.candidate_map)
    detection = sitk.GetArrayFromImage(stored.detection_map)
    assert len(stored.candidates) >= 1
    for candidate in stored.candidates:
        region = labels == candidate.candidate_id
        assert region.any() and np.allclose(detection[region], candidate.probability, atol=1e-6)
    summary = json.loads((folder / "result.json").read_text())
    assert summary["case"]["roles"]["t2w"]["source"] == t2_file
    assert summary["case"]["roles"]["t2w"]["reason"] == "given as the axial T2 file"
    return stored.candidates


@pytest.mark.realdata
def test_analyze_with_explicit_prostatex_nifti_files_writes_maps_in_the_t2_file_geometry(
    prostatex_files, tiny_model_path, tmp_path, capsys
):
    assert _analyze(_file_arguments(prostatex_files), tmp_path, tiny_model_path) == 0, capsys.readouterr().err
    _assert_maps_on_the_t2_file_and_candidates_in_them(tmp_path, prostatex_files["t2w"])
    assert read_result(tmp_path).case_id == "ProstateX-0000_t2w"  # the T2 file's stem names the case


def test_analyze_with_explicit_phantom_files_finds_what_the_case_folder_gives(
    phantom_files, phantom_cohort, tiny_model_path, tmp_path, capsys
):
    assert _analyze(_file_arguments(phantom_files), tmp_path / "files", tiny_model_path) == 0, capsys.readouterr().err
    from_files = _assert_maps_on_the_t2_file_and_candidates_in_them(tmp_path / "files", phantom_files["t2w"])
    folder = find_picai_cases(phantom_cohort)[0][2]
    assert _analyze([str(folder)], tmp_path / "folder", tiny_model_path) == 0
    assert read_result(tmp_path / "folder").candidates == from_files


def test_analyze_with_two_of_three_files_names_the_missing_one_in_one_line(
    phantom_files, tiny_model_path, tmp_path, capsys
):
    arguments = ["--t2w", phantom_files["t2w"], "--adc", phantom_files["adc"]]
    assert _analyze(arguments, tmp_path, tiny_model_path) == 2
    error = capsys.readouterr().err
    assert error.startswith("lesionai: error: missing high-b DWI") and error.count("\n") == 1
    assert not (tmp_path / "result.json").exists()


@pytest.mark.realdata
def test_preprocess_with_explicit_files_writes_the_engines_grid_of_those_files(
    prostatex_dir, prostatex_files, tmp_path, capsys
):
    from LesionAILib.preprocessing.pipeline import PreprocessConfig, preprocess
    from LesionAILib.studies.files import open_files

    grid = ["--shape", "8", "32", "32", "--spacing", "3", "3", "3", "--device", "cpu"]
    assert main(["preprocess", *_file_arguments(prostatex_files), "--out", str(tmp_path / "files"), *grid]) == 0
    config = PreprocessConfig(shape=(8, 32, 32), spacing=(3.0, 3.0, 3.0))
    engine = preprocess(open_files(*prostatex_files.values()), config, device="cpu")
    for role in ("t2w", "adc", "hbv"):
        written = sitk.ReadImage(str(tmp_path / "files" / f"{role}.nii.gz"))
        assert written.GetSize() == (32, 32, 8)
        np.testing.assert_allclose(
            sitk.GetArrayFromImage(written), engine.channel(role).numpy(), atol=1e-6, err_msg=role
        )
    record = json.loads((tmp_path / "files" / "preprocess.json").read_text())
    assert {role: record["case"]["roles"][role]["source"] for role in prostatex_files} == prostatex_files
    t2 = sitk.ReadImage(prostatex_files["t2w"])
    np.testing.assert_allclose(record["t2_grid"]["origin"], t2.GetOrigin(), atol=1e-9)
    # one file given with a study replaces that role only
    study = str(prostatex_dir / "ProstateX-0000")
    replaced = ["preprocess", study, "--hbv", prostatex_files["hbv"], "--out", str(tmp_path / "mixed"), *grid]
    assert main(replaced) == 0, capsys.readouterr().err
    roles = json.loads((tmp_path / "mixed" / "preprocess.json").read_text())["case"]["roles"]
    assert roles["hbv"]["source"] == prostatex_files["hbv"] and roles["t2w"]["series_number"] == 4


@pytest.mark.realdata
def test_classify_with_explicit_files_gives_the_probability_of_the_dicom_study(
    prostatex_dir, prostatex_files, tmp_path, capsys
):
    out = ["--out", str(tmp_path), "--json"]
    assert main(["classify", *_file_arguments(prostatex_files), "--point", POINT, *out]) == 0
    from_files = json.loads(capsys.readouterr().out)
    assert main(["classify", str(prostatex_dir / "ProstateX-0000"), "--point", POINT, *out]) == 0
    from_dicom = json.loads(capsys.readouterr().out)
    assert 0.0 < from_files["probability"] < 1.0
    assert from_files["probability"] == pytest.approx(from_dicom["probability"], abs=1e-4)
    assert from_files["windows"] == from_dicom["windows"]
    assert from_files["case_id"] == "ProstateX-0000_t2w" and (tmp_path / "patches.png").stat().st_size > 5000

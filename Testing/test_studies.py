"""Study I/O on the real ProstateX DICOM studies and on broken variants of them."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk
from conftest import FINDING_0000_ADC_IJK, FINDING_0000_LPS, FINDING_0000_T2_IJK

from LesionAILib.errors import StudyError
from LesionAILib.geometry import Grid
from LesionAILib.studies.dicom_series import scan_folder
from LesionAILib.studies.dicom_study import inspect_study, open_dicom_study
from LesionAILib.studies.files import open_files
from LesionAILib.studies.opening import open_case
from LesionAILib.studies.picai import open_picai_case
from LesionAILib.studies.roles import MissingRoleError, SeriesDescriptor, assign_roles, b_values_in_text, series_kind

T2_0000 = "4.000000-t2tsetra-00702"
ADC_0000 = "7.000000-ep2ddifftraDYNDISTADC-48780"
HBV_0000 = "8.000000-ep2ddifftraDYNDISTCALCBVAL-83202"


def _link_series(prostatex_dir: Path, target: Path, folders: list[str], nested: str = "a/b") -> Path:
    """A study folder of symlinks to some ProstateX-0000 series, nested differently and renamed."""
    for index, folder in enumerate(folders):
        destination = target / nested / f"s{index}"
        destination.mkdir(parents=True)
        for number, file in enumerate(sorted((prostatex_dir / "ProstateX-0000/07-07-2011" / folder).iterdir())):
            (destination / f"IMG{number:05d}").symlink_to(file)
    return target


def _one_line(error: Exception) -> str:
    text = str(error)
    assert "\n" not in text
    return text


# --------------------------------------------------------------------------- roles
def test_prostatex_0000_roles_are_t2_series_4_adc_7_calc_bval_8(prostatex_dir):
    report = inspect_study(prostatex_dir / "ProstateX-0000")
    assert {role: s.series_number for role, s in report.roles.items()} == {"t2w": 4, "adc": 7, "hbv": 8}
    assert report.roles["hbv"].b_value == 1000.0
    assert report.patient_id == "ProstateX-0000"
    notes = {s.number: s.note for s in report.series}
    assert "sagittal" in notes[3] and "coronal" in notes[5]
    assert "acquired DWI" in notes[6] and "50, 400, 800" in notes[6]
    assert all(s.note for s in report.series), "every series must say what it was taken for"


def test_prostatex_0001_chooses_t2_series_10_by_the_documented_rule_and_reports_series_6(prostatex_dir):
    report = inspect_study(prostatex_dir / "ProstateX-0001")
    assert {role: s.series_number for role, s in report.roles.items()} == {"t2w": 10, "adc": 8, "hbv": 9}
    reason = report.roles["t2w"].reason
    assert "series 6" in reason and "closest to the DWI" in reason
    notes = {s.number: s for s in report.series}
    assert notes[6].role is None and "not chosen" in notes[6].note
    assert notes[1].kind == notes[2].kind == notes[3].kind == "localizer"


def test_explicit_override_wins_and_is_reported(prostatex_dir):
    report = inspect_study(prostatex_dir / "ProstateX-0001", {"t2w": 6})
    assert report.roles["t2w"].series_number == 6
    assert "override" in report.roles["t2w"].reason
    uid = report.roles["adc"].series_uid
    by_uid = inspect_study(prostatex_dir / "ProstateX-0001", {"adc": uid})
    assert by_uid.roles["adc"].series_uid == uid


def test_override_naming_a_missing_series_lists_what_exists(prostatex_dir):
    with pytest.raises(StudyError, match=r"no series '42' for t2w .*series 10 \(t2_tse_tra\)"):
        inspect_study(prostatex_dir / "ProstateX-0001", {"t2w": 42})


def test_2d_localizer_offered_as_t2_is_refused(prostatex_dir):
    with pytest.raises(StudyError) as caught:
        inspect_study(prostatex_dir / "ProstateX-0001", {"t2w": 1})
    assert "series 1 (t2_localizer)" in _one_line(caught.value) and "localizer" in str(caught.value)


def test_2d_image_file_offered_as_t2_is_refused(tmp_path, case_0000):
    single = tmp_path / "slice.mha"
    sitk.WriteImage(case_0000.t2w[:, :, 9], str(single))
    with pytest.raises(StudyError) as caught:
        open_files(single, tmp_path / "adc.mha", tmp_path / "hbv.mha")
    message = _one_line(caught.value)
    assert str(single) in message and "2D" in message and "3D volume" in message


# --------------------------------------------------------------------------- the role rules on descriptors
def _axial(key: str, description: str, number: int | None = None, **facts) -> SeriesDescriptor:
    return SeriesDescriptor(key=key, number=number, description=description, plane="axial", **facts)


def test_dicom_series_describe_themselves_with_the_facts_of_their_headers(prostatex_dir):
    series = {s.number: s.descriptor() for s in scan_folder(prostatex_dir / "ProstateX-0001")[0]}
    t2 = series[10]
    assert (t2.description, t2.plane, t2.slices, t2.in_plane_mm) == ("t2_tse_tra", "axial", 19, (0.5, 0.5))
    assert t2.sequence_name == "*tse2d1_25" and t2.key == t2.uid and t2.acquisition_seconds is not None
    assert series[7].b_values == (50.0, 400.0, 800.0) and "ADC" in series[8].image_type
    assert series[1].plane == "mixed" and series[4].plane == "sagittal"


def test_picai_file_names_fill_every_role_without_any_dicom_fact():
    named = [_axial(f"n{i}", f"10795_1000811_{role}") for i, role in enumerate(("hbv", "adc", "t2w"))]
    decision = assign_roles(named)
    assert {role: choice.series.key for role, choice in decision.chosen.items()} == {
        "t2w": "n2",
        "adc": "n1",
        "hbv": "n0",
    }
    assert decision.chosen["hbv"].b_value is None and "b-value not recorded" in decision.chosen["hbv"].reason


def test_a_b_value_in_a_name_marks_a_single_high_b_image_but_not_an_acquired_multi_b_series():
    assert b_values_in_text("DWI b1400") == (1400.0,) and b_values_in_text("ep2d_diff_tra_DYNDIST") == ()
    assert series_kind(_axial("a", "diff b1400", b_values=(1400.0,))) == "dwi_calc"
    assert series_kind(_axial("b", "ep2d_diff_b800", b_values=(50.0, 400.0, 800.0))) == "dwi"
    assert series_kind(_axial("c", "high-b")) == "dwi_calc" and series_kind(_axial("d", "t2_tse_tra")) == "t2"


def test_t2_tie_without_acquisition_times_goes_to_the_highest_series_number_and_says_the_times_are_unknown():
    offered = [
        _axial("t10", "t2_tse_tra", 10, in_plane_mm=(0.5, 0.5)),
        _axial("t6", "t2_tse_tra", 6, in_plane_mm=(0.5, 0.5)),
        _axial("a", "ADC", 8),
        _axial("h", "CALC_BVAL diff", 9),
    ]
    decision = assign_roles(offered)
    assert decision.chosen["t2w"].series.key == "t10"
    reason = decision.chosen["t2w"].reason
    assert "acquisition time not known" in reason and "series 6 (t2_tse_tra)" in reason and "inf" not in reason
    assert decision.notes["t6"].startswith("axial T2 candidate not chosen: series 10")
    assert assign_roles(offered, overrides={"t2w": "t6"}).chosen["t2w"].series.number == 6


def test_a_role_nothing_fills_names_the_role_and_what_was_seen():
    with pytest.raises(MissingRoleError) as caught:
        assign_roles([_axial("t", "t2_tse_tra", 4), SeriesDescriptor("s", 3, "t2_tse_sag", plane="sagittal")])
    assert caught.value.role == "adc"
    assert caught.value.detail == "series seen: 3 t2_tse_sag [t2, sagittal]; 4 t2_tse_tra [t2, axial]"


# --------------------------------------------------------------------------- reading and geometry
def test_finding_maps_to_the_documented_t2_and_adc_indices(case_0000):
    t2_index = case_0000.t2w.TransformPhysicalPointToContinuousIndex(FINDING_0000_LPS)
    adc_index = case_0000.adc.TransformPhysicalPointToContinuousIndex(FINDING_0000_LPS)
    np.testing.assert_allclose(t2_index, FINDING_0000_T2_IJK, atol=0.06)
    np.testing.assert_allclose(adc_index, FINDING_0000_ADC_IJK, atol=0.06)
    # our Grid says the same as SimpleITK (index in Z, Y, X order)
    np.testing.assert_allclose(case_0000.grid("t2w").lps_to_index(FINDING_0000_LPS)[::-1], t2_index, atol=1e-6)


def test_case_has_native_grids_and_metadata(case_0000):
    assert case_0000.t2w.GetSize() == (384, 384, 19)
    assert case_0000.adc.GetSize() == (84, 128, 19)
    np.testing.assert_allclose(case_0000.t2w.GetSpacing(), (0.5, 0.5, 3.0), atol=1e-6)
    np.testing.assert_allclose(case_0000.adc.GetSpacing(), (2.0, 2.0, 3.0), atol=1e-6)
    direction = np.asarray(case_0000.t2w.GetDirection()).reshape(3, 3)
    assert abs(direction[1, 2]) > 0.3, "ProstateX-0000's T2 is oblique (≈18° about the left-right axis)"
    meta = case_0000.metadata()
    assert meta["patient_id"] == "ProstateX-0000"
    assert meta["roles"]["adc"]["series_number"] == 7 and meta["roles"]["hbv"]["b_value"] == 1000.0
    assert meta["roles"]["t2w"]["grid"]["shape"] == [19, 384, 384]
    adc = sitk.GetArrayViewFromImage(case_0000.adc)
    assert 300 < np.percentile(adc[adc > 0], 50) < 3000, "ADC must be in µm²/s"


def test_dicom_reading_matches_simpleitk_series_reader(case_0000, prostatex_dir):
    folder = prostatex_dir / "ProstateX-0000/07-07-2011" / ADC_0000
    reader = sitk.ImageSeriesReader()
    reader.SetFileNames(reader.GetGDCMSeriesFileNames(str(folder)))
    reference = reader.Execute()
    np.testing.assert_array_equal(sitk.GetArrayFromImage(reference), sitk.GetArrayFromImage(case_0000.adc))
    assert Grid.from_image(reference).same_as(Grid.from_image(case_0000.adc), 1e-6)


def test_any_nesting_and_any_file_names(tmp_path, prostatex_dir):
    study = _link_series(prostatex_dir, tmp_path / "study", [HBV_0000, T2_0000, ADC_0000], nested="x/y/z")
    case = open_dicom_study(study)
    assert {r: s.series_number for r, s in case.sources.items()} == {"t2w": 4, "adc": 7, "hbv": 8}


# --------------------------------------------------------------------------- bad input
def test_missing_slice_is_refused_naming_the_high_b_series(prostatex_dir):
    study = prostatex_dir / "bad-input/ProstateX-0000-missing-slice"
    for action in (inspect_study, open_dicom_study):
        with pytest.raises(StudyError) as caught:
            action(study)
        message = _one_line(caught.value)
        assert "series 8" in message and "missing 1 slice" in message and "6.00 mm" in message
        assert HBV_0000 in message


def test_non_dicom_file_among_good_ones_is_skipped_and_reported(tmp_path, prostatex_dir):
    study = _link_series(prostatex_dir, tmp_path / "study", [T2_0000, ADC_0000, HBV_0000])
    (study / "a/b/s0/notes.txt").write_text("reading notes, not an image\n")
    case = open_dicom_study(study)
    skipped = {Path(s.path).name: s.reason for s in case.report.skipped_files}
    assert skipped == {"notes.txt": "not a DICOM file"}
    assert case.t2w.GetSize() == (384, 384, 19)


def test_truncated_file_among_good_ones_is_named(tmp_path, prostatex_dir):
    study = _link_series(prostatex_dir, tmp_path / "study", [T2_0000, ADC_0000, HBV_0000])
    victim = study / "a/b/s1/IMG00004"
    data = victim.read_bytes()
    victim.unlink()
    victim.write_bytes(data[: len(data) // 2])
    for action in (inspect_study, open_dicom_study):
        with pytest.raises(StudyError) as caught:
            action(study)
        message = _one_line(caught.value)
        assert str(victim) in message and "truncated" in message


def test_garbage_bytes_named_like_a_slice_leave_a_gap_that_is_refused(tmp_path, prostatex_dir):
    study = _link_series(prostatex_dir, tmp_path / "study", [T2_0000, ADC_0000, HBV_0000])
    victim = study / "a/b/s0/IMG00007"
    victim.unlink()
    victim.write_bytes(np.random.default_rng(0).integers(0, 255, 4096, dtype=np.uint8).tobytes())
    with pytest.raises(StudyError, match=r"series 4 \(t2_tse_tra\) is missing 1 slice"):
        open_dicom_study(study)


def test_empty_folder(tmp_path):
    with pytest.raises(StudyError) as caught:
        open_dicom_study(tmp_path)
    assert (
        _one_line(caught.value) == f"{tmp_path}: no DICOM MR series found (the folder is empty) "
        "(point to the folder that holds the study's DICOM files)"
    )


def test_study_without_adc_names_what_is_missing_and_the_fix(tmp_path, prostatex_dir):
    study = _link_series(prostatex_dir, tmp_path / "study", [T2_0000, HBV_0000])
    with pytest.raises(StudyError) as caught:
        open_dicom_study(study)
    message = _one_line(caught.value)
    assert message.startswith(f"{study}: no ADC series found")
    assert "--adc FILE" in message and "t2_tse_tra" in message


def test_non_image_file_given_as_a_role(tmp_path):
    text = tmp_path / "report.pdf"
    text.write_text("not an image")
    with pytest.raises(StudyError) as caught:
        open_files(text, text, text)
    assert str(text) in _one_line(caught.value) and "not a supported image file" in str(caught.value)


def test_image_file_that_is_damaged(tmp_path):
    broken = tmp_path / "t2.nii.gz"
    broken.write_bytes(b"\x1f\x8b garbage")
    with pytest.raises(StudyError) as caught:
        open_files(broken, broken, broken)
    assert str(broken) in _one_line(caught.value) and "cannot read" in str(caught.value)


def test_mhd_without_its_raw_data_file(tmp_path, case_0000):
    header = tmp_path / "adc.mhd"
    sitk.WriteImage(case_0000.adc, str(header))
    header.with_suffix(".raw").unlink()
    with pytest.raises(StudyError) as caught:
        open_files(header, header, header)
    assert str(header) in _one_line(caught.value) and "data file missing" in str(caught.value)


def test_sequences_from_different_places_are_refused(tmp_path, case_0000):
    for role in ("t2w", "hbv"):
        sitk.WriteImage(case_0000.image(role), str(tmp_path / f"{role}.nrrd"))
    moved = sitk.Image(case_0000.adc)
    moved.SetOrigin(tuple(np.asarray(moved.GetOrigin()) + (0.0, 0.0, 400.0)))
    sitk.WriteImage(moved, str(tmp_path / "adc.nrrd"))
    with pytest.raises(StudyError, match="does not cover the T2 volume's centre"):
        open_files(tmp_path / "t2w.nrrd", tmp_path / "adc.nrrd", tmp_path / "hbv.nrrd")


# --------------------------------------------------------------------------- other layouts
@pytest.mark.parametrize("suffix", [".nii.gz", ".nii", ".mha", ".nrrd", ".mhd"])
def test_single_files_per_role_keep_geometry_and_values(tmp_path, case_0000, suffix):
    paths = {}
    for role in ("t2w", "adc", "hbv"):
        paths[role] = tmp_path / f"{role}{suffix}"
        sitk.WriteImage(case_0000.image(role), str(paths[role]))
    case = open_files(**paths)
    for role in ("t2w", "adc", "hbv"):
        assert Grid.from_image(case.image(role)).same_as(case_0000.grid(role), 1e-4)
        np.testing.assert_array_equal(
            sitk.GetArrayViewFromImage(case.image(role)), sitk.GetArrayViewFromImage(case_0000.image(role))
        )
    assert case.patient_id == "t2w"


def test_picai_layout(tmp_path, case_0000, prostatex_dir):
    folder = tmp_path / "images" / "11373"
    folder.mkdir(parents=True)
    for role in ("t2w", "adc", "hbv"):
        sitk.WriteImage(case_0000.image(role), str(folder / f"11373_1001396_{role}.mha"))
    labels = tmp_path / "labels"
    labels.mkdir()
    shutil.copy(prostatex_dir / "labels/ProstateX-0000_lesions.nii.gz", labels / "11373_1001396.nii.gz")
    case = open_picai_case(tmp_path / "images", labels=labels)
    assert (case.patient_id, case.study_id, case.case_id) == ("11373", "1001396", "11373_1001396")
    assert int(sitk.GetArrayViewFromImage(case.lesion_mask).astype(bool).sum()) == 427
    assert open_case(folder).case_id == "11373_1001396"


def test_adc_in_mm2_per_s_is_detected_and_rescaled(tmp_path, case_0000):
    for role in ("t2w", "hbv"):
        sitk.WriteImage(case_0000.image(role), str(tmp_path / f"{role}.mha"))
    sitk.WriteImage(sitk.Cast(case_0000.adc, sitk.sitkFloat32) * 1e-6, str(tmp_path / "adc.mha"))
    case = open_files(tmp_path / "t2w.mha", tmp_path / "adc.mha", tmp_path / "hbv.mha")
    np.testing.assert_allclose(
        sitk.GetArrayViewFromImage(case.adc), sitk.GetArrayViewFromImage(case_0000.adc), rtol=1e-5, atol=1e-3
    )
    assert "rescaled" in case.sources["adc"].reason

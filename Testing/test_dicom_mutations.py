"""Damaged copies of the real ProstateX-0000 study: each fault is named with its file, never read with wrong geometry.

Every test copies the T2 (series 4), ADC (7) and high-b (8) series, damages one file the way a
broken export or a bad copy would, and opens the study as a user would. A refusal must be one
line naming the damaged file and the actual fault (not a consequence such as "missing slice" or
"no ADC series found"); a suspect but usable study opens with a warning naming the file.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import pydicom
import pytest
import SimpleITK as sitk

from LesionAILib.errors import StudyError, StudyWarning
from LesionAILib.studies.dicom_study import inspect_study, open_dicom_study

SERIES = {
    "t2w": "4.000000-t2tsetra-00702",
    "adc": "7.000000-ep2ddifftraDYNDISTADC-48780",
    "hbv": "8.000000-ep2ddifftraDYNDISTCALCBVAL-83202",
}


@pytest.fixture
def study(tmp_path, prostatex_dir) -> Path:
    """A writable copy of ProstateX-0000's three series: ``<tmp>/study/<role>/<original file names>``."""
    root = tmp_path / "study"
    for role, folder in SERIES.items():
        shutil.copytree(prostatex_dir / "ProstateX-0000/07-07-2011" / folder, root / role)
    return root


def _slice(study: Path, role: str, index: int) -> Path:
    """The ``index``-th file of a series in slice order (by ImagePositionPatient along the normal)."""
    files = sorted((study / role).iterdir())
    offsets = []
    for path in files:
        dataset = pydicom.dcmread(path, stop_before_pixels=True)
        row, column = np.array(dataset.ImageOrientationPatient[:3]), np.array(dataset.ImageOrientationPatient[3:])
        offsets.append(float(np.dot(np.cross(row, column), np.array(dataset.ImagePositionPatient, float))))
    return files[int(np.argsort(offsets)[index])]


def _edit(path: Path, change) -> None:
    dataset = pydicom.dcmread(path)
    change(dataset)
    dataset.save_as(path)


def _refusal(study: Path) -> str:
    """The one-line message both ``inspect_study`` and ``open_dicom_study`` refuse the study with."""
    messages = []
    for action in (inspect_study, open_dicom_study):
        with pytest.raises(StudyError) as caught:
            action(study)
        messages.append(str(caught.value))
    assert messages[0] == messages[1] and "\n" not in messages[0]
    return messages[0]


def test_intact_copy_opens_with_the_documented_roles_and_no_warning(study):
    with warnings.catch_warnings():
        warnings.simplefilter("error", StudyWarning)
        case = open_dicom_study(study)
    assert case.t2w.GetSize() == (384, 384, 19) and case.adc.GetSize() == (84, 128, 19)


def test_one_slice_with_another_pixel_spacing_is_refused_naming_the_slice(study):
    victim = _slice(study, "t2w", 9)
    _edit(victim, lambda d: setattr(d, "PixelSpacing", [0.7, 0.7]))
    message = _refusal(study)
    assert str(victim) in message and "PixelSpacing 0.7 × 0.7 mm" in message and "18 other slices" in message
    assert "0.5 × 0.5 mm" in message


def test_one_slice_with_rescale_slope_zero_opens_with_a_warning_naming_it(study):
    victim = _slice(study, "adc", 4)
    _edit(victim, lambda d: setattr(d, "RescaleSlope", 0))
    with pytest.warns(StudyWarning) as caught:
        case = open_dicom_study(study)
    messages = [str(w.message) for w in caught if issubclass(w.category, StudyWarning)]
    assert len(messages) == 1 and "RescaleSlope 0" in messages[0] and str(victim) in messages[0]
    assert "series 7" in messages[0] and "\n" not in messages[0]
    # the slice is read with its stored values (pydicom, unscaled, as the reference), and the user was told
    stored = pydicom.dcmread(victim).pixel_array.astype(np.float32)
    assert np.array_equal(sitk.GetArrayFromImage(case.adc)[4], stored)


@pytest.mark.parametrize(
    ("damage", "reason"),
    [
        (lambda path: path.write_bytes(b""), "empty file (0 bytes)"),
        (lambda path: path.write_bytes(path.read_bytes()[:200]), "unreadable DICOM header (the file ends inside it"),
        (lambda path: _edit(path, lambda d: delattr(d, "Rows")), "DICOM file without Rows"),
        (lambda path: _edit(path, lambda d: delattr(d, "SeriesInstanceUID")), "DICOM file without SeriesInstanceUID"),
    ],
    ids=["empty", "truncated-header", "no-rows", "no-series-uid"],
)
def test_unreadable_slice_is_named_with_its_fault_not_as_a_missing_slice(study, damage, reason):
    victim = _slice(study, "hbv", 7)
    damage(victim)
    message = _refusal(study)
    assert f"{victim} in its folder cannot be read: {reason}" in message
    assert "series 8" in message


def test_truncated_pixel_data_is_named(study):
    victim = _slice(study, "t2w", 3)
    data = victim.read_bytes()
    victim.write_bytes(data[: len(data) - 1000])
    message = _refusal(study)
    assert str(victim) in message and "truncated" in message


@pytest.mark.parametrize("role", ["t2w", "adc"])
def test_one_slice_with_another_orientation_is_named_not_reported_as_no_series(study, role):
    victim = _slice(study, role, 10)
    _edit(victim, lambda d: setattr(d, "ImageOrientationPatient", [1, 0, 0, 0, 0, -1]))  # coronal
    message = _refusal(study)
    assert str(victim) in message and "oriented differently" in message
    assert "no ADC series" not in message and "no axial T2" not in message


def test_missing_slice_without_an_unreadable_file_is_a_gap_with_its_size(study):
    victim = _slice(study, "t2w", 6)
    victim.unlink()
    message = _refusal(study)
    assert "series 4" in message and "missing 1 slice(s)" in message and "gap 6.00 mm" in message


def test_duplicated_slice_is_refused(study):
    victim = _slice(study, "adc", 2)

    def new_instance(dataset):
        dataset.SOPInstanceUID = pydicom.uid.generate_uid()

    copy = victim.with_name("copy-of-" + victim.name)
    shutil.copy(victim, copy)
    _edit(copy, new_instance)
    message = _refusal(study)
    assert "series 7" in message and "two slices at the same position" in message


def test_deleted_adc_series_is_named_as_missing(study):
    shutil.rmtree(study / "adc")
    message = _refusal(study)
    assert "ADC" in message and "no" in message.lower()


def test_command_line_shows_the_warning_as_one_line_and_goes_on(study, tmp_path):
    victim = _slice(study, "hbv", 2)
    _edit(victim, lambda d: setattr(d, "RescaleSlope", 0))
    script = Path(sys.executable).with_name("lesionai")
    completed = subprocess.run(
        [str(script), "preprocess", str(study), "--out", str(tmp_path / "pre")], capture_output=True, text=True
    )
    assert completed.returncode == 0, completed.stderr
    lines = [line for line in completed.stderr.splitlines() if line.startswith("lesionai: warning:")]
    assert len(lines) == 1 and str(victim) in lines[0] and "RescaleSlope 0" in lines[0]
    assert "Traceback" not in completed.stderr and (tmp_path / "pre" / "hbv.nii.gz").exists()

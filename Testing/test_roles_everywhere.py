"""One set of role rules: the Slicer panel picks the same T2, ADC and high-b series as ``lesionai inspect``.

Volumes are put into a real MRML scene (slicer-core) the way Slicer's DICOM module loads them —
named ``"<SeriesNumber>: <SeriesDescription>"``, carrying ``DICOM.instanceUIDs``, their files known
to the DICOM database — or the way Slicer loads image files (no DICOM attributes at all).
"""

from __future__ import annotations

import sys
from pathlib import Path

import pydicom
import pytest
import SimpleITK as sitk
from conftest import ROOT, require_module

require_module("trame_slicer", "needs the slicer-core and trame-slicer wheels (pip install -e '.[mrml]')")



sys.path.insert(0, str(ROOT / "LesionAI"))

import slicer  # noqa: E402
from LesionAILogic import volumes  # noqa: E402
from LesionAILogic.logic import LesionAILogic  # noqa: E402

from LesionAILib.errors import StudyError  # noqa: E402
from LesionAILib.studies.dicom_series import DicomSeries, scan_folder  # noqa: E402
from LesionAILib.studies.dicom_study import inspect_study  # noqa: E402
from LesionAILib.studies.dicom_volume import read_volume  # noqa: E402

pytestmark = pytest.mark.mrml

# ProstateX series numbers per role, from the data README and `lesionai inspect`
EXPECTED_SERIES = {
    "ProstateX-0000": {"t2w": 4, "adc": 7, "hbv": 8},
    "ProstateX-0001": {"t2w": 10, "adc": 8, "hbv": 9},
}
NOT_AXIAL = {"ProstateX-0000": (5, "coronal"), "ProstateX-0001": (1, "mixed")}  # (series, plane) per the README
HEADER_ONLY_FACTS = ("image type", "sequence name", "scanning sequence", "echo train length", "acquisition time")


class DicomDatabase:
    """Answers ``fileForInstance`` as Slicer's ``ctkDICOMDatabase`` does ("" for an unknown instance)."""

    def __init__(self):
        self.files: dict[str, str] = {}

    def fileForInstance(self, sop_instance_uid: str) -> str:  # noqa: N802 (the CTK name)
        return self.files.get(sop_instance_uid, "")


@pytest.fixture(scope="module")
def app():
    from trame_slicer.core import SlicerApp

    return SlicerApp()


@pytest.fixture(scope="module")
def logic(app) -> LesionAILogic:
    return LesionAILogic(app.scene, app.segmentations_logic)


def _image_as_loaded(series: DicomSeries) -> sitk.Image:
    """The voxels of a series: the whole volume, the highest b of a multi-b series, or (localizers) one slice."""
    for b_value in (None, max(series.b_values, default=None)):
        try:
            return read_volume(series, b_value)
        except StudyError:
            continue
    return sitk.ReadImage(str(series.files[0].path))


def _load_like_the_dicom_module(app, study: Path, database: DicomDatabase) -> dict[int, object]:
    """Every series of ``study`` as a volume node, as DICOMScalarVolumePlugin loads it: ``{number: node}``."""
    nodes = {}
    for series in scan_folder(study)[0]:
        node = app.scene.AddNewNodeByClass("vtkMRMLScalarVolumeNode", f"{series.number}: {series.description}")
        volumes.set_node_from_image(node, _image_as_loaded(series))
        uids = []
        for file in series.files:
            header = pydicom.dcmread(str(file.path), stop_before_pixels=True, specific_tags=["SOPInstanceUID"])
            uids.append(str(header.SOPInstanceUID))
            database.files[uids[-1]] = str(file.path)
        node.SetAttribute("DICOM.instanceUIDs", " ".join(uids))
        nodes[series.number] = node
    return nodes


@pytest.fixture
def loaded_from_dicom(app, prostatex_dir, request):
    """``(study, {number: node}, database)``; the nodes leave the scene after the test."""
    database = DicomDatabase()
    study = prostatex_dir / request.param
    nodes = _load_like_the_dicom_module(app, study, database)
    yield study, nodes, database
    for node in nodes.values():
        app.scene.RemoveNode(node)


def _series_numbers(assignment) -> dict[str, int]:
    return {role: int(node.GetName().split(":")[0]) for role, node in assignment.items()}


@pytest.mark.realdata
@pytest.mark.parametrize("loaded_from_dicom", sorted(EXPECTED_SERIES), indirect=True)
def test_panel_roles_of_dicom_module_volumes_are_lesionai_inspect_roles(loaded_from_dicom, logic, monkeypatch):
    study, nodes, database = loaded_from_dicom
    monkeypatch.setattr(slicer, "dicomDatabase", database, raising=False)
    assignment = logic.assignRoles(list(nodes.values()))
    inspected = {role: source.series_number for role, source in inspect_study(study).roles.items()}
    assert _series_numbers(assignment) == EXPECTED_SERIES[study.name] == inspected
    for role, node in assignment.items():
        assert assignment.missing[role] == ()
        assert "facts from DICOM headers of 19 files" in assignment.reasons[role]
        assert node.GetAttribute("LesionAI.Role") == role
        assert node.GetAttribute("LesionAI.RoleReason") == assignment.reasons[role]
    if study.name == "ProstateX-0001":
        # the rule that separates the two axial T2 series needs the acquisition times in the headers
        assert "acquired closest to the DWI: 0.7 min" in assignment.reasons["t2w"]
        assert "series 6 (t2_tse_tra) acquired 8.2 min from the DWI" in assignment.reasons["t2w"]
    number, plane = NOT_AXIAL[study.name]
    assert assignment.facts[nodes[number].GetID()].descriptor.plane == plane


@pytest.mark.realdata
@pytest.mark.parametrize("loaded_from_dicom", ["ProstateX-0001"], indirect=True)
def test_without_the_dicom_database_the_rules_read_names_and_geometry_and_say_what_was_missing(
    loaded_from_dicom, logic, monkeypatch
):
    _, nodes, _ = loaded_from_dicom
    monkeypatch.delattr(slicer, "dicomDatabase", raising=False)
    assignment = logic.assignRoles(list(nodes.values()))
    assert _series_numbers(assignment) == {"t2w": 10, "adc": 8, "hbv": 9}
    for role in assignment:
        assert assignment.missing[role] == (*HEADER_ONLY_FACTS, "b-values")
        assert "name and geometry: no DICOM database to find its files" in assignment.reasons[role]
    assert "acquisition time not known" in assignment.reasons["t2w"]
    assert "not known for this volume: image type" in assignment.reasons["t2w"]
    facts = {number: assignment.facts[node.GetID()].descriptor for number, node in nodes.items()}
    assert (facts[4].plane, facts[10].plane, facts[10].slices) == ("sagittal", "axial", 19)
    assert facts[10].in_plane_mm == pytest.approx((0.5, 0.5))


@pytest.mark.realdata
def test_volumes_loaded_from_files_get_roles_by_the_same_rules_from_what_the_nodes_carry(
    app, logic, prostatex_dir, tmp_path
):
    series = {s.number: s for s in scan_folder(prostatex_dir / "ProstateX-0001")[0]}
    files = {  # file stem (Slicer names the volume after it) -> series whose voxels and geometry it holds
        "t2_tse_sag": 4,  # says T2, but its geometry is sagittal
        "t2_tse_tra": 10,
        "ep2d_diff_tra_DYNDIST_MIX_ADC": 8,
        "10795_1000811_hbv": 9,  # named as PI-CAI names the high-b image
        "tfl_3d PD ref_tra": 11,
    }
    nodes = {}
    for stem, number in files.items():
        path = tmp_path / f"{stem}.nrrd"
        sitk.WriteImage(read_volume(series[number]), str(path))
        (node,) = app.io_manager.load_volumes([str(path)])  # named after the file
        nodes[stem] = node
    try:
        assert all(node.GetAttribute("DICOM.instanceUIDs") is None for node in nodes.values())
        assignment = logic.assignRoles(list(nodes.values()))
        expected = {"t2w": "t2_tse_tra", "adc": "ep2d_diff_tra_DYNDIST_MIX_ADC", "hbv": "10795_1000811_hbv"}
        assert dict(assignment) == {role: nodes[stem] for role, stem in expected.items()}
        for role in assignment:
            assert assignment.missing[role] == ("series number", *HEADER_ONLY_FACTS, "b-values")
            assert "facts from name and geometry: not loaded from DICOM" in assignment.reasons[role]
        assert "b-value not recorded" in assignment.reasons["hbv"]
        sagittal = assignment.facts[nodes["t2_tse_sag"].GetID()].descriptor
        assert sagittal.description.startswith("t2_tse_sag") and (sagittal.plane, sagittal.number) == ("sagittal", None)
        with pytest.raises(StudyError, match=r"series \? \(t2_tse_sag[^)]*\) is sagittal"):
            logic.assignRoles(list(nodes.values()), overrides={"t2w": nodes["t2_tse_sag"]})
    finally:
        for node in nodes.values():
            app.scene.RemoveNode(node)

"""Results in DICOM on the real ProstateX-0000 study: SEG, Parametric Map and TID 1500 SR, validated, sent, loaded.

The result folder is built with known content so every check is exact: candidate 1 is the expert
csPCa delineation (427 voxels on T2 slices 8 and 9, where the ProstateX finding lies at k = 8.5),
candidate 2 a 3 × 3 × 2 block, candidate 3 a candidate without a voxel on the T2 grid; the heatmap
is seeded noise; the gland is the TAPS mask of the data README (53,479 voxels). Expected references
are read from the T2 files with pydicom here, not from the code under test. ``lesionai analyze
--dicom-out`` runs once end to end with the bundled (demo) model.
"""

from __future__ import annotations

import dataclasses
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import highdicom as hd
import numpy as np
import pydicom
import pytest
import SimpleITK as sitk
from conftest import FINDING_0000_T2_IJK, ROOT, TINY_MODEL, require_module, skip_or_fail

from LesionAILib.cli.main import main
from LesionAILib.dicom_out.export import export_result, write_dicom_results
from LesionAILib.dicom_out.sources import source_series_of_study
from LesionAILib.errors import DicomOutputError
from LesionAILib.geometry import Grid, lps_to_ras
from LesionAILib.inference.candidates import Candidate
from LesionAILib.inference.results import read_result

pytestmark = pytest.mark.realdata

T2_FOLDER = "ProstateX-0000/07-07-2011/4.000000-t2tsetra-00702"
BLOCK = (slice(3, 5), slice(100, 103), slice(100, 103))  # candidate 2: 18 voxels, away from lesion and gland
NOTICE = "research use only, not for clinical use"
MODEL_SHA256 = "0123456789abcdef" * 4


# --------------------------------------------------------------------------- fixtures
@pytest.fixture(scope="module")
def t2_files(prostatex_dir) -> dict[str, pydicom.Dataset]:
    """The T2 series' headers by SOPInstanceUID, read here directly."""
    return {
        str(d.SOPInstanceUID): d
        for d in (pydicom.dcmread(p, stop_before_pixels=True) for p in sorted((prostatex_dir / T2_FOLDER).iterdir()))
    }


@pytest.fixture(scope="module")
def slice_of(t2_files, case_0000) -> dict[str, int]:
    """The T2 slice index k of every T2 instance, from its ImagePositionPatient through SimpleITK's T2 image."""
    slices = {}
    for uid, dataset in t2_files.items():
        index = case_0000.t2w.TransformPhysicalPointToContinuousIndex([float(v) for v in dataset.ImagePositionPatient])
        assert np.allclose(index, np.round(index), atol=1e-3) and np.allclose(index[:2], 0, atol=1e-3)
        slices[uid] = int(round(index[2]))
    assert sorted(slices.values()) == list(range(19))
    return slices


@pytest.fixture(scope="module")
def expert_mask(prostatex_dir, case_0000) -> np.ndarray:
    mask = sitk.ReadImage(str(prostatex_dir / "labels" / "ProstateX-0000_lesions.nii.gz"))
    assert Grid.from_image(mask).same_as(case_0000.grid("t2w"), 0.1)  # NIfTI: float32 geometry
    return sitk.GetArrayFromImage(mask) > 0


@pytest.fixture(scope="module")
def source_0000(prostatex_dir):
    """The T2 series of ProstateX-0000 as the exporter reads it (headers, in slice order)."""
    return source_series_of_study(prostatex_dir / "ProstateX-0000")


def _candidate(candidate_id: int, mask: np.ndarray, grid: Grid, **scores) -> Candidate:
    centre_index = np.argwhere(mask).mean(axis=0) if mask.any() else np.array([10.0, 200.0, 200.0])
    centre = grid.index_to_lps(centre_index)
    return Candidate(
        candidate_id=candidate_id,
        peak=scores["probability"] + 0.05,
        voxels=int(mask.sum()),
        volume_ml=float(mask.sum() * grid.voxel_volume_ml()),
        center_index=tuple(centre_index),
        center_lps_mm=tuple(centre),
        center_ras_mm=tuple(lps_to_ras(centre)),
        score_model="test-detector",
        **scores,
    )


@pytest.fixture(scope="module")
def result_folder(case_0000, expert_mask, prostatex_dir, tmp_path_factory) -> Path:

    from LesionAILib.inference.analyzer import Result
    from LesionAILib.inference.results import write_result
    from LesionAILib.models.modelfile import DEMO_NOTICE, ModelMetadata
    from LesionAILib.models.networks import ModelConfig
    from LesionAILib.preprocessing.pipeline import PreprocessConfig

    grid = case_0000.grid("t2w")
    block = np.zeros(grid.shape, dtype=bool)
    block[BLOCK] = True
    labels = np.zeros(grid.shape, dtype=np.uint8)
    labels[expert_mask] = 1
    labels[block] = 2
    candidates = [
        _candidate(1, expert_mask, grid, probability=0.87, grade_group=3, zone="PZ"),
        _candidate(2, block, grid, probability=0.21, grade_group=1),
        _candidate(3, np.zeros(grid.shape, dtype=bool), grid, probability=0.05),
    ]
    heatmap = np.random.default_rng(5).random(grid.shape, dtype=np.float32)
    detection = np.choose(labels, [0.0, 0.87, 0.21]).astype(np.float32)
    metadata = ModelMetadata(
        name="test-detector",
        architecture=ModelConfig.from_dict(TINY_MODEL),
        preprocess=PreprocessConfig(shape=(16, 64, 64), spacing=(3.0, 1.5, 1.5)),
        synthetic_training_data=True,
        sha256=MODEL_SHA256,
    )
    result = Result(
        case_id=case_0000.case_id,
        model_name=metadata.display_name,
        model_notice=DEMO_NOTICE,
        heatmap=grid.image_from_array(heatmap),
        sequence_heatmaps={},
        detection_map=grid.image_from_array(detection),
        candidate_map=grid.image_from_array(labels),
        candidates=candidates,
        case_score=0.87,
        device="cpu",
    )
    folder = tmp_path_factory.mktemp("result")
    write_result(result, case_0000, folder, metadata, figures=False)
    shutil.copy(prostatex_dir / "gland-taps" / "ProstateX-0000_gland_taps.nii.gz", folder / "gland.nii.gz")
    return folder


@pytest.fixture(scope="module")
def exported(result_folder, prostatex_dir, tmp_path_factory) -> dict[str, Path]:
    """``lesionai export-dicom`` of the result folder: {modality: file}."""
    out = tmp_path_factory.mktemp("dicom") / "out"
    study = str(prostatex_dir / "ProstateX-0000")
    assert main(["export-dicom", str(result_folder), "--study", study, "--out", str(out)]) == 0
    files = {pydicom.dcmread(p, stop_before_pixels=True).Modality: p for p in out.glob("*.dcm")}
    assert sorted(files) == ["OT", "SEG", "SR"]
    return files


def _segment_voxels(segmentation: hd.seg.Segmentation, t2_files, slice_of) -> dict[int, np.ndarray]:
    """Each segment's voxels placed on the T2 slices its frames reference: {segment number: [Z, Y, X] bool}."""
    pixels = segmentation.pixel_array
    masks: dict[int, np.ndarray] = {}
    for index, frame in enumerate(segmentation.PerFrameFunctionalGroupsSequence):
        number = int(frame.SegmentIdentificationSequence[0].ReferencedSegmentNumber)
        source_uid = str(frame.DerivationImageSequence[0].SourceImageSequence[0].ReferencedSOPInstanceUID)
        position = [float(v) for v in frame.PlanePositionSequence[0].ImagePositionPatient]
        assert np.allclose(position, [float(v) for v in t2_files[source_uid].ImagePositionPatient], atol=1e-4)
        mask = masks.setdefault(number, np.zeros((len(slice_of), *pixels.shape[1:]), dtype=bool))
        mask[slice_of[source_uid]] |= pixels[index] > 0
    return masks


def _text_items(dataset: pydicom.Dataset) -> list[tuple[str, str]]:
    """Every TEXT content item of an SR tree: (concept name, text)."""
    items = []
    for item in dataset.get("ContentSequence", []):
        if item.ValueType == "TEXT":
            items.append((item.ConceptNameCodeSequence[0].CodeMeaning, str(item.TextValue)))
        items += _text_items(item)
    return items


# --------------------------------------------------------------------------- SEG
def test_segmentation_references_the_t2_series_and_its_frames_lie_on_the_expert_mask_slices(
    exported, t2_files, slice_of, expert_mask, case_0000
):
    seg = hd.seg.segread(exported["SEG"])
    t2 = next(iter(t2_files.values()))
    assert seg.FrameOfReferenceUID == t2.FrameOfReferenceUID
    assert seg.StudyInstanceUID == t2.StudyInstanceUID and seg.PatientID == "ProstateX-0000"
    (series,) = seg.ReferencedSeriesSequence
    assert series.SeriesInstanceUID == t2.SeriesInstanceUID
    assert {str(i.ReferencedSOPInstanceUID) for i in series.ReferencedInstanceSequence} == set(t2_files)
    masks = _segment_voxels(seg, t2_files, slice_of)
    assert sorted(masks) == [1, 2, 3]  # candidates 1 and 2, the gland; candidate 3 has no voxel
    lesion = masks[1]
    assert np.array_equal(lesion, expert_mask)  # 427 voxels, exactly
    assert lesion.sum() == 427
    lesion_slices = set(np.nonzero(lesion.any(axis=(1, 2)))[0])
    assert lesion_slices == {8, 9} and int(FINDING_0000_T2_IJK[2]) in lesion_slices  # the finding, k = 8.5
    block = np.zeros_like(lesion)
    block[BLOCK] = True
    assert np.array_equal(masks[2], block)
    assert masks[3].sum() == 53479  # the TAPS gland of the data README
    # geometry as well as references (each frame's position was compared with its T2 slice's above)
    shared = seg.SharedFunctionalGroupsSequence[0]
    orientation = [float(v) for v in shared.PlaneOrientationSequence[0].ImageOrientationPatient]
    assert np.allclose(orientation, [float(v) for v in t2.ImageOrientationPatient], atol=1e-6)
    spacing = [float(v) for v in shared.PixelMeasuresSequence[0].PixelSpacing]
    assert np.allclose(spacing, case_0000.grid("t2w").spacing[1:], atol=1e-6)


def test_segment_descriptions_carry_probability_grade_model_and_notice(exported):
    seg = hd.seg.segread(exported["SEG"])
    first, second, gland = seg.SegmentSequence
    assert first.SegmentLabel == "LesionAI candidate 1 p=0.87"
    assert "probability of clinically significant cancer 0.870" in first.SegmentDescription
    assert "ISUP grade group 3" in first.SegmentDescription
    assert "test-detector sha256:0123456789abcdef" in first.SegmentDescription
    assert NOTICE in first.SegmentDescription and "demo model" in first.SegmentDescription
    assert first.TrackingID == "candidate 1" and second.TrackingID == "candidate 2"
    assert "ISUP grade group 1" in second.SegmentDescription
    assert first.AnatomicRegionSequence[0].CodeValue == "279706003"  # peripheral zone (the candidate's zone)
    assert gland.SegmentLabel == "prostate gland" and gland.SegmentedPropertyTypeCodeSequence[0].CodeValue == "41216001"
    assert seg.ContentDescription.endswith(NOTICE) and seg.SegmentationType == "BINARY"
    (algorithm,) = first.SegmentationAlgorithmIdentificationSequence
    assert (algorithm.AlgorithmName, algorithm.AlgorithmVersion) == ("test-detector", "sha256:0123456789abcdef")


# --------------------------------------------------------------------------- Parametric Map
def test_parametric_map_holds_the_heatmap_exactly_on_every_t2_slice(exported, result_folder, t2_files, slice_of):
    pm = pydicom.dcmread(exported["OT"])
    assert pm.SOPClassUID == "1.2.840.10008.5.1.4.1.1.30" and pm.ContentQualification == "RESEARCH"
    assert pm.FrameOfReferenceUID == next(iter(t2_files.values())).FrameOfReferenceUID
    heatmap = sitk.GetArrayFromImage(sitk.ReadImage(str(result_folder / "heatmap.nrrd")))
    values = pm.pixel_array
    assert values.dtype == np.float32 and values.shape == (19, 384, 384)
    for index, frame in enumerate(pm.PerFrameFunctionalGroupsSequence):
        source_uid = str(frame.DerivationImageSequence[0].SourceImageSequence[0].ReferencedSOPInstanceUID)
        k = slice_of[source_uid]
        assert np.array_equal(values[index], heatmap[k]), f"frame {index + 1} is not T2 slice {k}"
    mapping = pm.SharedFunctionalGroupsSequence[0].RealWorldValueMappingSequence[0]
    assert float(mapping.RealWorldValueSlope) == 1.0 and float(mapping.RealWorldValueIntercept) == 0.0
    assert NOTICE in pm.ContentDescription


# --------------------------------------------------------------------------- SR
def test_report_has_one_finding_per_candidate_with_volume_probability_grade_model_and_notice(exported, t2_files):
    sr = hd.sr.srread(exported["SR"])
    seg = pydicom.dcmread(exported["SEG"], stop_before_pixels=True)
    assert sr.SOPClassUID == "1.2.840.10008.5.1.4.1.1.88.34" and sr.VerificationFlag == "UNVERIFIED"
    report = sr.content
    volumetric = report.get_volumetric_roi_measurement_groups()
    assert [g.tracking_identifier for g in volumetric] == ["candidate 1", "candidate 2", "prostate gland"]
    tracking = {s.TrackingID: s.TrackingUID for s in seg.SegmentSequence}
    for number, group in enumerate(volumetric, start=1):
        reference = group.referenced_segment[0].ReferencedSOPSequence[0]
        assert reference.ReferencedSOPInstanceUID == seg.SOPInstanceUID
        assert int(reference.ReferencedSegmentNumber) == number
        assert group.tracking_uid == tracking[group.tracking_identifier]
    measurements = {g.tracking_identifier: {m.name.meaning: m.value for m in g.get_measurements()} for g in volumetric}
    voxel_ml = 0.5 * 0.5 * 3.0 / 1000.0  # T2 series 4: 0.5 × 0.5 × 3 mm (data README; slices 3 mm ± 10⁻⁸)
    assert measurements["candidate 1"]["Volume"] == pytest.approx(427 * voxel_ml, rel=1e-6)
    assert measurements["candidate 1"]["Probability of cancer"] == pytest.approx(0.87, abs=1e-12)
    assert measurements["candidate 1"]["ISUP grade group (predicted)"] == 3
    assert measurements["candidate 2"]["Volume"] == pytest.approx(18 * voxel_ml, rel=1e-6)
    assert measurements["prostate gland"]["Volume"] == pytest.approx(40.1, abs=0.05)  # data README: 40.1 ml
    sites = [site.value.value for site in volumetric[0].finding_sites]
    assert sites == ["279706003"]  # peripheral zone
    assert report.get_planar_roi_measurement_groups() == []
    (unsegmented,) = report.get_image_measurement_groups()  # candidate 3: no voxel, so no segment
    assert unsegmented.tracking_identifier == "candidate 3"
    assert {m.name.meaning: m.value for m in unsegmented.get_measurements()} == {
        "Probability of cancer": pytest.approx(0.05)
    }
    texts = _text_items(sr)
    assert ("Algorithm Name", "test-detector") in texts and ("Algorithm Version", "sha256:0123456789abcdef") in texts
    assert (
        "Comment",
        f"LesionAI result, {NOTICE}; demo model - synthetic training data, not for clinical use",
    ) in texts
    evidence = {
        str(instance.ReferencedSOPInstanceUID)
        for study in sr.CurrentRequestedProcedureEvidenceSequence
        for series in study.ReferencedSeriesSequence
        for instance in series.ReferencedSOPSequence
    }
    assert evidence == {seg.SOPInstanceUID, *t2_files}


# --------------------------------------------------------------------------- validation
def test_every_object_passes_dciodvfy_without_errors(exported):
    if shutil.which("dciodvfy") is None:
        skip_or_fail("dciodvfy not found (Debian package dicom3tools: apt-get install dicom3tools)")
    for modality, path in exported.items():
        run = subprocess.run(["dciodvfy", str(path)], capture_output=True, text=True, timeout=120)
        lines = (run.stdout + run.stderr).splitlines()
        errors = [line for line in lines if line.startswith("Error")]
        assert not errors, f"{modality} {path.name}: {errors}"
        assert any(line.strip() in ("Segmentation", "ParametricMap", "Comprehensive3DSR") for line in lines), lines


# --------------------------------------------------------------------------- sending
@pytest.fixture
def storage_scp():
    """pynetdicom's own Storage SCP on 127.0.0.1 (a free port), AE title TESTSCP: (port, received [(uid, bytes)])."""
    from pydicom.uid import ExplicitVRLittleEndian, ImplicitVRLittleEndian
    from pynetdicom import AE, StoragePresentationContexts, evt

    received: list[tuple[str, bytes]] = []

    def store(event):
        received.append((str(event.request.AffectedSOPInstanceUID), event.request.DataSet.getvalue()))
        return 0x0000

    node = AE(ae_title="TESTSCP")
    node.require_called_aet = True
    node.supported_contexts = StoragePresentationContexts
    for sop_class in ("1.2.840.10008.5.1.4.1.1.66.4", "1.2.840.10008.5.1.4.1.1.30", "1.2.840.10008.5.1.4.1.1.88.34"):
        node.add_supported_context(sop_class, [ExplicitVRLittleEndian, ImplicitVRLittleEndian])
    server = node.start_server(("127.0.0.1", 0), block=False, evt_handlers=[(evt.EVT_C_STORE, store)])
    try:
        yield server.server_address[1], received
    finally:
        server.shutdown()


def _dataset_bytes(path: Path) -> bytes:
    """The bytes of a Part 10 file after its file meta group (what C-STORE carries)."""
    raw = path.read_bytes()
    assert raw[128:132] == b"DICM" and raw[132:136] == b"\x02\x00\x00\x00"  # (0002,0000) group length first
    return raw[144 + int.from_bytes(raw[140:144], "little") :]


def test_send_stores_exactly_the_written_objects_in_a_loopback_scp(exported, storage_scp, capsys):
    port, received = storage_scp
    folder = exported["SEG"].parent
    assert main(["send", str(folder), "--to", f"TESTSCP@127.0.0.1:{port}", "--calling-ae", "LESIONAI_TEST"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 3 and all(line.startswith("sent ") and f"TESTSCP@127.0.0.1:{port}" in line for line in lines)
    written = {str(pydicom.dcmread(p, stop_before_pixels=True).SOPInstanceUID): p for p in exported.values()}
    assert sorted(uid for uid, _ in received) == sorted(written)
    for uid, data in received:
        assert data == _dataset_bytes(written[uid]), f"{written[uid].name} arrived changed"


def test_send_failures_are_one_line(exported, storage_scp, capsys):
    port, received = storage_scp
    folder = str(exported["SEG"].parent)
    assert main(["send", folder, "--to", f"OTHER@127.0.0.1:{port}"]) == 2
    error = capsys.readouterr().err
    assert error.count("\n") == 1 and "rejected the association: Called AE title not recognised" in error
    with socket.socket() as probe:  # a port nothing listens on
        probe.bind(("127.0.0.1", 0))
        closed = probe.getsockname()[1]
    assert main(["send", folder, "--to", f"TESTSCP@127.0.0.1:{closed}", "--timeout", "5"]) == 2
    error = capsys.readouterr().err
    assert error.count("\n") == 1 and f"cannot connect to TESTSCP@127.0.0.1:{closed}" in error
    assert main(["send", folder, "--to", "TESTSCP-127.0.0.1-104"]) == 2
    assert "expects AE@host:port" in capsys.readouterr().err
    assert received == []


# --------------------------------------------------------------------------- refusals and the folder
def test_file_input_is_refused_with_one_line_before_the_analysis(case_0000, tmp_path, capsys):
    files = []
    for role in ("t2w", "adc", "hbv"):
        path = tmp_path / f"{role}.nii.gz"
        sitk.WriteImage(case_0000.image(role), str(path))
        files += [f"--{role}", str(path)]
    out, dicom_out = tmp_path / "result", tmp_path / "dicom"
    assert main(["analyze", *files, "--out", str(out), "--dicom-out", str(dicom_out), "--device", "cpu"]) == 2
    error = capsys.readouterr().err
    assert error.count("\n") == 1 and "the T2 is an image file, not a DICOM series" in error
    assert not dicom_out.exists() and not (out / "result.json").exists()
    assert main(["export-dicom", str(out), "--study", files[1], "--out", str(dicom_out)]) == 2
    assert capsys.readouterr().err.count("\n") == 1


def test_a_result_of_another_series_is_refused(result_folder, prostatex_dir, source_0000, tmp_path):
    with pytest.raises(DicomOutputError, match="holds no series"):
        export_result(result_folder, prostatex_dir / "ProstateX-0001", tmp_path / "out")
    grid = Grid.from_image(sitk.ReadImage(str(result_folder / "heatmap.nrrd")))
    other = source_series_of_study(prostatex_dir / "ProstateX-0001")  # same matrix, another orientation
    with pytest.raises(DicomOutputError, match="another pixel spacing or orientation than the T2 series 10"):
        other.check_on_grid(grid, "the result")
    source_0000.check_on_grid(grid, "the result")
    shifted = Grid(grid.shape, grid.spacing, tuple(grid.index_to_lps((1, 0, 0))), grid.direction)  # one slice up
    with pytest.raises(DicomOutputError, match=r"slice 0 of the result lies 3\.00 mm from 1-\d\d\.dcm"):
        source_0000.check_on_grid(shifted, "the result")
    assert not (tmp_path / "out").exists()


def test_export_replaces_an_earlier_export_and_refuses_a_foreign_folder(result_folder, source_0000, exported, tmp_path):
    shutil.copytree(exported["SEG"].parent, tmp_path / "out")  # an earlier export, with a file it no longer writes
    (tmp_path / "out" / "stale.dcm").write_bytes(b"left from an older LesionAI")
    first = {p.name: pydicom.dcmread(p, stop_before_pixels=True).SOPInstanceUID for p in exported.values()}
    second = {
        o.path.name: o.sop_instance_uid
        for o in write_dicom_results(read_result(result_folder), source_0000, tmp_path / "out")
    }
    assert sorted(first) == sorted(second) and all(first[name] != second[name] for name in first)
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == sorted([*second, "lesionai-dicom.json"])
    assert [p.name for p in tmp_path.iterdir()] == ["out"]  # no temporary folder left behind
    foreign = tmp_path / "notes"
    foreign.mkdir()
    (foreign / "mine.txt").write_text("keep me")
    with pytest.raises(DicomOutputError, match="is not an earlier LesionAI DICOM output"):
        write_dicom_results(read_result(result_folder), source_0000, foreign)
    assert [p.name for p in foreign.iterdir()] == ["mine.txt"]


def test_analyze_dicom_out_writes_objects_of_the_bundled_models_candidates(prostatex_dir, tmp_path, capsys):
    out, dicom_out = tmp_path / "result", tmp_path / "dicom"
    study = str(prostatex_dir / "ProstateX-0000")
    arguments = ["analyze", study, "--out", str(out), "--dicom-out", str(dicom_out), "--no-figures", "--device", "cpu"]
    assert main(arguments) == 0, capsys.readouterr().err
    stored = read_result(out)
    assert stored.candidates, "the demo model finds candidates on ProstateX-0000"
    sr = hd.sr.srread(dicom_out / "findings_sr.dcm")
    groups = sr.content.get_volumetric_roi_measurement_groups() + sr.content.get_image_measurement_groups()
    assert sorted(g.tracking_identifier for g in groups) == sorted(
        f"candidate {c.candidate_id}" for c in stored.candidates
    )
    probabilities = {
        g.tracking_identifier: next(m.value for m in g.get_measurements() if m.name.meaning == "Probability of cancer")
        for g in groups
    }
    assert probabilities == {f"candidate {c.candidate_id}": pytest.approx(c.probability) for c in stored.candidates}
    seg = pydicom.dcmread(dicom_out / "candidates_seg.dcm", stop_before_pixels=True)
    assert seg.ReferencedSeriesSequence[0].SeriesInstanceUID == stored.t2_series_uid
    texts = dict(_text_items(sr))
    assert "demo model" in texts["Comment"] and texts["Algorithm Name"] == "lesionai-demo-phantom"


# --------------------------------------------------------------------------- Slicer scene
@pytest.mark.mrml
def test_segmentation_loads_into_a_slicer_scene_on_the_t2_voxels(
    request, result_folder, prostatex_dir, case_0000, expert_mask, t2_files, tmp_path
):
    require_module("trame_slicer", "needs the slicer-core and trame-slicer wheels (pip install -e '.[mrml]')")

    sys.path.insert(0, str(ROOT / "LesionAI"))
    from LesionAILogic.dicom_export import export_to_dicom
    from LesionAILogic.logic import LesionAILogic
    from LesionAILogic.volumes import ijk_to_ras_of_node, set_node_from_image

    app = request.getfixturevalue("slicer_app")
    logic = LesionAILogic(
        app.scene, app.segmentations_logic, modelStore=tmp_path / "store", workFolder=tmp_path / "jobs"
    )
    t2 = logic.loadStudy(prostatex_dir / "ProstateX-0000")["t2w"]
    written = export_to_dicom(t2, result_folder, tmp_path / "from-study")
    assert [o.modality for o in written] == ["SEG", "OT", "SR"]
    # a T2 that Slicer's DICOM module loaded: found through its instance UIDs in the DICOM database
    files = {uid: str(prostatex_dir / T2_FOLDER / f"1-{int(d.InstanceNumber):02d}.dcm") for uid, d in t2_files.items()}
    from_database = logic.addVolumeFromImage(
        case_0000.t2w, "4: t2_tse_tra", attributes={"DICOM.instanceUIDs": " ".join(files)}
    )
    export_to_dicom(from_database, result_folder, tmp_path / "from-database", instance_file=files.get)
    plain = logic.addVolumeFromImage(case_0000.t2w, "t2 from a file")
    with pytest.raises(DicomOutputError, match="was not loaded from DICOM"):
        export_to_dicom(plain, result_folder, tmp_path / "refused")

    volume = hd.seg.segread(tmp_path / "from-study" / "candidates_seg.dcm").get_volume(combine_segments=False)
    lesion = volume.array[..., 0].astype(np.uint8)  # [slice, row, column] of segment 1
    affine = volume.affine  # (slice, row, column) index -> LPS mm
    axes = [affine[:3, c] for c in (2, 1, 0)]  # x = column, y = row, z = slice
    image = sitk.GetImageFromArray(lesion)
    image.SetOrigin(affine[:3, 3])
    image.SetSpacing([float(np.linalg.norm(a)) for a in axes])
    image.SetDirection(np.column_stack([a / np.linalg.norm(a) for a in axes]).ravel().tolist())
    labelmap = app.scene.AddNewNodeByClass("vtkMRMLLabelMapVolumeNode", "LesionAI SEG candidate 1")
    set_node_from_image(labelmap, image)
    # every labelled voxel of the scene's labelmap lies exactly on a T2 voxel of the expert mask, and all are there
    ijk = np.argwhere(lesion > 0)[:, ::-1]  # (i, j, k) of the labelmap
    ras = (ijk_to_ras_of_node(labelmap) @ np.c_[ijk, np.ones(len(ijk))].T).T
    t2_ijk = (np.linalg.inv(ijk_to_ras_of_node(t2)) @ ras.T).T[:, :3]
    assert np.abs(t2_ijk - np.round(t2_ijk)).max() < 1e-3
    placed = np.zeros_like(expert_mask)
    i, j, k = np.round(t2_ijk).astype(int).T
    placed[k, j, i] = True
    assert np.array_equal(placed, expert_mask)


def test_a_result_without_candidates_gives_map_and_report_but_no_segmentation(result_folder, source_0000, tmp_path):

    folder = tmp_path / "result"
    shutil.copytree(result_folder, folder, ignore=shutil.ignore_patterns("gland.nii.gz"))
    stored = dataclasses.replace(read_result(folder), candidates=[], case_score=0.0)
    written = write_dicom_results(stored, source_0000, tmp_path / "out")
    assert [o.modality for o in written] == ["OT", "SR"]
    sr = hd.sr.srread(tmp_path / "out" / "findings_sr.dcm")
    assert sr.content.get_volumetric_roi_measurement_groups() == []
    (case,) = sr.content.get_image_measurement_groups()
    assert case.tracking_identifier == "case"
    assert [(m.name.meaning, m.value) for m in case.get_measurements()] == [("Probability of cancer", 0.0)]
    assert ("Comment", "LesionAI found no lesion candidate") in _text_items(sr)

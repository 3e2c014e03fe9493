"""Prostate gland segmentation with the TAPS model (``LesionAILib.gland``) on the real ProstateX studies.

The reference masks in ``../shared/data/prostatex/gland-taps`` are the TAPS package's own output (its full
sliding window, ``taps.segment(..., exact=True)``), not expert delineations: the Dice tests check that our
preprocessing, network and one-or-two-window inference *reproduce the package*, not that the gland is
anatomically right. Needs the ``lavlab-taps==1.1.2`` package (for its ONNX file) and ``onnx``.
"""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk
from conftest import PROSTATEX, ROOT, require, require_module, skip_or_fail

from LesionAILib.cli.main import main
from LesionAILib.errors import ModelFileError
from LesionAILib.geometry import Grid
from LesionAILib.gland import segmentation as gland_segmentation
from LesionAILib.gland.confinement import GlandConfinement
from LesionAILib.gland.model_file import TAPS_SHA256, installed_model_path
from LesionAILib.gland.outputs import psa_density, read_gland_folder, write_gland_folder
from LesionAILib.gland.quality import gland_warnings
from LesionAILib.gland.segmentation import GlandSegmenter
from LesionAILib.inference.candidates import Candidate

require_module("onnx", "gland segmentation reads the TAPS ONNX file with the onnx package (pip install onnx)")
pytestmark = pytest.mark.realdata

REFERENCE_VOLUME_ML = {"0000": 40.1, "0001": 24.4}  # shared data README: the package's own masks


def _array(image: sitk.Image) -> np.ndarray:
    return sitk.GetArrayFromImage(image) > 0


def _dice(a: np.ndarray, b: np.ndarray) -> float:
    return 2.0 * float((a & b).sum()) / float(a.sum() + b.sum())


def _voxel_ml(image: sitk.Image) -> float:
    return float(np.prod(image.GetSpacing())) / 1000.0


def _geometry(image: sitk.Image) -> tuple:
    return image.GetSize(), image.GetOrigin(), image.GetDirection(), image.GetSpacing()


@pytest.fixture(scope="module")
def segmenter() -> GlandSegmenter:
    try:
        installed_model_path()
    except ModelFileError as error:
        skip_or_fail(f"the TAPS gland model is needed: {error}")
    return GlandSegmenter("cpu")


@pytest.fixture(scope="module")
def gland_0000(segmenter, case_0000):
    return segmenter.segment(case_0000.t2w, "ProstateX-0000 T2")


@pytest.fixture(scope="module")
def gland_0001(segmenter, case_0001):
    return segmenter.segment(case_0001.t2w, "ProstateX-0001 T2")


@pytest.fixture(scope="module")
def gland_folder_0000(segmenter, prostatex_dir, tmp_path_factory):
    """``lesionai gland ProstateX-0000 --psa 6.4`` run once (a second, independent segmentation of the study)."""
    out = tmp_path_factory.mktemp("gland-0000")
    status = main(
        ["gland", str(prostatex_dir / "ProstateX-0000"), "--out", str(out), "--psa", "6.4", "--device", "cpu"]
    )
    assert status == 0
    return out


def test_gland_mask_lies_exactly_on_the_t2_grid(gland_0000, gland_0001, case_0000, case_0001):
    for gland, case in ((gland_0000, case_0000), (gland_0001, case_0001)):
        assert _geometry(gland.mask) == _geometry(case.t2w)
        assert gland.mask.GetPixelID() == sitk.sitkUInt8
        voxels = int(_array(gland.mask).sum())
        assert voxels > 10_000
        assert gland.volume_ml == pytest.approx(voxels * _voxel_ml(case.t2w), rel=1e-9)


@pytest.mark.parametrize("study", ["0000", "0001"])
def test_gland_reproduces_the_taps_package_output(study, gland_0000, gland_0001, case_0000, case_0001):
    """Reproduction, not anatomy: the reference is the TAPS package's own mask (full sliding window), so
    Dice ≥ 0.97 says our preprocessing and 1–2 window inference give the package's answer."""
    gland, case = {"0000": (gland_0000, case_0000), "0001": (gland_0001, case_0001)}[study]
    reference = sitk.ReadImage(str(require(PROSTATEX / "gland-taps" / f"ProstateX-{study}_gland_taps.nii.gz")))
    assert reference.GetSize() == case.t2w.GetSize()
    dice = _dice(_array(gland.mask), _array(reference))
    print(
        f"ProstateX-{study}: Dice {dice:.4f} vs the TAPS package, {gland.volume_ml:.2f} ml, {gland.windows} window(s)"
    )
    assert dice >= 0.97
    assert gland.volume_ml == pytest.approx(REFERENCE_VOLUME_ML[study], rel=0.03)
    assert gland.warnings == []


def test_gland_off_the_field_of_view_centre_gets_a_second_window_and_still_reproduces_the_package(segmenter, case_0000):
    """The T2 cropped so the gland sits ≈ 25 mm off the field-of-view centre (right and anterior): the first
    window cuts it, the second is centred on it. Reproduction again (the package's mask cropped alike)."""
    cropped = case_0000.t2w[100:, 100:, :]  # SimpleITK slicing keeps the physical geometry
    reference = sitk.ReadImage(str(require(PROSTATEX / "gland-taps" / "ProstateX-0000_gland_taps.nii.gz")))[
        100:, 100:, :
    ]
    gland = segmenter.segment(cropped, "cropped T2")
    assert gland.windows == 2
    assert _geometry(gland.mask) == _geometry(cropped)
    assert _dice(_array(gland.mask), _array(reference)) >= 0.97


def test_prostatex_0000_cspca_lesion_lies_inside_the_gland(gland_0000):
    lesion = _array(sitk.ReadImage(str(require(PROSTATEX / "labels" / "ProstateX-0000_lesions.nii.gz"))))
    assert lesion.sum() == 427
    inside = float((lesion & _array(gland_0000.mask)).sum()) / float(lesion.sum())
    assert inside >= 0.95


def test_cli_gland_writes_mask_json_and_png_and_repeats_the_segmentation_exactly(
    gland_folder_0000, gland_0000, case_0000
):
    summary = json.loads((gland_folder_0000 / "gland.json").read_text())
    mask = sitk.ReadImage(str(gland_folder_0000 / "gland.nii.gz"))
    assert mask.GetSize() == case_0000.t2w.GetSize()
    np.testing.assert_allclose(mask.GetOrigin(), case_0000.t2w.GetOrigin(), atol=1e-4)
    np.testing.assert_allclose(mask.GetDirection(), case_0000.t2w.GetDirection(), atol=1e-6)
    np.testing.assert_allclose(mask.GetSpacing(), case_0000.t2w.GetSpacing(), atol=1e-6)
    assert np.array_equal(_array(mask), _array(gland_0000.mask)), "two runs give the same mask"
    volume = float(_array(mask).sum()) * _voxel_ml(case_0000.t2w)
    assert summary["volume_ml"] == pytest.approx(volume, abs=1e-3)
    assert volume == pytest.approx(40.1, rel=0.03)
    assert summary["psa_ng_ml"] == 6.4
    assert summary["psa_density_ng_ml2"] == pytest.approx(6.4 / volume, abs=1e-4)
    assert summary["model"]["sha256"] == TAPS_SHA256 and summary["model"]["version"] == "1.1.2"
    assert summary["warnings"] == [] and summary["windows"] in (1, 2)
    assert (gland_folder_0000 / "gland.png").stat().st_size > 20_000


def test_cli_gland_refuses_bad_input_with_one_line(tmp_path, capsys):
    assert main(["gland", str(tmp_path / "no-such-study"), "--out", str(tmp_path / "out")]) == 2
    error = capsys.readouterr().err.strip()
    assert error.startswith("lesionai: error: ") and "no-such-study" in error and "\n" not in error
    assert main(["gland", "--t2w", str(tmp_path / "t2.nii.gz"), "--out", str(tmp_path / "out"), "--psa", "-1"]) == 2
    error = capsys.readouterr().err.strip()
    assert "--psa" in error and "\n" not in error
    assert not (tmp_path / "out").exists()


def test_tampered_model_file_is_refused_with_one_line(segmenter, tmp_path):
    tampered = tmp_path / "model_v1.onnx"
    shutil.copyfile(installed_model_path(), tampered)
    with open(tampered, "r+b") as handle:
        handle.seek(1_000_000)
        byte = handle.read(1)
        handle.seek(1_000_000)
        handle.write(bytes([byte[0] ^ 0xFF]))
    with pytest.raises(ModelFileError) as raised:
        GlandSegmenter("cpu", model_path=tampered)
    message = str(raised.value)
    assert "sha256" in message and str(tampered) in message and "\n" not in message


def test_blank_prediction_is_one_warning_line_not_a_crash(segmenter, case_0000, monkeypatch, tmp_path):
    monkeypatch.setattr(segmenter, "window_logits", lambda image: np.full(image.shape, -20.0, np.float32))
    gland = segmenter.segment(case_0000.t2w, "blank T2")
    assert not _array(gland.mask).any() and gland.volume_ml == 0.0 and gland.centroid_lps_mm is None
    assert len(gland.warnings) == 1 and "no prostate gland" in gland.warnings[0] and "\n" not in gland.warnings[0]
    write_gland_folder(gland, case_0000.t2w, tmp_path, psa_ng_ml=5.0, figure=False)
    stored = read_gland_folder(tmp_path)
    assert stored.volume_ml == 0.0 and stored.psa_density_ng_ml2 is None and stored.warnings == gland.warnings


def test_implausible_masks_give_one_line_per_finding(case_0000):
    grid = Grid.from_image(case_0000.t2w)
    small = np.zeros(grid.shape, bool)
    small[4:12, 190:200, 190:200] = True  # 800 voxels of 0.75 mm³ = 0.6 ml, 5 × 5 × 24 mm
    lines = gland_warnings(small, grid, components=3, removed_voxels=40, source="T2")
    assert len(lines) == 3 and all("\n" not in line and line.startswith("T2: ") for line in lines)
    assert "0.6 ml is outside the expected 15–80 ml" in lines[0]
    assert "5 × 5 × 24 mm" in lines[1] and "3 separate parts" in lines[2]
    border = np.zeros(grid.shape, bool)
    border[5:12, 0:80, 150:250] = True  # 42 ml touching the image's first row
    assert [line for line in gland_warnings(border, grid, 1, 0) if "border along Y" in line]
    assert gland_warnings(np.zeros(grid.shape, bool), grid, 0, 0) == [
        "no prostate gland found (the gland mask is empty)"
    ]


def test_psa_density_is_psa_over_gland_volume():
    assert psa_density(6.4, 40.0) == pytest.approx(0.16)
    assert psa_density(None, 40.0) is None and psa_density(5.0, 0.0) is None
    with pytest.raises(Exception, match="non-negative"):
        psa_density(-1.0, 40.0)


def test_confinement_flags_candidates_by_distance_to_the_gland(gland_0000):
    confinement = GlandConfinement.from_segmentation(gland_0000, margin_mm=5.0)
    mask = _array(gland_0000.mask)
    grid = Grid.from_image(gland_0000.mask)
    # distances to the gland surface by SimpleITK's Maurer distance map (independent of our own distance)
    distance_map = sitk.GetArrayFromImage(
        sitk.SignedMaurerDistanceMap(
            gland_0000.mask > 0, insideIsPositive=False, squaredDistance=False, useImageSpacing=True
        )
    )
    outside = np.argwhere(~mask)
    near = outside[(distance_map[tuple(outside.T)] > 1.0) & (distance_map[tuple(outside.T)] < 3.0)][0]
    far = outside[distance_map[tuple(outside.T)] > 20.0][0]
    points = [gland_0000.centroid_lps_mm, grid.index_to_lps(near), grid.index_to_lps(far)]
    found = [
        Candidate(i + 1, 0.5, 10, 0.1, (0.0, 0.0, 0.0), tuple(p), (0.0, 0.0, 0.0), 0.5) for i, p in enumerate(points)
    ]
    confinement.flag(found)
    assert [c.in_gland for c in found] == [True, True, False]
    assert mask[tuple(np.round(grid.lps_to_index(gland_0000.centroid_lps_mm)).astype(int))]


def test_analyze_with_gland_flags_candidates_outside_it_and_centres_the_grid(
    gland_0000, case_0000, prostatex_dir, tmp_path, monkeypatch, capsys
):
    """The gland step is the fixture's segmentation (the gland itself is tested above); the analysis is real."""

    class KnownGland:
        def __init__(self, device):
            pass

        def segment(self, t2, source=""):
            return gland_0000

    monkeypatch.setattr(gland_segmentation, "GlandSegmenter", KnownGland)
    out = tmp_path / "result"
    arguments = ["analyze", str(prostatex_dir / "ProstateX-0000"), "--out", str(out), "--gland", "--no-figures"]
    assert main([*arguments, "--gland-margin", "5", "--device", "cpu"]) == 0, capsys.readouterr().err
    summary = json.loads((out / "result.json").read_text())
    candidates = json.loads((out / "candidates.json").read_text())
    assert summary["gland"]["margin_mm"] == 5.0
    assert summary["gland"]["volume_ml"] == pytest.approx(gland_0000.volume_ml, abs=1e-3)
    assert np.array_equal(_array(sitk.ReadImage(str(out / "gland.nii.gz"))), _array(gland_0000.mask))
    distance_map = sitk.SignedMaurerDistanceMap(
        gland_0000.mask > 0, insideIsPositive=False, squaredDistance=False, useImageSpacing=True
    )
    flags = []
    for candidate in candidates:
        index = gland_0000.mask.TransformPhysicalPointToIndex(candidate["center_lps_mm"])
        distance = distance_map[index]
        if abs(distance - 5.0) > 1.0:  # away from the margin, where surface and voxel-centre distances agree
            assert candidate["in_gland"] is (distance <= 5.0)
        flags.append(candidate["in_gland"])
    assert False in flags, "the demo model's candidates on ProstateX-0000 include some outside the gland"
    inside = [c["probability"] for c in candidates if c["in_gland"]]
    assert summary["case_score"] == pytest.approx(max(inside, default=0.0))
    detection = sitk.GetArrayFromImage(sitk.ReadImage(str(out / "detection_map.nrrd")))
    labels = sitk.GetArrayFromImage(sitk.ReadImage(str(out / "candidates.nii.gz")))
    for candidate in candidates:
        region = labels == candidate["id"]
        expected = candidate["probability"] if candidate["in_gland"] else 0.0
        assert np.allclose(detection[region], expected)
    with open(out / "candidates.csv") as handle:
        header, *rows = handle.read().splitlines()
    assert header.split(",")[-1] == "in_gland" and {row.split(",")[-1] for row in rows} <= {"True", "False"}
    model_grid = Grid.from_dict(summary["model_grid"])
    assert np.linalg.norm(model_grid.center_lps - np.asarray(gland_0000.centroid_lps_mm)) < 2.0


def test_phantom_gland_dice_is_reported(segmenter, record_property):
    """The phantom is not real anatomy: this reports how the real-patient model sees it (see benchmarks/gland.py)
    and checks that whatever it finds comes back on the phantom's T2 grid with one-line warnings."""
    from LesionAILib.phantom.cases import generate_case

    phantom = generate_case(seed=1, site="A", index=0)
    gland = segmenter.segment(phantom.t2w, "phantom A seed 1")
    truth = sitk.GetArrayFromImage(phantom.zones) > 0
    mask = _array(gland.mask)
    dice = _dice(mask, truth)
    print(f"phantom (site A, seed 1): gland Dice {dice:.3f} vs the phantom's zones, {gland.volume_ml:.1f} ml found")
    record_property("phantom_gland_dice", round(dice, 4))
    assert _geometry(gland.mask) == _geometry(phantom.t2w)
    assert truth.sum() * _voxel_ml(phantom.t2w) == pytest.approx(phantom.prostate_volume_ml, rel=0.02)
    assert all("\n" not in line for line in gland.warnings)
    assert mask.any() or len(gland.warnings) == 1


@pytest.mark.mrml
def test_slicer_gland_segment_has_the_mask_volume_and_psa_density(gland_folder_0000, case_0000):
    require_module("slicer", "needs the slicer-core wheel (pip install -e '.[mrml]')")
    sys.path.insert(0, str(ROOT / "LesionAI"))
    import slicer
    import vtk
    from LesionAILogic.gland import GLAND_REFERENCE, SceneGland
    from LesionAILogic.volumes import set_node_from_image

    scene = slicer.vtkMRMLScene()
    t2 = scene.AddNewNodeByClass("vtkMRMLScalarVolumeNode", "ProstateX-0000 T2")
    set_node_from_image(t2, case_0000.t2w)
    logic = SceneGland(scene)
    gland = logic.loadGland(gland_folder_0000, t2)
    assert t2.GetNodeReference(GLAND_REFERENCE) is gland.segmentationNode
    segment = gland.segmentationNode.GetSegmentation().GetSegment(gland.segmentId)
    assert segment.GetName() == "Prostate gland"
    mask = _array(sitk.ReadImage(str(gland_folder_0000 / "gland.nii.gz")))
    volume = float(mask.sum()) * _voxel_ml(case_0000.t2w)
    assert gland.volumeMl == pytest.approx(volume, abs=1e-3) and gland.psaNgMl == 6.4
    assert gland.psaDensityNgMl2 == pytest.approx(6.4 / volume, abs=1e-4)
    assert logic.setPsa(t2, 10.0) == pytest.approx(10.0 / volume, rel=1e-5)  # volume kept to 10⁻⁴ ml
    assert logic.glandOf(t2).psaDensityNgMl2 == pytest.approx(10.0 / volume, abs=1e-5)
    exported = scene.AddNewNodeByClass("vtkMRMLLabelMapVolumeNode", "exported gland")
    ids = vtk.vtkStringArray()
    ids.InsertNextValue(gland.segmentId)
    logic_class = slicer.vtkSlicerSegmentationsModuleLogic
    assert logic_class.ExportSegmentsToLabelmapNode(gland.segmentationNode, ids, exported, t2)
    assert np.array_equal(slicer.util.arrayFromVolume(exported) > 0, mask), "the segment is the mask, voxel for voxel"
    again = logic.loadGland(gland_folder_0000, t2, psa=3.0)
    assert again.segmentationNode is gland.segmentationNode and again.psaNgMl == 3.0
    assert gland.segmentationNode.GetSegmentation().GetNumberOfSegments() == 1


@pytest.mark.mrml
def test_slicer_gland_job_runs_lesionai_gland_out_of_process(gland_0000, case_0000, tmp_path):
    """What the panel does: the T2 node's voxels go to a ``lesionai gland`` job; its folder becomes the segment."""
    require_module("slicer", "needs the slicer-core wheel (pip install -e '.[mrml]')")
    sys.path.insert(0, str(ROOT / "LesionAI"))
    import slicer
    from LesionAILogic.gland import SceneGland
    from LesionAILogic.jobs import SceneJobs
    from LesionAILogic.volumes import set_node_from_image

    scene = slicer.vtkMRMLScene()
    t2 = scene.AddNewNodeByClass("vtkMRMLScalarVolumeNode", "T2")
    set_node_from_image(t2, case_0000.t2w)
    logic = SceneGland(scene, SceneJobs(None, None, tmp_path / "jobs"))
    job = logic.startGlandSegmentation(t2, psa=6.4, device="cpu")
    state = job.wait(timeout_s=600)
    assert state.status == "finished", state.error
    # the T2 reaches the job through the node's RAS matrix and an NRRD file: geometry equal to ~1e-9, so a
    # voxel or two on the threshold may flip
    assert state.result["volume_ml"] == pytest.approx(gland_0000.volume_ml, rel=1e-3)
    inputs = Path(job.context["inputs"])
    assert inputs.is_dir()
    gland = logic.loadGlandJobResult(job, t2)
    assert not inputs.exists(), "the T2 copy written for the job is removed once loaded"
    assert gland.volumeMl == pytest.approx(state.result["volume_ml"], abs=1e-3) and gland.psaNgMl == 6.4
    assert gland.psaDensityNgMl2 == pytest.approx(6.4 / gland.volumeMl, rel=1e-3) and gland.warnings == []

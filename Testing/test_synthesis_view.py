"""``lesionai synthesis-view`` and ``analyze --abnormality-panels``: the four FIG 7 panels at the right place.

A tiny inpainting model is trained in seconds on lesion-free phantom tissue; the held-out demo phantom
(seed 7: a GG4 cancer and a BPH nodule) has its lesions at known LPS points, so the box hidden at the
cancer must be synthesised worse than a box hidden in normal gland, and the box must sit where asked.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk
from conftest import FINDING_0000_LPS

from LesionAILib.cli.main import main
from LesionAILib.geometry import Grid
from LesionAILib.models.bundled import SYNTHESIS_PROSTATEX_MODEL as REAL_PATIENT_MODEL
from LesionAILib.phantom.cases import generate_case
from LesionAILib.phantom.cohort import write_case

HELD_OUT_SEED = 7


pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def tiny_synthesis(phantom_cohort, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("synthesis-view") / "tiny-synthesis.safetensors"
    arguments = ["--train", str(phantom_cohort), "--out", str(out), "--steps", "40", "--batch", "2", "--width", "4"]
    assert main(["train-synthesis", *arguments, "--synthetic", "--device", "cpu"]) == 0
    return out


@pytest.fixture(scope="module")
def phantom_study(tmp_path_factory):
    """The held-out phantom written as a PI-CAI case; its cancer centre and a normal gland point (LPS mm)."""
    phantom = generate_case(HELD_OUT_SEED, "A", 0)
    folder = tmp_path_factory.mktemp("phantom")
    write_case(phantom, folder)
    cancer = next(lesion for lesion in phantom.lesions if lesion.clinically_significant)
    grid = Grid.from_image(phantom.zones)
    gland = grid.index_to_lps(np.argwhere(sitk.GetArrayViewFromImage(phantom.zones) > 0))
    clearance = np.min([np.linalg.norm(gland - np.asarray(l.center_lps_mm), axis=1) for l in phantom.lesions], 0)
    far = gland[clearance > 20.0]  # a gland point 20 mm from every lesion, nearest the gland's centre
    normal = far[np.argmin(np.linalg.norm(far - gland.mean(0), axis=1))]
    return folder / "images" / phantom.patient_id, tuple(cancer.center_lps_mm), tuple(float(v) for v in normal)


def _view(study, model, point, out: Path, capsys, frame: str = "--at-lps") -> dict:
    status = main(["synthesis-view", str(study), "--model", str(model), frame, *map(str, point), "--out", str(out),
                   "--json"])
    captured = capsys.readouterr()
    assert status == 0, captured.err
    return json.loads(captured.out)


def test_the_box_sits_at_the_point_and_a_cancer_is_synthesised_worse_than_normal_gland(
    tiny_synthesis, phantom_study, tmp_path, capsys
):
    study, cancer, normal = phantom_study
    at_cancer = _view(study, tiny_synthesis, cancer, tmp_path / "cancer.png", capsys)
    at_normal = _view(study, tiny_synthesis, normal, tmp_path / "normal.png", capsys)
    t2 = Grid.from_image(sitk.ReadImage(str(next(study.glob("*_t2w.mha")))))
    for report, point in ((at_cancer, cancer), (at_normal, normal)):
        # the synthesis grid is centred on the point, snapped onto the T2 lattice: under half a T2 voxel per axis
        offset = t2.lps_to_index(report["box_centre_lps_mm"]) - t2.lps_to_index(point)
        assert np.all(np.abs(offset) <= 0.5 + 1e-6), offset
        assert report["point_ras_mm"] == pytest.approx([-point[0], -point[1], point[2]])
        assert set(report["difference"]) == {"t2w", "adc", "hbv"}
        png = Path(report["png"])
        assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 20_000
    cancer_gap, normal_gap = np.mean(list(at_cancer["difference"].values())), np.mean(
        list(at_normal["difference"].values())
    )
    assert cancer_gap > 1.3 * normal_gap, (at_cancer["difference"], at_normal["difference"])
    # the same point given in RAS (Slicer's frame) hides the same box
    ras = (-cancer[0], -cancer[1], cancer[2])
    again = _view(study, tiny_synthesis, ras, tmp_path / "ras.png", capsys, frame="--at-ras")
    assert again["box_centre_lps_mm"] == pytest.approx(at_cancer["box_centre_lps_mm"], abs=1e-6)
    assert again["difference"] == pytest.approx(at_cancer["difference"], rel=1e-4)


def test_a_point_outside_the_image_or_a_wrong_output_is_one_line_naming_the_fix(
    tiny_synthesis, phantom_study, tmp_path, capsys
):
    study = phantom_study[0]
    status = main(["synthesis-view", str(study), "--model", str(tiny_synthesis), "--at-lps", "500", "0", "0",
                   "--out", str(tmp_path / "x.png")])
    err = capsys.readouterr().err
    assert status == 2 and err.count("\n") == 1 and "outside the T2 image" in err and "(500, 0, 0)" in err
    assert not (tmp_path / "x.png").exists()
    status = main(["synthesis-view", str(study), "--model", str(tiny_synthesis), "--at-lps", "0", "0", "0",
                   "--out", str(tmp_path / "x.jpg")])
    err = capsys.readouterr().err
    assert status == 2 and err.count("\n") == 1 and "must name a .png" in err


def test_analyze_writes_the_candidate_panels_with_no_figures_only_when_asked(
    tiny_synthesis, phantom_study, tmp_path, capsys
):
    study = phantom_study[0]
    out = tmp_path / "result"
    arguments = ["analyze", str(study), "--out", str(out), "--no-figures", "--device", "cpu"]
    assert main([*arguments, "--abnormality-panels"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "--abnormality-panels needs --abnormality" in err
    assert main([*arguments, "--abnormality", "--abnormality-model", str(tiny_synthesis), "--abnormality-panels"]) == 0
    summary = json.loads((out / "abnormality.json").read_text())
    assert summary["candidates"]
    panels = sorted(p.name for p in out.glob("abnormality_candidate_*.png"))
    assert panels == sorted(f"abnormality_candidate_{c['id']}.png" for c in summary["candidates"])
    assert not (out / "heatmap.png").exists() and not [p for p in out.glob("*.png") if p.name not in panels]


@pytest.mark.realdata
def test_the_real_patient_2d_model_hides_the_window_centre_at_the_prostatex_finding(prostatex_dir, tmp_path, capsys):
    """The bundled 2D model (ADC and high-b, native ADC slices): the box is on the finding's nearest ADC slice."""
    study = prostatex_dir / "ProstateX-0000"
    report = _view(study, REAL_PATIENT_MODEL, FINDING_0000_LPS, tmp_path / "finding.png", capsys)
    assert set(report["difference"]) == {"adc", "hbv"} and report["box_size_voxels"][0] == 1
    from LesionAILib.studies.dicom_study import open_dicom_study

    adc = Grid.from_image(open_dicom_study(study).adc)
    offset = adc.lps_to_index(report["box_centre_lps_mm"]) - adc.lps_to_index(FINDING_0000_LPS)
    # the nearest slice; in-plane the even-sized box's centre is half a pixel from the point's nearest pixel
    assert abs(offset[0]) <= 0.5 + 1e-6 and np.all(np.abs(offset[1:]) <= 1.0 + 1e-6), offset
    assert Path(report["png"]).stat().st_size > 20_000

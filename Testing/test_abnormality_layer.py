"""The abnormality map layer and the box viewer on a real MRML scene (slicer-core), run as the panel runs them.

The analysis job (``lesionai analyze --abnormality`` with a tiny inpainting model trained in seconds
on lesion-free phantom tissue, and a seeded untrained detector) writes the map; the panel loads it
onto the T2 grid exactly, shows it in every slice view beside the heatmap, toggles it, and a saved
and reopened scene brings back the layer's settings and the map. The viewer job draws the four
panels at the crosshair.
"""

from __future__ import annotations

import sys
import time

import numpy as np
import pytest
import SimpleITK as sitk
from conftest import ROOT, require_module, save_and_reopen_mrb, save_tiny_model

require_module("trame_slicer", "needs the slicer-core and trame-slicer wheels (pip install -e '.[mrml]')")
sys.path.insert(0, str(ROOT / "LesionAI"))

import slicer  # noqa: E402
from LesionAILogic import abnormality, volumes  # noqa: E402
from LesionAILogic.abnormality_layer import ABNORMALITY_LAYER  # noqa: E402
from LesionAILogic.display import nodes_of_class  # noqa: E402
from LesionAILogic.logic import LesionAILogic  # noqa: E402
from LesionAILogic.panel.controller import PanelController  # noqa: E402
from LesionAILogic.panel.state import PanelState  # noqa: E402

from LesionAILib.cli.main import main  # noqa: E402
from LesionAILib.phantom.cases import generate_case  # noqa: E402

pytestmark = pytest.mark.mrml
VIEWS = ("Red", "Yellow", "Green")


class RecordingHost:
    def __init__(self):
        self.errors: list[str] = []

    def confirm(self, message: str) -> bool:
        return True

    def showError(self, message: str) -> None:
        self.errors.append(message)


def _poll_until_idle(panel, timeout_s: float = 240.0) -> None:
    deadline = time.monotonic() + timeout_s
    while panel.busy:
        assert time.monotonic() < deadline, "a job did not end"
        panel.poll()
        time.sleep(0.2)


@pytest.fixture(scope="module")
def one_thread():
    """One torch thread here and in the job processes: small 3D convolutions on two shared cores run far
    slower with two threads (spinning) than with one."""
    import os

    import torch

    threads, before = torch.get_num_threads(), os.environ.get("OMP_NUM_THREADS")
    torch.set_num_threads(1)
    os.environ["OMP_NUM_THREADS"] = "1"  # the jobs inherit this process's environment
    yield
    torch.set_num_threads(threads)
    if before is None:
        os.environ.pop("OMP_NUM_THREADS")
    else:
        os.environ["OMP_NUM_THREADS"] = before


@pytest.fixture(scope="module")
def session(slicer_app, phantom_cohort, tmp_path_factory, one_thread):
    root = tmp_path_factory.mktemp("abnormality-layer")
    model = root / "tiny-synthesis.safetensors"
    arguments = ["--train", str(phantom_cohort), "--out", str(model), "--steps", "40", "--batch", "2", "--width", "4"]
    assert main(["train-synthesis", *arguments, "--synthetic", "--device", "cpu"]) == 0
    scene = slicer_app.scene
    for name in VIEWS:  # the reading views' composite nodes (the application makes them with its layout)
        if not [c for c in nodes_of_class(scene, "vtkMRMLSliceCompositeNode") if c.GetLayoutName() == name]:
            scene.AddNewNodeByClass("vtkMRMLSliceCompositeNode").SetLayoutName(name)
    if not nodes_of_class(scene, "vtkMRMLCrosshairNode"):
        scene.AddNewNodeByClass("vtkMRMLCrosshairNode")
    logic = LesionAILogic(scene, slicer_app.segmentations_logic, root / "store", root / "jobs")
    detector = save_tiny_model(root / "tiny.safetensors", "tiny-untrained", seed=1)
    logic.activateModelVersion(logic.addModelFile(detector, note="abnormality layer"))
    phantom = generate_case(7, "A", 0)
    roles = ("t2w", "adc", "hbv")
    nodes = {role: logic.addVolumeFromImage(getattr(phantom, role), f"phantom {role}") for role in roles}
    host = RecordingHost()
    panel = PanelController(logic, PanelState(logic.getParameterNode()), host)
    panel.state.t2Volume, panel.state.adcVolume, panel.state.hbvVolume = (nodes[r] for r in ("t2w", "adc", "hbv"))
    panel.state.device = "cpu"
    yield {"panel": panel, "logic": logic, "host": host, "model": model, "phantom": phantom, "scene": scene}
    panel.stopAll()


def _layers(scene) -> dict:
    """Per reading view: (abnormality layer's volume id, its opacity, the foreground (heatmap) volume id)."""
    composites = {c.GetLayoutName(): c for c in nodes_of_class(scene, "vtkMRMLSliceCompositeNode")}
    return {
        name: (
            composites[name].GetNthLayerVolumeID(ABNORMALITY_LAYER),
            round(composites[name].GetNthLayerOpacity(ABNORMALITY_LAYER), 3),
            composites[name].GetForegroundVolumeID(),
        )
        for name in VIEWS
    }


def _heatmaps(logic, t2) -> dict:
    """The heatmap each reading view shows: the combined map on T2, each sequence's own on ADC and high-b."""
    maps = logic.heatmapNodes(t2)
    return {"Red": maps["combined"].GetID(), "Yellow": maps["adc"].GetID(), "Green": maps["hbv"].GetID()}


def test_01_analyze_with_abnormality_loads_the_map_on_the_t2_grid_beside_the_heatmap(session):
    panel, logic, scene = session["panel"], session["logic"], session["scene"]
    panel.state.synthesisModel = str(session["model"])
    panel.state.analyzeWithAbnormality = True
    panel.reading.analyze()
    _poll_until_idle(panel)
    assert session["host"].errors == [], session["host"].errors
    t2 = panel.state.t2Volume
    view = panel.abnormality.view()
    assert view.mapLoaded and view.status.startswith("Abnormality map (synthesis) loaded — tiny-synthesis")
    node = logic.abnormalityNode(t2)
    assert node.GetImageData().GetDimensions() == t2.GetImageData().GetDimensions()
    np.testing.assert_allclose(volumes.ijk_to_ras_of_node(node), volumes.ijk_to_ras_of_node(t2), atol=1e-6)
    written = sitk.GetArrayFromImage(sitk.ReadImage(str(logic.resultFolder(t2) / abnormality.ABNORMALITY_FILE)))
    np.testing.assert_allclose(slicer.util.arrayFromVolume(node), written, atol=1e-6)
    assert written.max() > abnormality.DEFAULT_Z_THRESHOLD  # the map shows something above its threshold
    color = node.GetScalarVolumeDisplayNode().GetColorNode()
    assert color.GetAttribute(abnormality.ABNORMALITY_COLOR_ATTRIBUTE) == "1"
    heatmaps = _heatmaps(logic, t2)  # beside the heatmaps, not instead of them
    assert _layers(scene) == {name: (node.GetID(), 0.5, heatmaps[name]) for name in VIEWS}
    # the value at a point: the map's largest voxel, asked for by its RAS position
    k, j, i = np.unravel_index(np.argmax(written), written.shape)
    ras = volumes.ijk_to_ras_of_node(t2) @ np.array([i, j, k, 1.0])
    assert logic.abnormalityAt(t2, ras[:3]) == pytest.approx(float(written.max()), rel=1e-6)
    assert logic.abnormalityAt(t2, (1e4, 0.0, 0.0)) is None


def test_02_the_checkbox_and_the_slider_show_hide_and_fade_the_layer_only(session):
    panel, scene = session["panel"], session["scene"]
    node = session["logic"].abnormalityNode(panel.state.t2Volume).GetID()
    heatmaps = _heatmaps(session["logic"], panel.state.t2Volume)
    panel.abnormality.toggle()
    assert _layers(scene) == {name: (None, 0.5, heatmaps[name]) for name in VIEWS}
    panel.state.abnormalityOpacity = 0.3
    panel.state.abnormalityVisible = True  # the checkbox, bound to the parameter node
    panel.reading.applyDisplay()  # what the widget calls on every parameter-node change
    assert _layers(scene) == {name: (node, 0.3, heatmaps[name]) for name in VIEWS}


def test_03_the_viewer_draws_the_four_panels_at_the_crosshair(session):
    panel, logic = session["panel"], session["logic"]
    cancer = next(lesion for lesion in session["phantom"].lesions if lesion.clinically_significant)
    x, y, z = cancer.center_lps_mm
    nodes_of_class(session["scene"], "vtkMRMLCrosshairNode")[0].SetCrosshairRAS(-x, -y, z)
    panel.abnormality.viewAtCursor()
    assert panel.abnormality.view().viewRunning
    _poll_until_idle(panel)
    view = panel.abnormality.view()
    assert session["host"].errors == [] and view.viewPng, view.viewStatus
    with open(view.viewPng, "rb") as png:
        assert png.read(8) == b"\x89PNG\r\n\x1a\n"
    expected = logic.abnormalityAt(panel.state.t2Volume, (-x, -y, z))
    assert view.viewStatus.startswith(f"Box at RAS ({-x:.1f}, {-y:.1f}, {z:.1f}) mm: mean |real − synthesised| T2 ")
    assert f"map z {expected:.1f} here" in view.viewStatus


def test_04_a_saved_and_reopened_scene_restores_the_layer_settings_and_the_map(session, tmp_path):
    panel, scene = session["panel"], session["scene"]
    shown = slicer.util.arrayFromVolume(session["logic"].abnormalityNode(panel.state.t2Volume)).copy()
    restored = save_and_reopen_mrb(scene, tmp_path)
    logic = LesionAILogic(restored, workFolder=tmp_path / "jobs")
    reopened = PanelController(logic, PanelState(logic.getParameterNode()), RecordingHost())
    view = reopened.abnormality.view()
    assert (view.visible, view.opacity, view.analyzeWithAbnormality) == (True, pytest.approx(0.3), True)
    assert view.modelPath == str(session["model"]) and view.modelAvailable and view.mapLoaded
    t2 = reopened.state.t2Volume
    node = logic.abnormalityNode(t2)
    np.testing.assert_allclose(volumes.ijk_to_ras_of_node(node), volumes.ijk_to_ras_of_node(t2), atol=1e-6)
    np.testing.assert_allclose(slicer.util.arrayFromVolume(node), shown, atol=1e-5)
    color = node.GetScalarVolumeDisplayNode().GetColorNode()
    assert color.GetAttribute(abnormality.ABNORMALITY_COLOR_ATTRIBUTE) == "1"

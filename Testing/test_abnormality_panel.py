"""The panel's abnormality-map decisions (Qt-free controller) against a recording stand-in for the scene logic.

What is pinned: the analysis job gets the synthesis model only when the option is on *and* the file
exists; a result with a map loads and shows it, one without drops the stale map; visibility and
opacity reach the slice views once per change; the box viewer says what is missing, starts one job
at the cursor (cancelling a stale one) and shows its PNG and differences when it ends.
"""

from __future__ import annotations

import sys
from pathlib import Path
from types import SimpleNamespace

import pytest
from conftest import ROOT, require_module

slicer = require_module("slicer", "needs the slicer-core wheel (pip install -e '.[mrml]')")
sys.path.insert(0, str(ROOT / "LesionAI"))

from LesionAILogic.abnormality import MODEL_NAME_ATTRIBUTE  # noqa: E402
from LesionAILogic.panel.controller import PanelController  # noqa: E402
from LesionAILogic.panel.state import PanelState  # noqa: E402


class Host:
    def __init__(self):
        self.errors = []

    def confirm(self, message: str) -> bool:
        return True

    def showError(self, message: str) -> None:
        self.errors.append(message)


class Gate:
    def ensure(self, host) -> bool:
        return True


class FakeJob:
    def __init__(self, work_folder: Path, context=None):
        self.work_folder, self.context = work_folder, context
        self.state = SimpleNamespace(finished=False, status="running", result=None, error="", fraction=0.0)
        self.cancelled = False

    def cancel(self, grace_s: float = 5.0) -> None:
        self.cancelled = True

    def poll(self) -> None:
        pass

    def finish(self, status: str = "finished", result: dict | None = None, error: str = "") -> None:
        self.state.finished, self.state.status, self.state.result, self.state.error = True, status, result, error


class RecordingLogic:
    """The scene logic's abnormality methods and ``startAnalysis``, recording every call."""

    def __init__(self, scene, folder: Path):
        self.scene, self.folder, self.calls = scene, folder, []
        self.maps: dict[str, object] = {}  # t2 id -> abnormality node
        self.cursor = None
        self.jobs = SimpleNamespace(removeFolder=lambda path: self.calls.append(("removeFolder", Path(path))))

    def startAnalysis(self, t2, adc, hbv, device="auto", abnormalityModel=None):
        self.calls.append(("startAnalysis", abnormalityModel))
        return FakeJob(self.folder / "analysis")

    def hasAbnormalityMap(self, folder) -> bool:
        return (Path(folder) / "abnormality.nii.gz").is_file()

    def loadAbnormalityMap(self, folder, t2):
        node = self.scene.AddNewNodeByClass("vtkMRMLScalarVolumeNode", "map")
        node.SetAttribute(MODEL_NAME_ATTRIBUTE, "tiny synthesis")
        self.maps[t2.GetID()] = node
        self.calls.append(("loadAbnormalityMap", Path(folder)))
        return node

    def removeAbnormalityMap(self, t2) -> None:
        self.maps.pop(t2.GetID(), None)
        self.calls.append(("removeAbnormalityMap", t2.GetID()))

    def abnormalityNode(self, t2):
        return self.maps.get(t2.GetID()) if t2 is not None else None

    def showAbnormality(self, t2, visible, opacity) -> bool:
        self.calls.append(("showAbnormality", visible, opacity))
        return visible and t2.GetID() in self.maps

    def abnormalityAt(self, t2, point):
        return 4.25 if t2.GetID() in self.maps else None

    def cursorPosition(self):
        return self.cursor

    def startSynthesisView(self, volumes, point, model, device="cpu"):
        folder = self.folder / f"view-{len(self.calls)}"
        folder.mkdir()
        self.calls.append(("startSynthesisView", tuple(point), model))
        return FakeJob(folder, tuple(point))

    def synthesisViewPng(self, job):
        path = job.work_folder / "synthesis-view.png"
        return path if path.is_file() else None

    def removeJobFolder(self, job) -> None:
        self.calls.append(("removeJobFolder", job.work_folder))

    def setHeatmapOpacity(self, opacity) -> None:
        self.calls.append(("setHeatmapOpacity", opacity))

    def setHeatmapThreshold(self, t2, threshold) -> None:
        self.calls.append(("setHeatmapThreshold", threshold))

    def resultSummary(self, t2):
        return None

    def candidateRows(self, t2):
        return []

    def resultFolder(self, t2):
        return None


@pytest.fixture
def panel(tmp_path):
    scene = slicer.vtkMRMLScene()
    node = scene.AddNewNodeByClass("vtkMRMLScriptedModuleNode", "LesionAI")
    logic = RecordingLogic(scene, tmp_path)
    controller = PanelController(logic, PanelState(node), Host(), gate=Gate())
    state = controller.state
    state.t2Volume, state.adcVolume, state.hbvVolume = (
        scene.AddNewNodeByClass("vtkMRMLScalarVolumeNode", role) for role in ("t2", "adc", "hbv")
    )
    return controller


def _calls(panel, name):
    return [call for call in panel.logic.calls if call[0] == name]


def test_the_analysis_gets_the_synthesis_model_only_when_asked_and_the_file_exists(panel, tmp_path):
    panel.abnormality.bundledModel = None
    model = tmp_path / "synthesis.safetensors"
    panel.state.synthesisModel = str(model)
    panel.state.analyzeWithAbnormality = True
    panel.reading.analyze()  # the option is on, but the file does not exist
    panel.jobs.clear()
    view = panel.abnormality.view()
    assert not view.modelAvailable and not view.viewEnabled
    model.write_bytes(b"model")
    panel.reading.analyze()
    panel.jobs.clear()
    panel.state.analyzeWithAbnormality = False
    panel.reading.analyze()
    assert _calls(panel, "startAnalysis") == [("startAnalysis", None), ("startAnalysis", str(model)),
                                               ("startAnalysis", None)]
    assert panel.abnormality.view().modelAvailable and panel.abnormality.view().viewEnabled


def test_a_result_with_a_map_shows_it_and_a_result_without_drops_the_stale_one(panel, tmp_path):
    with_map, without = tmp_path / "with", tmp_path / "without"
    with_map.mkdir()
    without.mkdir()
    (with_map / "abnormality.nii.gz").write_bytes(b"")
    t2 = panel.state.t2Volume
    panel.abnormality.resultLoaded(with_map, t2)
    view = panel.abnormality.view()
    assert view.mapLoaded and view.status == "Abnormality map (synthesis) loaded — tiny synthesis"
    assert _calls(panel, "showAbnormality")[-1] == ("showAbnormality", True, 0.5)
    panel.abnormality.resultLoaded(without, t2)
    assert not panel.abnormality.view().mapLoaded
    assert _calls(panel, "removeAbnormalityMap") == [("removeAbnormalityMap", t2.GetID())]
    assert panel.abnormality.view().status == ""  # the option is off: nothing was expected


def test_visibility_and_opacity_reach_the_views_once_per_change(panel, tmp_path):
    (tmp_path / "abnormality.nii.gz").write_bytes(b"")
    panel.abnormality.resultLoaded(tmp_path, panel.state.t2Volume)
    shown = len(_calls(panel, "showAbnormality"))
    panel.abnormality.toggle()
    panel.reading.applyDisplay()  # a parameter-node change elsewhere: nothing new to push
    panel.state.abnormalityOpacity = 0.3  # the slider (bound to the parameter node)
    panel.reading.applyDisplay()
    panel.abnormality.toggle()
    assert _calls(panel, "showAbnormality")[shown:] == [
        ("showAbnormality", False, 0.5),
        ("showAbnormality", False, 0.3),
        ("showAbnormality", True, 0.3),
    ]
    view = panel.abnormality.view()
    assert view.visible and view.opacity == pytest.approx(0.3)
    with pytest.raises(ValueError):
        panel.state.abnormalityOpacity = 1.5


def test_the_bundled_model_serves_until_the_user_chooses_one(panel, tmp_path):
    bundled, chosen = tmp_path / "bundled.safetensors", tmp_path / "chosen.safetensors"
    bundled.write_bytes(b"model")
    panel.abnormality.bundledModel = bundled
    panel.state.analyzeWithAbnormality = True
    assert panel.abnormality.analysisModel() == str(bundled) and panel.abnormality.view().modelPath == str(bundled)
    panel.abnormality.chooseModel(str(chosen))  # chosen but not there: no silent fall-back to the bundled one
    assert panel.abnormality.analysisModel() is None and not panel.abnormality.view().modelAvailable
    chosen.write_bytes(b"model")
    assert panel.abnormality.analysisModel() == str(chosen)


def test_the_box_viewer_says_what_is_missing_then_runs_at_the_cursor(panel, tmp_path):
    panel.abnormality.bundledModel = None
    panel.abnormality.viewAtCursor()
    assert panel.abnormality.view().viewStatus.startswith("Choose a synthesis model file first")
    model = tmp_path / "synthesis.safetensors"
    model.write_bytes(b"model")
    panel.abnormality.chooseModel(str(model))
    panel.abnormality.viewAtCursor()
    assert panel.abnormality.view().viewStatus.startswith("Place the cursor first")
    panel.logic.cursor = (-16.3, -8.9, 7.3)
    panel.abnormality.viewAtCursor()
    first = panel.job("synthesis-view")
    panel.logic.cursor = (10.0, 20.0, 30.0)
    panel.abnormality.viewAtCursor()  # moved before the first ended: that one is stale
    second = panel.job("synthesis-view")
    assert first.cancelled and second is not first and not second.cancelled
    assert [c[1] for c in _calls(panel, "startSynthesisView")] == [(-16.3, -8.9, 7.3), (10.0, 20.0, 30.0)]
    assert panel.abnormality.view().viewRunning
    (second.work_folder / "synthesis-view.png").write_bytes(b"png")
    second.finish(result={"difference": {"t2w": 0.9, "adc": 0.4, "hbv": 0.65}, "model": "tiny synthesis"})
    panel.poll()
    view = panel.abnormality.view()
    assert not view.viewRunning and view.viewPng == str(second.work_folder / "synthesis-view.png")
    assert view.viewStatus == (
        "Box at RAS (10.0, 20.0, 30.0) mm: mean |real − synthesised| T2 0.90, ADC 0.40, high-b 0.65 — tiny synthesis"
    )
    # a failed view keeps the last picture, says why, and removes its own folder
    panel.abnormality.viewAtCursor()
    third = panel.job("synthesis-view")
    third.finish("failed", error="the point lies outside the T2 image")
    panel.poll()
    view = panel.abnormality.view()
    assert view.viewPng == str(second.work_folder / "synthesis-view.png")
    assert view.viewStatus == "Cannot view the box: the point lies outside the T2 image"
    assert ("removeJobFolder", third.work_folder) in panel.logic.calls
    assert ("removeFolder", second.work_folder) not in panel.logic.calls

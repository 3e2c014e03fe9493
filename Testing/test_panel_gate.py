"""The panel's dependency gate and its torch-free side: what a user sees when installing fails, without Slicer.

The installers themselves (PyTorch extension, ``slicer.util.pip_install``) exist only in the Slicer
application; here they are stand-ins that fail the way those report failures (``CalledProcessError``
from pip, ``ImportError`` from a broken wheel, LesionAIError for a missing extension).
"""

from __future__ import annotations

import subprocess
import sys

import pytest
from conftest import ROOT, require_module

require_module("slicer", "needs the slicer-core wheel (pip install -e '.[mrml]')")
sys.path.insert(0, str(ROOT / "LesionAI"))

from LesionAILogic import dependencies  # noqa: E402
from LesionAILogic.panel.controller import DependencyGate  # noqa: E402

from LesionAILib.errors import LesionAIError  # noqa: E402

FAILED = "Installing LesionAI's Python packages failed"


class Host:
    def __init__(self, answer: bool = True):
        self.answer, self.questions, self.errors = answer, [], []

    def confirm(self, message: str) -> bool:
        self.questions.append(message)
        return self.answer

    def showError(self, message: str) -> None:
        self.errors.append(message)


def _gate(missing: list[str], torch_ready: bool, install_torch=None, install_packages=None) -> DependencyGate:
    def describe():
        return "; ".join(missing)

    def packages(confirm):
        if confirm("install?"):
            missing.clear()
        return True

    return DependencyGate(
        describe=describe,
        torchReady=lambda: torch_ready,
        installTorch=install_torch or (lambda confirm: confirm("torch?")),
        installPackages=install_packages or packages,
    )


def test_nothing_missing_asks_nothing():
    host = Host()
    assert _gate([], True).ensure(host) and host.questions == [] and host.errors == []


def test_missing_packages_are_installed_after_the_user_agrees():
    host, missing = Host(), ["missing Python packages: picai-eval>=1.4.13"]
    assert _gate(missing, True).ensure(host)
    assert host.questions == ["install?"] and host.errors == [] and missing == []


def test_declining_the_torch_install_stops_quietly():
    host = Host(answer=False)
    assert not _gate(["PyTorch is not installed"], False).ensure(host)
    assert host.questions == ["torch?"] and host.errors == []


def _raise(error):
    def install(confirm):
        raise error

    return install


@pytest.mark.parametrize(
    ("error", "expected"),
    [
        (subprocess.CalledProcessError(1, ["pip"]), FAILED + " (pip exit status 1)."),
        (ImportError("DLL load failed"), FAILED + ": ImportError: DLL load failed."),
        (
            LesionAIError("the PyTorch extension is not installed", hint="install 'PyTorch' (Extensions Manager)"),
            "LesionAI cannot install what it needs: the PyTorch extension is not installed",
        ),
    ],
)
def test_an_installer_failure_is_one_message_saying_what_to_do(error, expected):
    host = Host()
    assert not _gate(["PyTorch is not installed"], False, install_torch=_raise(error)).ensure(host)
    assert len(host.errors) == 1 and host.errors[0].startswith(expected)
    assert "restart slicer" in host.errors[0].lower() or "Extensions Manager" in host.errors[0]


def test_still_missing_after_installing_says_so():
    host = Host()
    gate = _gate(["missing Python packages: mlxtend"], True, install_packages=lambda confirm: True)
    assert not gate.ensure(host)
    assert host.errors == ["LesionAI cannot run yet: missing Python packages: mlxtend. Restart Slicer and try again."]


def test_torch_range_has_both_bounds_and_the_installed_torch_is_inside():
    assert dependencies.TORCH_REQUIREMENT == ">=2.2,<2.14"
    assert dependencies.torch_ready()
    assert {"numpy", "scipy", "SimpleITK", "pydicom", "torch"} <= set(dependencies.PROTECTED)


def test_the_panel_and_model_listing_never_import_torch(tmp_path):
    """Module set-up and listing models run in the Slicer process: torch must stay out of it."""
    code = (
        "import sys\n"
        "sys.modules['torch'] = None  # any import of torch now fails\n"
        f"sys.path[:0] = [{str(ROOT / 'LesionAI')!r}, {str(ROOT)!r}]\n"
        "import LesionAILogic.panel.controller, LesionAILogic.panel.state\n"
        "from LesionAILogic.models import SceneModels\n"
        f"rows = SceneModels({str(tmp_path / 'store')!r}).modelVersions()\n"
        "assert [row['version'] for row in rows] == ['demo'] and rows[0]['active'], rows\n"
        "print('ok')\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0 and result.stdout.strip() == "ok", result.stderr[-2000:]


class _FailingLogic:
    """A scene logic whose every call fails: as a bad study, a broken model store or a bug would."""

    def __init__(self, scene, error: Exception):
        self.scene, self.error = scene, error

    def loadStudy(self, folder, **options):
        raise self.error

    def activateModelVersion(self, version):
        raise self.error

    def resultSummary(self, t2):
        return None

    def candidateRows(self, t2):
        return []

    def modelVersions(self):
        raise self.error


@pytest.mark.parametrize(
    ("error", "message"),
    [
        (LesionAIError("no T2 series found", "/data/x", "choose it by hand"), "Cannot load the study: /data/x: no T2"),
        (RuntimeError("boom"), "Cannot load the study: unexpected RuntimeError: boom (details in the Python console)"),
    ],
)
def test_a_failing_action_is_one_message_and_the_panel_goes_on(error, message):
    import slicer
    from LesionAILogic.panel.controller import PanelController
    from LesionAILogic.panel.state import PanelState

    scene = slicer.vtkMRMLScene()
    node = scene.AddNode(slicer.vtkMRMLScriptedModuleNode())
    host = Host()
    panel = PanelController(_FailingLogic(scene, error), PanelState(node), host, gate=_gate([], True))
    panel.reading.loadStudy("/data/x")  # must not raise into the Qt callback
    panel.models.chooseModel("v2")
    assert len(host.errors) == 2 and host.errors[0].startswith(message)
    assert host.errors[1].startswith("Cannot switch the model: ")
    view = panel.view()  # still drawable
    assert view.reading.status == "" and not view.reading.analyzeEnabled and view.models.models == []
    assert view.models.unavailable == "(no model: see the message)" and len(host.errors) == 3


def test_panel_state_writes_what_slicers_parameter_node_wrapper_writes():
    import slicer
    from LesionAILogic.panel.state import PanelState

    scene = slicer.vtkMRMLScene()
    node = scene.AddNode(slicer.vtkMRMLScriptedModuleNode())
    volume = scene.AddNewNodeByClass("vtkMRMLScalarVolumeNode")
    state = PanelState(node)
    assert state.device == "auto" and state.heatmapOpacity == 0.6 and state.heatmapVisible is True
    state.heatmapOpacity, state.heatmapVisible, state.finetuneEpochs, state.t2Volume = 0.35, False, 3, volume
    assert node.GetParameter("heatmapOpacity") == "0.35" and node.GetParameter("heatmapVisible") == "False"
    assert node.GetParameter("finetuneEpochs") == "3" and node.GetNodeReferenceID("t2Volume") == volume.GetID()
    read_back = (state.heatmapOpacity, state.heatmapVisible, state.finetuneEpochs, state.t2Volume)
    assert read_back == (0.35, False, 3, volume)
    for name, value in (("heatmapOpacity", 1.5), ("finetuneEpochs", 0), ("device", "gpu"), ("finetuneEpochs", "3")):
        with pytest.raises(ValueError, match=name):
            setattr(state, name, value)
    with pytest.raises(AttributeError, match="no field 'colour'"):
        state.colour = 1

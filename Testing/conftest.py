"""Shared fixtures: where the real data lives, and cases opened once per session.

Real data is read from ``../shared/data`` relative to the project root (or ``$LESIONAI_SHARED_DATA``).
Tests that need it skip with a reason when it is absent, and fail when ``CI=true``.
"""

from __future__ import annotations

import importlib
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = Path(os.environ.get("LESIONAI_SHARED_DATA", ROOT.parent / "shared" / "data"))
PROSTATEX = SHARED_DATA / "prostatex"
FINDINGS = SHARED_DATA / "prostatex-findings"

# The ProstateX-0000 finding (data README): LPS mm, and its continuous index (i, j, k) in T2 and ADC.
FINDING_0000_LPS = (25.7457, 31.8707, -38.511)
FINDING_0000_T2_IJK = (166.8, 223.9, 8.5)
FINDING_0000_ADC_IJK = (35.7, 72.0, 8.5)
FINDING_0001_LPS = (-40.5367, 29.3207, -16.7077)


def skip_or_fail(reason: str):
    """Skip with ``reason`` on a developer's machine; fail under ``CI=true``, where nothing may be missing."""
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(f"required in CI: {reason}")
    pytest.skip(reason, allow_module_level=True)


def require(path: Path) -> Path:
    """Return ``path`` if it exists; otherwise skip (or fail under CI=true) with the reason."""
    if path.exists():
        return path
    skip_or_fail(f"shared test data not found at {path} (set LESIONAI_SHARED_DATA or check out ../shared)")


def require_module(name: str, reason: str):
    """Import and return module ``name``; skip (or fail under CI=true) with ``reason`` when it is absent."""
    try:
        return importlib.import_module(name)
    except ImportError:
        skip_or_fail(f"{reason} (cannot import {name})")


@pytest.fixture(scope="session")
def prostatex_dir() -> Path:
    return require(PROSTATEX)


@pytest.fixture(scope="session")
def findings_dir() -> Path:
    return require(FINDINGS)


@pytest.fixture(scope="session")
def case_0000(prostatex_dir):
    from LesionAILib.studies.dicom_study import open_dicom_study

    return open_dicom_study(prostatex_dir / "ProstateX-0000")


@pytest.fixture(scope="session")
def case_0001(prostatex_dir):
    from LesionAILib.studies.dicom_study import open_dicom_study

    return open_dicom_study(prostatex_dir / "ProstateX-0001")


TINY_PREPROCESS = {"shape": [8, 32, 32], "spacing": [3.0, 3.0, 3.0]}
TINY_MODEL = {
    "localizer": {"variant": "fusion", "widths": [4, 8, 8], "pools": [[1, 2, 2], [2, 2, 2]], "dropout": 0.0},
    "classifier": {"crop": [4, 16, 16], "widths": [4, 8], "hidden": 8},
}


def tiny_config(train: list[str], cache_dir: str, **overrides) -> dict:
    """A training configuration small enough to run in seconds on a CPU (for tests)."""
    config = {
        "name": "tiny-test-model",
        "seed": 3,
        "train": train,
        "cache_dir": cache_dir,
        "val_fraction": 0.34,
        "device": "cpu",
        "preprocess": TINY_PREPROCESS,
        "model": TINY_MODEL,
        "phase1": {"epochs": 3, "batch_size": 2, "crops_per_case": 1, "crop": [8, 16, 16], "patience": 10},
        "phase2": {"epochs": 2, "joint_epochs": 1, "batch_size": 4, "patience": 10},
    }
    for key, value in overrides.items():
        config[key] = {**config[key], **value} if isinstance(value, dict) and key in config else value
    return config


@pytest.fixture(scope="session")
def phantom_cohort(tmp_path_factory) -> Path:
    """Six synthetic site-A cases in the PI-CAI layout (generated once per test session)."""
    from LesionAILib.phantom.cohort import write_cohort

    folder = tmp_path_factory.mktemp("cohort-A")
    write_cohort(folder, 6, site="A", seed=11)
    return folder


@pytest.fixture(scope="session")
def tiny_model_path(phantom_cohort, tmp_path_factory) -> Path:
    """A tiny two-phase model trained in seconds on the phantom cohort (for analysis/ordering tests)."""
    from LesionAILib.training.config import TrainConfig
    from LesionAILib.training.trainer import Trainer

    folder = tmp_path_factory.mktemp("tiny-model")
    config = TrainConfig.from_dict(
        tiny_config(
            [str(phantom_cohort)],
            str(folder / "cache"),
            preprocess={"shape": [8, 48, 48], "spacing": [3.0, 2.0, 2.0]},
            phase1={"crop": [8, 32, 32]},
        )
    )
    return Trainer(config, folder / "run").run("both")


@pytest.fixture(scope="session")
def slicer_app():
    """The one ``trame_slicer.core.SlicerApp`` of the session (a real MRML scene; a second one would warn)."""
    require_module("trame_slicer", "needs the slicer-core and trame-slicer wheels (pip install -e '.[mrml]')")
    from trame_slicer.core import SlicerApp

    return SlicerApp()


def save_tiny_model(path: Path, name: str, seed: int) -> Path:
    """An untrained :data:`TINY_MODEL` detector (seeded, so its candidates are the same every run)."""
    import torch

    from LesionAILib.models.modelfile import ModelMetadata, save_model
    from LesionAILib.models.networks import LesionModel, ModelConfig
    from LesionAILib.preprocessing.pipeline import PreprocessConfig

    torch.manual_seed(seed)
    config = ModelConfig.from_dict(TINY_MODEL)
    metadata = ModelMetadata(
        name=name,
        architecture=config,
        preprocess=PreprocessConfig(shape=(16, 64, 64), spacing=(3.0, 1.5, 1.5)),
        synthetic_training_data=True,
    )
    return save_model(LesionModel(config).eval(), metadata, path)


_GL_PROBE = """
import vtk
window = vtk.vtkRenderWindow()
window.SetOffScreenRendering(1)
window.SetSize(8, 8)
window.AddRenderer(vtk.vtkRenderer())
window.Render()
print(window.GetClassName(), window.SupportsOpenGL())
"""


@pytest.fixture(scope="session")
def offscreen_gl() -> str:
    """An off-screen OpenGL window class that works here: EGL (GPU or Mesa), else OSMesa; skip if none.

    Probed in a child process, because a failing OpenGL context can abort the process.
    """
    for window in ("vtkEGLRenderWindow", "vtkOSOpenGLRenderWindow"):
        probe = subprocess.run(
            [sys.executable, "-c", _GL_PROBE],
            capture_output=True,
            text=True,
            timeout=120,
            env={**os.environ, "VTK_DEFAULT_OPENGL_WINDOW": window},
        )
        if probe.returncode == 0 and probe.stdout.split()[-2:] == [window, "1"]:
            os.environ["VTK_DEFAULT_OPENGL_WINDOW"] = window
            return window
    skip_or_fail("no off-screen OpenGL here (tried VTK's EGL and OSMesa windows): install Mesa's libEGL or libOSMesa")


@pytest.fixture(scope="module")
def one_torch_thread():
    """Torch on one thread for a module: small 3D convolutions on two shared cores run ~25× slower with two."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def save_and_reopen_mrb(scene, folder: Path):
    """Write ``scene`` to ``folder/scene.mrb`` (default storage nodes for unsaved data) and read it into a new scene."""
    import slicer

    for index in range(scene.GetNumberOfNodesByClass("vtkMRMLStorableNode")):
        node = scene.GetNthNodeByClass(index, "vtkMRMLStorableNode")
        if node.GetStorageNode() is None and node.GetSaveWithScene():
            node.AddDefaultStorageNode()
    assert scene.WriteToMRB(str(folder / "scene.mrb"))
    restored = slicer.vtkMRMLScene()
    scene.CopyRegisteredNodesToScene(restored)
    cache = slicer.vtkCacheManager()
    cache.SetRemoteCacheDirectory(str(folder / "cache"))
    io = slicer.vtkDataIOManager()
    io.SetCacheManager(cache)
    restored.SetDataIOManager(io)
    restored.SetCacheManager(cache)
    assert restored.ReadFromMRB(str(folder / "scene.mrb"))
    return restored


def write_known_result(folder: Path, case) -> dict:
    """A result folder with a heatmap blob (σ 4 mm) and one candidate at the ProstateX-0000 finding.

    The per-sequence maps are the same blob scaled (ADC 0.8, high-b 0.7), so each reading view shows heat there.
    """
    from LesionAILib.geometry import Grid
    from LesionAILib.inference.analyzer import Result
    from LesionAILib.inference.candidates import Candidate
    from LesionAILib.inference.results import write_result
    from LesionAILib.models.modelfile import ModelMetadata
    from LesionAILib.models.networks import ModelConfig
    from LesionAILib.preprocessing.pipeline import PreprocessConfig

    grid = Grid.from_image(case.t2w)
    index = np.indices(grid.shape).reshape(3, -1).T
    points = grid.index_to_lps(index).reshape(*grid.shape, 3)
    distance = np.linalg.norm(points - np.asarray(FINDING_0000_LPS), axis=-1)
    heat = np.exp(-0.5 * (distance / 4.0) ** 2).astype(np.float32)
    labels = (heat > 0.4).astype(np.uint8)
    x, y, z = FINDING_0000_LPS
    candidate = Candidate(
        candidate_id=1,
        peak=float(heat.max()),
        voxels=int(labels.sum()),
        volume_ml=float(labels.sum() * grid.voxel_volume_ml()),
        center_index=(8.5, 223.9, 166.8),
        center_lps_mm=(x, y, z),
        center_ras_mm=(-x, -y, z),
        probability=0.9,
        grade_group=3,
        zone="PZ",
        score_model="known blob",
    )
    result = Result(
        case_id="known",
        model_name="known blob (test)",
        model_notice="a test heatmap, not a model output",
        heatmap=grid.image_from_array(heat),
        sequence_heatmaps={
            role: grid.image_from_array(heat * np.float32(scale))
            for role, scale in (("t2w", 1.0), ("adc", 0.8), ("hbv", 0.7))
        },
        detection_map=grid.image_from_array(labels * np.float32(0.9)),
        candidate_map=grid.image_from_array(labels),
        candidates=[candidate],
        case_score=0.9,
        device="cpu",
    )
    grid_config = PreprocessConfig(shape=(16, 64, 64), spacing=(3.0, 1.5, 1.5))
    model = ModelMetadata("known blob", ModelConfig.from_dict(TINY_MODEL), grid_config)
    write_result(result, case, folder, model, figures=False)
    return candidate.to_dict()

"""``lesionai demo`` end to end with the bundled demo model: it finds the demo case's csPCa lesion.

The demo case (phantom site A, seed 7, index 0) holds a grade-group-4 cancer and a benign BPH
nodule. The ground truth comes from the phantom generator (not from the analysis under test); the
analysis is read back from the files the command wrote, as a user would.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk

from LesionAILib.geometry import Grid
from LesionAILib.models.modelfile import DEMO_NOTICE
from LesionAILib.phantom.cases import generate_case

DEMO_SEED = 7


def _lesionai() -> list[str]:
    script = Path(sys.executable).with_name("lesionai")
    return [str(script)] if script.exists() else [shutil.which("lesionai") or "lesionai"]


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    out = tmp_path_factory.mktemp("demo") / "demo-output"
    completed = subprocess.run([*_lesionai(), "demo", "--out", str(out)], capture_output=True, text=True, timeout=600)
    assert completed.returncode == 0, completed.stderr
    return out, completed.stdout, json.loads((out / "candidates.json").read_text())


def _lesion_at(phantom, lps) -> int:
    """Lesion id of the T2 voxel nearest to an LPS point (0: no lesion)."""
    grid = Grid.from_image(phantom.t2w)
    index = np.round(grid.lps_to_index(lps)).astype(int)
    instances = sitk.GetArrayFromImage(phantom.lesion_instances)
    if not all(0 <= i < n for i, n in zip(index, instances.shape, strict=True)):
        return 0
    return int(instances[tuple(index)])


def test_demo_case_is_the_documented_one():
    phantom = generate_case(seed=DEMO_SEED, site="A", index=0)
    kinds = sorted((lesion.kind, lesion.grade_group) for lesion in phantom.lesions)
    assert kinds == [("bph_nodule", 0), ("cancer", 4)]


def test_demo_finds_the_cspca_lesion_above_the_mimic(demo):
    out, stdout, candidates = demo
    phantom = generate_case(seed=DEMO_SEED, site="A", index=0)
    cancer = next(lesion for lesion in phantom.lesions if lesion.clinically_significant)
    mimic = next(lesion for lesion in phantom.lesions if not lesion.clinically_significant)
    assert len(candidates) >= 1
    on_lesion = {c["id"]: _lesion_at(phantom, c["center_lps_mm"]) for c in candidates}
    hits = [c for c in candidates if on_lesion[c["id"]] == cancer.lesion_id]
    assert hits, f"no candidate centre inside the GG4 cancer; candidates at lesions {on_lesion}"
    best_hit = max(c["probability"] for c in hits)
    assert candidates[0]["probability"] == best_hit  # the most probable candidate is the cancer
    on_mimic = [c["probability"] for c in candidates if on_lesion[c["id"]] == mimic.lesion_id]
    assert all(p < best_hit for p in on_mimic)
    assert best_hit > 0.5
    assert f"({DEMO_NOTICE})" in stdout  # the score line names the model and says it is not for clinical use


def test_demo_outputs_are_in_the_t2_geometry(demo):
    out, _, candidates = demo
    phantom_t2 = sitk.ReadImage(str(next((out / "phantom-case" / "images").glob("*/*_t2w.mha"))))
    for name in ("heatmap.nii.gz", "detection_map.nii.gz", "candidates.nii.gz"):
        image = sitk.ReadImage(str(out / name))
        assert image.GetSize() == phantom_t2.GetSize()
        assert np.allclose(image.GetOrigin(), phantom_t2.GetOrigin(), atol=1e-4)
        assert np.allclose(image.GetDirection(), phantom_t2.GetDirection(), atol=1e-6)
    labels = sitk.GetArrayFromImage(sitk.ReadImage(str(out / "candidates.nii.gz")))
    assert sorted(set(np.unique(labels).tolist()) - {0}) == [c["id"] for c in candidates]

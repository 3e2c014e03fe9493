"""The abnormality map (synthesis) in a real MRML scene (slicer-core): on the T2 grid, own colours, never an input."""

from __future__ import annotations

import json
import sys

import numpy as np
import pytest
import SimpleITK as sitk
from conftest import ROOT, require_module

require_module("trame_slicer", "needs the slicer-core and trame-slicer wheels (pip install -e '.[mrml]')")

sys.path.insert(0, str(ROOT / "LesionAI"))

import slicer  # noqa: E402
from LesionAILogic import abnormality, volumes  # noqa: E402
from LesionAILogic.roles import OUTPUT_ATTRIBUTE  # noqa: E402

from LesionAILib.errors import LesionAIError  # noqa: E402
from LesionAILib.phantom.cases import generate_case  # noqa: E402

pytestmark = pytest.mark.mrml


@pytest.fixture(scope="module")
def t2_node(slicer_app):
    t2 = generate_case(7, "A", 0).t2w
    node = slicer_app.scene.AddNewNodeByClass("vtkMRMLScalarVolumeNode", "phantom T2")
    volumes.set_node_from_image(node, t2)
    return node, t2


def _result_folder(folder, image):
    folder.mkdir()
    sitk.WriteImage(image, str(folder / abnormality.ABNORMALITY_FILE))
    summary = {"model": {"name": "tiny synthesis", "notice": "demo model — synthetic training data"}}
    (folder / abnormality.ABNORMALITY_SUMMARY).write_text(json.dumps(summary))
    return folder


def test_abnormality_node_has_the_t2_geometry_the_values_and_is_marked_as_output(t2_node, tmp_path):
    node, t2 = t2_node
    values = np.zeros(sitk.GetArrayViewFromImage(t2).shape, np.float32)
    values[5, 100:110, 120:130] = 7.5  # a known blob of z = 7.5
    image = sitk.GetImageFromArray(values)
    image.CopyInformation(t2)
    loaded = abnormality.load_abnormality(_result_folder(tmp_path / "result", image), node)
    np.testing.assert_allclose(volumes.ijk_to_ras_of_node(loaded), volumes.ijk_to_ras_of_node(node), atol=1e-6)
    np.testing.assert_array_equal(slicer.util.arrayFromVolume(loaded), values)
    assert loaded.GetAttribute(OUTPUT_ATTRIBUTE) == "abnormality"
    assert loaded.GetAttribute(abnormality.MODEL_NAME_ATTRIBUTE) == "tiny synthesis"
    display = loaded.GetScalarVolumeDisplayNode()
    assert display.GetColorNode().GetAttribute(abnormality.ABNORMALITY_COLOR_ATTRIBUTE) == "1"
    assert display.GetLowerThreshold() == pytest.approx(abnormality.DEFAULT_Z_THRESHOLD)
    again = abnormality.load_abnormality(tmp_path / "result", node)
    assert again is loaded  # the same node is updated, not a second one


def test_an_abnormality_map_of_another_grid_or_folder_is_refused(t2_node, tmp_path):
    node, t2 = t2_node
    shifted = sitk.Image(t2.GetSize(), sitk.sitkFloat32)
    shifted.CopyInformation(t2)
    shifted.SetOrigin(tuple(np.asarray(t2.GetOrigin()) + 5.0))
    with pytest.raises(LesionAIError, match="not on the grid"):
        abnormality.load_abnormality(_result_folder(tmp_path / "shifted", shifted), node)
    with pytest.raises(LesionAIError, match="no abnormality map"):
        abnormality.load_abnormality(tmp_path, node)

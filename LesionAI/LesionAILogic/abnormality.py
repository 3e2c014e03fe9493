"""The abnormality map (synthesis) of a result folder as a volume node on its T2: own colour map, never an input.

``load_abnormality(folder, t2_node)`` reads ``abnormality.nii.gz`` (written by ``lesionai analyze
--abnormality``; combined robust z against normal tissue, 0 outside the analysed region), checks
that it lies exactly on the T2 node's geometry, and puts it into a scalar volume node that the T2
references as :data:`ABNORMALITY_REFERENCE`. The node carries ``LesionAI.Output`` = ``abnormality``
(so the role rules never offer it as an input), the model's name and notice, and shows with the
module's abnormality colours: transparent below z = :data:`DEFAULT_Z_THRESHOLD`, window 0–10.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import SimpleITK as sitk
import slicer
import vtk

from LesionAILib.errors import LesionAIError

from . import volumes
from .roles import OUTPUT_ATTRIBUTE

ABNORMALITY_FILE = "abnormality.nii.gz"
ABNORMALITY_SUMMARY = "abnormality.json"
ABNORMALITY_REFERENCE = "LesionAI.Abnormality"
ABNORMALITY_COLOR_NODE_NAME = "LesionAI Abnormality"
ABNORMALITY_COLOR_ATTRIBUTE = "LesionAI.AbnormalityColorMap"
MODEL_NAME_ATTRIBUTE = "LesionAI.ModelName"
MODEL_NOTICE_ATTRIBUTE = "LesionAI.ModelNotice"
DEFAULT_Z_THRESHOLD = 3.0
# robust z: 0 (typical normal tissue) dark blue, 3 cyan, 6 green-yellow, 10 and above bright yellow
ABNORMALITY_STOPS = ((0.0, (0.05, 0.05, 0.35)), (3.0, (0.0, 0.7, 0.9)), (6.0, (0.6, 0.9, 0.2)), (10.0, (1.0, 1.0, 0.3)))


def abnormality_color_node(scene):
    """The abnormality colour node (``vtkMRMLProceduralColorNode`` on z 0–10), created once per scene."""
    for index in range(scene.GetNumberOfNodesByClass("vtkMRMLProceduralColorNode")):
        node = scene.GetNthNodeByClass(index, "vtkMRMLProceduralColorNode")
        if node.GetAttribute(ABNORMALITY_COLOR_ATTRIBUTE):
            return node
    node = slicer.vtkMRMLProceduralColorNode()
    node.SetName(ABNORMALITY_COLOR_NODE_NAME)
    node.SetAttribute(ABNORMALITY_COLOR_ATTRIBUTE, "1")
    node.SetAttribute("Category", "LesionAI")
    node.SetDescription("LesionAI abnormality by synthesis: robust z of real vs synthesised content")
    transfer = vtk.vtkColorTransferFunction()
    transfer.SetColorSpaceToRGB()
    for value, rgb in ABNORMALITY_STOPS:
        transfer.AddRGBPoint(value, *rgb)
    node.SetAndObserveColorTransferFunction(transfer)
    scene.AddNode(node)
    return node


def style_abnormality(node, threshold: float = DEFAULT_Z_THRESHOLD) -> None:
    """Abnormality colours, window 0–10 (z), values below ``threshold`` transparent in slice views."""
    node.CreateDefaultDisplayNodes()
    display = node.GetScalarVolumeDisplayNode()
    display.SetAndObserveColorNodeID(abnormality_color_node(node.GetScene()).GetID())
    display.SetAutoWindowLevel(False)
    display.SetWindowLevelMinMax(0.0, 10.0)
    display.SetInterpolate(True)
    display.SetAutoThreshold(False)
    display.SetThreshold(float(threshold), 1.0e6)
    display.SetApplyThreshold(True)


def _summary(folder: Path) -> dict:
    """``abnormality.json`` (model name and notice), ``{}`` when absent."""
    path = folder / ABNORMALITY_SUMMARY
    if not path.is_file():
        return {}
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise LesionAIError(f"{ABNORMALITY_SUMMARY} cannot be read ({type(error).__name__})", folder) from None


def load_abnormality(folder: str | Path, t2_node):
    """The abnormality map of result ``folder`` as a scalar volume node on ``t2_node`` (created or updated).

    Raises:
        LesionAIError: one line naming the folder when the map is missing, unreadable or not on the T2's grid.
    """
    folder = Path(folder)
    path = folder / ABNORMALITY_FILE
    if not path.is_file():
        raise LesionAIError(
            "no abnormality map in this result folder", folder, "analyze with `lesionai analyze --abnormality`"
        )
    try:
        image = sitk.ReadImage(str(path), sitk.sitkFloat32)
    except RuntimeError:
        raise LesionAIError(f"{ABNORMALITY_FILE} cannot be read (damaged or truncated)", folder) from None
    dimensions = t2_node.GetImageData().GetDimensions()
    on_grid = tuple(image.GetSize()) == tuple(dimensions) and np.allclose(
        volumes.ijk_to_ras_of_image(image), volumes.ijk_to_ras_of_node(t2_node), atol=1e-3
    )
    if not on_grid:
        raise LesionAIError(
            f"{ABNORMALITY_FILE} is not on the grid of T2 volume '{t2_node.GetName()}'",
            folder,
            "load the result on the T2 it was computed on",
        )
    summary = _summary(folder)
    scene = t2_node.GetScene()
    node = t2_node.GetNodeReference(ABNORMALITY_REFERENCE)
    if node is None or node.GetScene() is not scene:
        name = scene.GenerateUniqueName(f"{t2_node.GetName()} LesionAI abnormality (synthesis)")
        node = scene.AddNewNodeByClass("vtkMRMLScalarVolumeNode", name)
        t2_node.SetNodeReferenceID(ABNORMALITY_REFERENCE, node.GetID())
    fresh = node.GetDisplayNode() is None
    volumes.set_node_from_array(node, sitk.GetArrayFromImage(image).astype(np.float32), t2_node)
    if fresh:
        style_abnormality(node)
    model = summary.get("model", {})
    node.SetAttribute(OUTPUT_ATTRIBUTE, "abnormality")
    node.SetAttribute(MODEL_NAME_ATTRIBUTE, str(model.get("name", "")))
    node.SetAttribute(MODEL_NOTICE_ATTRIBUTE, str(model.get("notice", "")))
    return node

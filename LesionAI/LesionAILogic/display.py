"""How results look in slice views: the heat colour node, heatmap window/threshold, layers, jumping to a point.

Everything here works on a bare MRML scene (slicer-core) as in the Slicer application: the heat
colour map is a procedural colour node the module creates itself (Slicer's file-based colour maps
such as Inferno are not available outside the application), and slice views are driven through
their MRML nodes (``vtkMRMLSliceCompositeNode``, ``vtkMRMLSliceNode``), never through Qt widgets.
"""

from __future__ import annotations

from collections.abc import Sequence

import slicer
import vtk

from LesionAILib.palette import HEAT_STOPS

HEAT_COLOR_NODE_NAME = "LesionAI Heat"
HEAT_COLOR_ATTRIBUTE = "LesionAI.HeatColorMap"
DEFAULT_THRESHOLD = 0.2
DEFAULT_OPACITY = 0.6


def heat_color_node(scene):
    """The module's heat colour node (``vtkMRMLProceduralColorNode`` on [0, 1]), created once per scene."""
    for index in range(scene.GetNumberOfNodesByClass("vtkMRMLProceduralColorNode")):
        node = scene.GetNthNodeByClass(index, "vtkMRMLProceduralColorNode")
        if node.GetAttribute(HEAT_COLOR_ATTRIBUTE):
            return node
    node = slicer.vtkMRMLProceduralColorNode()
    node.SetName(HEAT_COLOR_NODE_NAME)
    node.SetAttribute(HEAT_COLOR_ATTRIBUTE, "1")
    node.SetAttribute("Category", "LesionAI")
    node.SetDescription("LesionAI lesion heat map: 0 (no lesion) to 1 (lesion)")
    transfer = vtk.vtkColorTransferFunction()
    transfer.SetColorSpaceToRGB()
    for value, rgb in HEAT_STOPS:
        transfer.AddRGBPoint(value, *rgb)
    node.SetAndObserveColorTransferFunction(transfer)
    scene.AddNode(node)
    return node


def style_heatmap(heatmap_node, threshold: float = DEFAULT_THRESHOLD) -> None:
    """Heat colours, window 0–1, values below ``threshold`` fully transparent in slice views."""
    heatmap_node.CreateDefaultDisplayNodes()
    display = heatmap_node.GetScalarVolumeDisplayNode()
    display.SetAndObserveColorNodeID(heat_color_node(heatmap_node.GetScene()).GetID())
    display.SetAutoWindowLevel(False)
    display.SetWindowLevelMinMax(0.0, 1.0)
    display.SetInterpolate(True)
    set_heatmap_threshold(heatmap_node, threshold)


def set_heatmap_threshold(heatmap_node, threshold: float) -> None:
    """Hide heatmap values below ``threshold`` (0–1) in slice views."""
    display = heatmap_node.GetScalarVolumeDisplayNode()
    display.SetAutoThreshold(False)
    display.SetThreshold(float(threshold), 1.0e6)
    display.SetApplyThreshold(True)


def show_in_slice_views(scene, background_node, foreground_node=None, opacity: float = DEFAULT_OPACITY) -> None:
    """T2 as background and the heatmap as foreground (with ``opacity``) in every slice view of ``scene``."""
    for composite in nodes_of_class(scene, "vtkMRMLSliceCompositeNode"):
        composite.SetBackgroundVolumeID(background_node.GetID() if background_node else None)
        composite.SetForegroundVolumeID(foreground_node.GetID() if foreground_node else None)
        composite.SetForegroundOpacity(float(opacity))


def set_foreground_opacity(scene, opacity: float) -> None:
    """Heatmap (foreground layer) opacity 0–1 in every slice view."""
    for composite in nodes_of_class(scene, "vtkMRMLSliceCompositeNode"):
        composite.SetForegroundOpacity(float(opacity))


def jump_slices_to(scene, point_ras: Sequence[float]) -> None:
    """Move every slice view through ``point_ras`` (RAS mm) and centre the point in it."""
    r, a, s = (float(v) for v in point_ras)
    for slice_node in nodes_of_class(scene, "vtkMRMLSliceNode"):
        slice_node.JumpSliceByCentering(r, a, s)


def outline_segmentation(segmentation_node, highlighted_segment_id: str | None = None) -> None:
    """Show a segmentation as outlines in slice views; ``highlighted_segment_id`` thick and lightly filled."""
    segmentation_node.CreateDefaultDisplayNodes()
    display = segmentation_node.GetDisplayNode()
    display.SetVisibility2DFill(True)
    display.SetVisibility2DOutline(True)
    display.SetSliceIntersectionThickness(3 if highlighted_segment_id else 2)
    segmentation = segmentation_node.GetSegmentation()
    for index in range(segmentation.GetNumberOfSegments()):
        segment_id = segmentation.GetNthSegmentID(index)
        highlighted = segment_id == highlighted_segment_id
        display.SetSegmentOpacity2DFill(segment_id, 0.25 if highlighted else 0.0)
        display.SetSegmentOpacity2DOutline(segment_id, 1.0 if highlighted or not highlighted_segment_id else 0.45)


def nodes_of_class(scene, class_name: str) -> list:
    """Every node of ``class_name`` (and its subclasses) in ``scene``."""
    return [scene.GetNthNodeByClass(i, class_name) for i in range(scene.GetNumberOfNodesByClass(class_name))]

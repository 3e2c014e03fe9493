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
    """Move every slice view through ``point_ras`` (RAS mm), centre the point in it and put the crosshair there."""
    r, a, s = (float(v) for v in point_ras)
    for slice_node in nodes_of_class(scene, "vtkMRMLSliceNode"):
        slice_node.JumpSliceByCentering(r, a, s)
    for crosshair in nodes_of_class(scene, "vtkMRMLCrosshairNode"):  # the cursor on the point in every view
        crosshair.SetCrosshairRAS(r, a, s)


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


# ---------------------------------------------------------------------------- the reading layout
# Three slice views side by side, as radiologists read prostate mpMRI: T2, ADC and high-b, each with
# its own heatmap (the combined map on T2), in the T2's acquisition plane, linked.
READING_VIEWS = (("Red", "t2w"), ("Yellow", "adc"), ("Green", "hbv"))
READING_LAYOUT_ID = 5101  # a custom layout id (Slicer's own layouts are below 100; extensions use 500+)
READING_LAYOUT_XML = (
    '<layout type="horizontal">'
    + "".join(
        f'<item><view class="vtkMRMLSliceNode" singletontag="{name}">'
        f'<property name="orientation" action="default">Axial</property>'
        f'<property name="viewlabel" action="default">{label}</property>'
        f'<property name="viewcolor" action="default">{color}</property>'
        "</view></item>"
        for name, label, color in (("Red", "T2", "#F34A33"), ("Yellow", "ADC", "#EDD54C"), ("Green", "b", "#6EB04B"))
    )
    + "</layout>"
)


def use_reading_layout(scene) -> bool:
    """Switch the application's layout to :data:`READING_LAYOUT_XML` (False where the scene has no layout node,
    e.g. on slicer-core, whose views the caller makes itself)."""
    layouts = nodes_of_class(scene, "vtkMRMLLayoutNode")
    if not layouts:
        return False
    layout = layouts[0]
    if not layout.IsLayoutDescription(READING_LAYOUT_ID):
        layout.AddLayoutDescription(READING_LAYOUT_ID, READING_LAYOUT_XML)
    layout.SetViewArrangement(READING_LAYOUT_ID)
    return True


def show_reading(scene, volumes: dict, heatmaps: dict, opacity: float) -> None:
    """Each reading view (by layout name) shows its sequence with its heatmap; other slice views show the T2.

    Args:
        volumes: ``{"t2w", "adc", "hbv"}`` volume nodes; heatmaps: the same roles (and ``"combined"``) to heatmap
            nodes or ``None``. The T2 view shows the combined map, the others their own sequence's map.
        opacity: heatmap (foreground) opacity 0–1; 0 hides it.
    """
    roles = dict(READING_VIEWS)
    for composite in nodes_of_class(scene, "vtkMRMLSliceCompositeNode"):
        role = roles.get(composite.GetLayoutName(), "t2w")
        background = volumes.get(role) or volumes.get("t2w")
        foreground = heatmaps.get("combined") if role == "t2w" else (heatmaps.get(role) or heatmaps.get("combined"))
        composite.SetBackgroundVolumeID(background.GetID() if background else None)
        composite.SetForegroundVolumeID(foreground.GetID() if foreground else None)
        if composite.GetForegroundOpacity() != float(opacity):
            composite.SetForegroundOpacity(float(opacity))
        composite.SetLinkedControl(True)


def align_slice_views(scene, volume_node) -> None:
    """Every slice view in ``volume_node``'s acquisition plane, centred on it, showing all of it."""
    bounds = [0.0] * 6
    volume_node.GetRASBounds(bounds)
    centre = [(bounds[2 * axis] + bounds[2 * axis + 1]) / 2 for axis in range(3)]
    extent = max(bounds[1] - bounds[0], bounds[3] - bounds[2]) * 1.05
    for slice_node in nodes_of_class(scene, "vtkMRMLSliceNode"):
        slice_node.RotateToVolumePlane(volume_node)
        width, height, _ = slice_node.GetDimensions()
        thickness = slice_node.GetFieldOfView()[2]
        slice_node.SetFieldOfView(extent, extent * height / max(width, 1), thickness)
        slice_node.JumpSliceByCentering(*centre)
    crosshairs = nodes_of_class(scene, "vtkMRMLCrosshairNode")
    if crosshairs:  # the cursor shown in every view (Shift+move places it, views follow)
        crosshairs[0].SetCrosshairMode(crosshairs[0].ShowBasic)


def distance_to_slice_plane(slice_node, point_ras: Sequence[float]) -> float:
    """Distance (mm) from a RAS point to the plane a slice view shows."""
    matrix = slice_node.GetSliceToRAS()
    normal = [matrix.GetElement(row, 2) for row in range(3)]
    origin = [matrix.GetElement(row, 3) for row in range(3)]
    length = sum(n * n for n in normal) ** 0.5
    return abs(sum((float(p) - o) * n for p, o, n in zip(point_ras, origin, normal, strict=True))) / length

"""Headless slice-view screenshots: render a scene's slice view to pixels/PNG without the Slicer application.

For scripts and tests on ``slicer-core`` + ``trame-slicer`` (``SlicerApp``), where there is no
layout manager: :func:`create_slice_view` makes an off-screen slice view (VTK's EGL window on
Linux when ``VTK_DEFAULT_OPENGL_WINDOW=vtkEGLRenderWindow``, else VTK's default off-screen
window), and :func:`render` draws whatever the scene shows in it — background/foreground
volumes from its slice composite node, segmentations as outlines — into an ``[H, W, 3]`` uint8
array (row 0 at the top), optionally saved as PNG. Inside the Slicer application use the
ScreenCapture module instead.

>>> view = create_slice_view(app, "Axial", size=(640, 640))   # before showing results
>>> logic.showResult(t2, heatmap)                              # sets every slice composite node
>>> pixels = render(view, center_ras=(-25.7, -31.9, -38.5), field_of_view_mm=90, png_path="view.png")
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import vtk
from vtk.util.numpy_support import vtk_to_numpy


def create_slice_view(app, orientation: str = "Axial", size: Sequence[int] = (512, 512), name: str | None = None):
    """An off-screen trame-slicer slice view of ``app.scene`` (``app`` is a ``trame_slicer.core.SlicerApp``)."""
    from trame_slicer.views import DirectViewFactory, ViewLayoutDefinition

    manager = app.view_manager
    if not getattr(app, "_lesionai_offscreen_factory", False):
        manager.register_factory(DirectViewFactory(do_render_offscreen=True))
        app._lesionai_offscreen_factory = True
    definition = ViewLayoutDefinition.slice_view(orientation, label=name or f"LesionAI {orientation}")
    view = manager.create_view(definition)
    view.render_window().SetOffScreenRendering(True)
    view.render_window().SetSize(int(size[0]), int(size[1]))
    return view


def slice_node_of(view):
    """The ``vtkMRMLSliceNode`` a slice view shows."""
    return view.get_view_node()


def render(
    view,
    center_ras: Sequence[float] | None = None,
    field_of_view_mm: float | None = None,
    png_path: str | Path | None = None,
) -> np.ndarray:
    """Render the view and return its pixels ``[H, W, 3]`` uint8 (row 0 at the top).

    Args:
        center_ras: a point (RAS mm) to centre the view on; the slice passes through it.
        field_of_view_mm: width of the view in mm (the height follows the window's aspect).
        png_path: also write the image here.
    """
    view.fit_view_to_content()
    slice_node = slice_node_of(view)
    width, height = view.render_window().GetSize()
    if field_of_view_mm:
        thickness = slice_node.GetFieldOfView()[2]
        slice_node.SetFieldOfView(field_of_view_mm, field_of_view_mm * height / width, thickness)
    if center_ras is not None:
        slice_node.JumpSliceByCentering(*[float(v) for v in center_ras])
    view.render()
    grabber = vtk.vtkWindowToImageFilter()
    grabber.SetInput(view.render_window())
    grabber.SetInputBufferTypeToRGB()
    grabber.ReadFrontBufferOff()
    grabber.Update()
    image = grabber.GetOutput()
    if png_path is not None:
        Path(png_path).parent.mkdir(parents=True, exist_ok=True)
        writer = vtk.vtkPNGWriter()
        writer.SetFileName(str(png_path))
        writer.SetInputData(image)
        writer.Write()
    columns, rows, _ = image.GetDimensions()
    pixels = vtk_to_numpy(image.GetPointData().GetScalars()).reshape(rows, columns, -1)[..., :3]
    return np.ascontiguousarray(pixels[::-1])


def ras_to_pixel(view, point_ras: Sequence[float]) -> tuple[int, int]:
    """``(row, column)`` of a RAS point (mm) in the image :func:`render` returns (row 0 at the top)."""
    xy_to_ras = vtk.vtkMatrix4x4()
    xy_to_ras.DeepCopy(slice_node_of(view).GetXYToRAS())
    xy_to_ras.Invert()
    x, y, _, _ = xy_to_ras.MultiplyPoint([*[float(v) for v in point_ras], 1.0])
    height = view.render_window().GetSize()[1]
    return int(round(height - 1 - y)), int(round(x))

"""SimpleITK images ↔ Slicer volume nodes with exact geometry: the one place LPS meets RAS in the module.

SimpleITK (and LesionAILib) describe a 3D image in **LPS** millimetres: voxel index ``(i, j, k)``
lies at ``origin + D · diag(spacing) · (i, j, k)``. A Slicer volume node describes the same voxels in
**RAS** with its 4×4 ``IJKToRAS`` matrix. With ``F = diag(-1, -1, 1)``
(:data:`LesionAILib.geometry.LPS_TO_RAS`)::

    IJKToRAS[:3, :3] = F · D · diag(spacing)        IJKToRAS[:3, 3] = F · origin

Arrays are ``[K, J, I]`` = ``[Z, Y, X]`` on both sides (``slicer.util.arrayFromVolume`` and
``sitk.GetArrayFromImage`` agree), so voxel values are copied as they are.

A node under a linear parent transform is read in world coordinates (the transform is applied to
its geometry); a non-linear transform must be hardened first.
"""

from __future__ import annotations

import numpy as np
import SimpleITK as sitk
import slicer
import vtk

from LesionAILib.errors import LesionAIError
from LesionAILib.geometry import LPS_TO_RAS

_F4 = np.diag([*np.diag(LPS_TO_RAS), 1.0])  # homogeneous LPS ↔ RAS flip (its own inverse)


def _to_vtk_matrix(matrix: np.ndarray) -> vtk.vtkMatrix4x4:
    result = vtk.vtkMatrix4x4()
    for row in range(4):
        for column in range(4):
            result.SetElement(row, column, float(matrix[row, column]))
    return result


def _from_vtk_matrix(matrix: vtk.vtkMatrix4x4) -> np.ndarray:
    return np.array([[matrix.GetElement(row, column) for column in range(4)] for row in range(4)])


def ijk_to_ras_of_image(image: sitk.Image) -> np.ndarray:
    """The 4×4 IJKToRAS matrix (mm, RAS) of a 3D SimpleITK image (geometry in LPS)."""
    if image.GetDimension() != 3:
        raise LesionAIError(f"expected a 3D image, got a {image.GetDimension()}D one")
    direction = np.asarray(image.GetDirection(), dtype=np.float64).reshape(3, 3)
    ijk_to_lps = np.eye(4)
    ijk_to_lps[:3, :3] = direction @ np.diag(image.GetSpacing())
    ijk_to_lps[:3, 3] = image.GetOrigin()
    return _F4 @ ijk_to_lps


def ijk_to_ras_of_node(node) -> np.ndarray:
    """The 4×4 IJKToRAS matrix of a volume node in world RAS (its linear parent transforms applied)."""
    matrix = vtk.vtkMatrix4x4()
    node.GetIJKToRASMatrix(matrix)
    ijk_to_ras = _from_vtk_matrix(matrix)
    transform_node = node.GetParentTransformNode()
    if transform_node is not None:
        if not transform_node.IsTransformToWorldLinear():
            raise LesionAIError(
                f"volume '{node.GetName()}' is under a non-linear transform",
                hint="harden the transform (Data module) before using it with LesionAI",
            )
        to_world = vtk.vtkMatrix4x4()
        transform_node.GetMatrixTransformToWorld(to_world)
        ijk_to_ras = _from_vtk_matrix(to_world) @ ijk_to_ras
    return ijk_to_ras


def set_node_from_image(node, image: sitk.Image) -> None:
    """Put a 3D scalar SimpleITK image (voxels and geometry) into a scalar or label-map volume node."""
    if image.GetNumberOfComponentsPerPixel() != 1:
        raise LesionAIError(f"expected a scalar image, got {image.GetNumberOfComponentsPerPixel()} components")
    matrix = ijk_to_ras_of_image(image)
    slicer.util.updateVolumeFromArray(node, sitk.GetArrayFromImage(image))
    node.SetIJKToRASMatrix(_to_vtk_matrix(matrix))


def set_node_from_array(node, array: np.ndarray, like) -> None:
    """Put a ``[K, J, I]`` array into ``node`` on exactly the geometry (and parent transform) of volume ``like``."""
    dimensions = like.GetImageData().GetDimensions()
    if tuple(reversed(array.shape)) != tuple(dimensions):
        raise LesionAIError(
            f"array of shape {array.shape} does not fit volume '{like.GetName()}' ({dimensions} I, J, K)"
        )
    matrix = vtk.vtkMatrix4x4()
    like.GetIJKToRASMatrix(matrix)
    slicer.util.updateVolumeFromArray(node, np.ascontiguousarray(array))
    node.SetIJKToRASMatrix(matrix)
    node.SetAndObserveTransformNodeID(like.GetTransformNodeID())


def image_from_node(node) -> sitk.Image:
    """A SimpleITK image (LPS geometry, world coordinates) holding a copy of a scalar volume node's voxels."""
    if node is None:
        raise LesionAIError("no volume selected")
    image_data = node.GetImageData()
    if image_data is None:
        raise LesionAIError(f"volume '{node.GetName()}' has no voxels")
    if image_data.GetNumberOfScalarComponents() != 1:
        raise LesionAIError(
            f"volume '{node.GetName()}' has {image_data.GetNumberOfScalarComponents()} components; "
            "LesionAI needs scalar (grey-level) volumes"
        )
    array = np.array(slicer.util.arrayFromVolume(node), copy=True)
    ijk_to_lps = _F4 @ ijk_to_ras_of_node(node)
    scaled = ijk_to_lps[:3, :3]
    spacing = np.linalg.norm(scaled, axis=0)
    image = sitk.GetImageFromArray(array)
    image.SetSpacing(spacing.tolist())
    image.SetOrigin(ijk_to_lps[:3, 3].tolist())
    image.SetDirection((scaled / spacing[None, :]).ravel().tolist())
    return image

"""Voxel grids in patient space, and the one place where LPS meets RAS.

Conventions (shared by the whole engine):

* Physical points are **LPS millimetres** (DICOM/ITK patient coordinates), ordered (x, y, z).
* Arrays are **[Z, Y, X]** (numpy/SimpleITK order); a voxel index in array order is (k, j, i).
* A :class:`Grid` is the geometry of such an array: ``shape`` and ``spacing`` in array order
  (Z, Y, X), ``origin`` the LPS position of voxel [0, 0, 0]'s centre, ``direction`` ITK's 3×3
  direction matrix whose columns are the LPS unit vectors of the i (x), j (y) and k (z) index axes.

  ``lps = origin + direction @ (spacing_xyz * (i, j, k))``

* RAS (3D Slicer's world) exists only at the Slicer boundary: ``ras = F @ lps`` with
  ``F = diag(-1, -1, 1)`` (:func:`lps_to_ras`, :func:`ras_to_lps`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import SimpleITK as sitk

LPS_TO_RAS = np.diag([-1.0, -1.0, 1.0])


def lps_to_ras(points_lps: np.ndarray | Sequence[float]) -> np.ndarray:
    """Convert LPS mm to RAS mm. Accepts a point (3,) or points [..., 3]."""
    return np.asarray(points_lps, dtype=np.float64) * np.array([-1.0, -1.0, 1.0])


def ras_to_lps(points_ras: np.ndarray | Sequence[float]) -> np.ndarray:
    """Convert RAS mm to LPS mm. Accepts a point (3,) or points [..., 3]."""
    return np.asarray(points_ras, dtype=np.float64) * np.array([-1.0, -1.0, 1.0])


@dataclass(frozen=True)
class Grid:
    """Geometry of a [Z, Y, X] array in LPS patient space.

    Attributes:
        shape: voxels along (Z, Y, X).
        spacing: voxel size in mm along (Z, Y, X).
        origin: LPS mm (x, y, z) of the centre of voxel [0, 0, 0].
        direction: 3×3 ITK direction matrix; column c is the LPS unit vector of index axis
            c, with c = 0, 1, 2 for i (X), j (Y), k (Z).
    """

    shape: tuple[int, int, int]
    spacing: tuple[float, float, float]
    origin: tuple[float, float, float]
    direction: tuple[tuple[float, float, float], ...]

    def __post_init__(self):
        object.__setattr__(self, "shape", tuple(int(s) for s in self.shape))
        object.__setattr__(self, "spacing", tuple(float(s) for s in self.spacing))
        object.__setattr__(self, "origin", tuple(float(s) for s in self.origin))
        matrix = np.asarray(self.direction, dtype=np.float64).reshape(3, 3)
        object.__setattr__(self, "direction", tuple(tuple(float(v) for v in row) for row in matrix))
        if len(self.shape) != 3 or min(self.shape) < 1:
            raise ValueError(f"Grid shape must be three positive sizes (Z, Y, X), got {self.shape}")
        if len(self.spacing) != 3 or min(self.spacing) <= 0:
            raise ValueError(f"Grid spacing must be three positive mm values (Z, Y, X), got {self.spacing}")

    # ------------------------------------------------------------------ construction
    @classmethod
    def from_image(cls, image: sitk.Image) -> Grid:
        """The grid of a 3D SimpleITK image (its array is ``GetArrayFromImage(image)``)."""
        if image.GetDimension() != 3:
            raise ValueError(f"expected a 3D image, got {image.GetDimension()}D")
        size = image.GetSize()
        spacing = image.GetSpacing()
        return cls(
            shape=(size[2], size[1], size[0]),
            spacing=(spacing[2], spacing[1], spacing[0]),
            origin=image.GetOrigin(),
            direction=np.asarray(image.GetDirection()).reshape(3, 3),
        )

    @classmethod
    def from_dict(cls, data: dict) -> Grid:
        """Inverse of :meth:`to_dict`."""
        return cls(tuple(data["shape"]), tuple(data["spacing"]), tuple(data["origin"]), data["direction"])

    def to_dict(self) -> dict:
        """JSON-serialisable description (shape/spacing Z, Y, X; origin LPS mm; direction ITK)."""
        return {
            "shape": list(self.shape),
            "spacing": list(self.spacing),
            "origin": list(self.origin),
            "direction": [list(row) for row in self.direction],
        }

    def apply_to(self, image: sitk.Image) -> sitk.Image:
        """Set this grid's origin, spacing and direction on ``image`` (sizes must agree)."""
        if tuple(reversed(image.GetSize())) != self.shape:
            raise ValueError(f"image size {image.GetSize()} does not match grid shape {self.shape} (Z, Y, X)")
        image.SetOrigin(self.origin)
        image.SetSpacing(self.spacing_xyz)
        image.SetDirection(self.direction_matrix.ravel().tolist())
        return image

    def image_from_array(self, array: np.ndarray) -> sitk.Image:
        """A SimpleITK image holding ``array`` ([Z, Y, X]) on this grid."""
        return self.apply_to(sitk.GetImageFromArray(np.ascontiguousarray(array)))

    def reference_image(self) -> sitk.Image:
        """An empty uint8 image on this grid, for SimpleITK's resampling reference."""
        return self.apply_to(sitk.Image([int(s) for s in reversed(self.shape)], sitk.sitkUInt8))

    # ------------------------------------------------------------------ derived geometry
    @property
    def spacing_xyz(self) -> tuple[float, float, float]:
        return self.spacing[2], self.spacing[1], self.spacing[0]

    @property
    def size_xyz(self) -> tuple[int, int, int]:
        return self.shape[2], self.shape[1], self.shape[0]

    @property
    def direction_matrix(self) -> np.ndarray:
        return np.asarray(self.direction, dtype=np.float64)

    def index_to_lps_affine(self) -> np.ndarray:
        """4×4 matrix mapping homogeneous array indices (k, j, i, 1) to LPS (x, y, z, 1) in mm."""
        affine = np.eye(4)
        scaled = self.direction_matrix * np.asarray(self.spacing_xyz)[None, :]  # columns i, j, k
        affine[:3, :3] = scaled[:, ::-1]  # columns reordered to k, j, i
        affine[:3, 3] = self.origin
        return affine

    def index_to_lps(self, index_zyx: np.ndarray | Sequence[float]) -> np.ndarray:
        """Continuous array index (k, j, i) [..., 3] → LPS mm (x, y, z) [..., 3]."""
        index = np.asarray(index_zyx, dtype=np.float64)
        affine = self.index_to_lps_affine()
        return index @ affine[:3, :3].T + affine[:3, 3]

    def lps_to_index(self, points_lps: np.ndarray | Sequence[float]) -> np.ndarray:
        """LPS mm (x, y, z) [..., 3] → continuous array index (k, j, i) [..., 3]."""
        points = np.asarray(points_lps, dtype=np.float64)
        inverse = np.linalg.inv(self.index_to_lps_affine())
        return points @ inverse[:3, :3].T + inverse[:3, 3]

    @property
    def center_lps(self) -> np.ndarray:
        """LPS mm of the geometric centre of the voxel block."""
        return self.index_to_lps((np.asarray(self.shape) - 1) / 2.0)

    def contains_index(self, index_zyx: np.ndarray, margin: float = 0.5) -> np.ndarray:
        """Whether continuous indices [..., 3] lie within the voxel block (± ``margin`` voxels)."""
        index = np.asarray(index_zyx, dtype=np.float64)
        upper = np.asarray(self.shape) - 1 + margin
        return np.all((index >= -margin) & (index <= upper), axis=-1)

    def voxel_volume_ml(self) -> float:
        """Volume of one voxel in millilitres (cm³)."""
        return float(np.prod(self.spacing)) / 1000.0

    def same_as(self, other: Grid, tolerance_mm: float = 1e-3) -> bool:
        """Same shape and geometry, with positions agreeing within ``tolerance_mm``."""
        if self.shape != other.shape:
            return False
        corners = np.array(
            [[k, j, i] for k in (0, self.shape[0] - 1) for j in (0, self.shape[1] - 1) for i in (0, self.shape[2] - 1)],
            dtype=np.float64,
        )
        return bool(np.max(np.abs(self.index_to_lps(corners) - other.index_to_lps(corners))) <= tolerance_mm)

    def centred_on(self, center_lps: Sequence[float]) -> Grid:
        """The same grid translated so its centre is at ``center_lps`` (mm)."""
        shift = np.asarray(center_lps, dtype=np.float64) - self.center_lps
        return Grid(self.shape, self.spacing, tuple(np.asarray(self.origin) + shift), self.direction)


def aligned_grid(
    reference: Grid,
    shape: Sequence[int],
    spacing: Sequence[float],
    center_lps: Sequence[float] | None = None,
    snap: bool = True,
) -> Grid:
    """A grid in ``reference``'s frame (same direction cosines) with a new shape and spacing.

    Args:
        reference: the frame to align with (usually the T2 series).
        shape: voxels (Z, Y, X), e.g. (20, 256, 256).
        spacing: mm (Z, Y, X), e.g. (3.0, 0.5, 0.5).
        center_lps: LPS mm of the new grid's centre; ``None`` centres it on ``reference``.
        snap: shift the grid by less than half a reference voxel so its first voxel centre falls
            on a reference voxel centre. Along axes where the spacings are equal every voxel then
            coincides with a reference voxel, so nothing is interpolated between 3 mm slices.
    """
    grid = Grid(tuple(shape), tuple(spacing), (0.0, 0.0, 0.0), reference.direction)
    grid = grid.centred_on(reference.center_lps if center_lps is None else center_lps)
    if not snap:
        return grid
    index = reference.lps_to_index(grid.origin)
    shift = reference.index_to_lps(np.round(index)) - reference.index_to_lps(index)
    return Grid(grid.shape, grid.spacing, tuple(np.asarray(grid.origin) + shift), grid.direction)

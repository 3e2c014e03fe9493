"""The TAPS model input: the T2 resampled to 0.8 × 0.8 × 3 mm on RAS-ordered axes, z-scored over non-zero voxels.

Facts of the released model's preprocessing (``lavlab-taps`` 1.1.2, MONAI ``Orientationd("RAS")``,
``Spacingd((0.8, 0.8, 3.0), bilinear)``, ``NormalizeIntensityd(nonzero=True)``,
``CropForegroundd(margin=5)``), expressed in the engine's LPS conventions:

* **Axes.** Each T2 index axis is assigned (greedily, in i, j, k order, largest component first)
  to the patient axis it is closest to and turned to point towards R, A and S; the model grid's
  index axes (i, j, k) are those three, keeping the T2's direction cosines (an oblique T2 stays
  oblique; nothing is rotated).
* **Lattice.** 0.8 mm along R and A, 3.0 mm along S; the first voxel centre is the T2 voxel centre
  that is first along the turned axes, and each axis has ``round(extent / spacing) + 1`` voxels
  (extent between the outermost T2 voxel centres), so along S the slices coincide with the T2's.
* **Intensities.** Trilinear resampling in physical space (SimpleITK), then ``(x - mean) / std``
  over the non-zero voxels (population std); zero voxels stay zero.
* **Foreground box.** The bounding box of voxels above the mean (z > 0), grown by 5 voxels on
  every side and not clipped to the grid (outside is zero), is where the model's windows go.

The network sees arrays ordered ``[R, A, S]``; here arrays are ``[S, A, R]`` = ``[Z, Y, X]`` of the
model grid like every engine array, and :mod:`LesionAILib.gland.segmentation` transposes at the network.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import SimpleITK as sitk

from LesionAILib.geometry import Grid

SPACING_ZYX_MM = (3.0, 0.8, 0.8)  # S, A, R
FOREGROUND_MARGIN = 5  # voxels
_TOWARDS_RAS_IN_LPS = np.array([[-1.0, 0.0, 0.0], [0.0, -1.0, 0.0], [0.0, 0.0, 1.0]])  # R, A, S as LPS vectors


@dataclass(frozen=True)
class GlandInput:
    """The T2 on the model grid.

    Attributes:
        grid: the model grid (LPS mm; index axes towards R, A, S; spacing Z, Y, X = 3.0, 0.8, 0.8 mm).
        image: ``[S, A, R]`` float32 z-scored T2 on ``grid``.
        foreground_start, foreground_stop: the foreground box ``[start, stop)`` per array axis (Z, Y, X),
            may extend beyond the grid.
    """

    grid: Grid
    image: np.ndarray
    foreground_start: tuple[int, int, int]
    foreground_stop: tuple[int, int, int]


def model_grid(t2_grid: Grid) -> Grid:
    """The TAPS model grid of a T2 grid (see module docstring)."""
    direction = t2_grid.direction_matrix  # columns: LPS vectors of the T2's i, j, k axes
    size_xyz, spacing_xyz = np.asarray(t2_grid.size_xyz), np.asarray(t2_grid.spacing_xyz)
    remaining = [0, 1, 2]  # patient axes R, A, S not taken yet
    axis_of_patient, sign_of_patient = {}, {}
    for index_axis in range(3):
        towards = _TOWARDS_RAS_IN_LPS @ direction[:, index_axis]  # components along R, A, S
        patient = max(remaining, key=lambda p: abs(towards[p]))
        remaining.remove(patient)
        axis_of_patient[patient], sign_of_patient[patient] = index_axis, 1.0 if towards[patient] >= 0 else -1.0
    first_index = np.zeros(3)
    columns, size, spacing = [], [], []
    new_spacing_xyz = SPACING_ZYX_MM[::-1]
    for patient in range(3):
        axis, sign = axis_of_patient[patient], sign_of_patient[patient]
        columns.append(sign * direction[:, axis])
        first_index[axis] = 0 if sign > 0 else size_xyz[axis] - 1
        extent = (size_xyz[axis] - 1) * spacing_xyz[axis]
        size.append(int(np.round(extent / new_spacing_xyz[patient])) + 1)
        spacing.append(new_spacing_xyz[patient])
    origin = t2_grid.index_to_lps(first_index[::-1])
    return Grid(tuple(size[::-1]), tuple(spacing[::-1]), tuple(origin), np.stack(columns, axis=1))


def zscore_nonzero(image: np.ndarray) -> np.ndarray:
    """``(x - mean) / std`` over the non-zero voxels (population std; 1 when it is 0); zeros stay zero."""
    result = np.zeros(image.shape, np.float32)
    inside = image != 0
    if not inside.any():
        return result
    values = image[inside].astype(np.float64)
    std = float(values.std()) or 1.0
    result[inside] = ((values - values.mean()) / std).astype(np.float32)
    return result


def foreground_box(image: np.ndarray, margin: int = FOREGROUND_MARGIN) -> tuple[tuple[int, ...], tuple[int, ...]]:
    """``[start, stop)`` per axis of the voxels ``> 0``, grown by ``margin`` (not clipped); the whole array if none."""
    positive = np.argwhere(image > 0)
    if positive.size == 0:
        return (0, 0, 0), tuple(image.shape)
    return tuple(int(v) - margin for v in positive.min(0)), tuple(int(v) + margin + 1 for v in positive.max(0))


def gland_input(t2: sitk.Image) -> GlandInput:
    """Resample a T2 image (any orientation, LPS geometry) onto its model grid and normalise it."""
    grid = model_grid(Grid.from_image(t2))
    resampler = sitk.ResampleImageFilter()
    resampler.SetReferenceImage(grid.reference_image())
    resampler.SetInterpolator(sitk.sitkLinear)
    resampler.SetDefaultPixelValue(0.0)
    resampler.SetOutputPixelType(sitk.sitkFloat32)
    resampled = sitk.GetArrayFromImage(resampler.Execute(sitk.Cast(t2, sitk.sitkFloat32)))
    image = zscore_nonzero(resampled)
    start, stop = foreground_box(image)
    return GlandInput(grid, image, start, stop)

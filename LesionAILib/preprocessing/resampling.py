"""Resample volumes between grids in physical (LPS) space, with torch or SimpleITK.

Both paths compute the same thing: for every target voxel centre, the LPS position, the source's
continuous index at that position, and a sample there: trilinear or cubic B-spline (images, the
order chosen in :class:`~LesionAILib.preprocessing.pipeline.PreprocessConfig`) or nearest (label
maps). Directions are honoured, so an oblique T2 frame and an axial DWI frame meet exactly.
The torch path follows ITK's conventions so the two agree: a position counts as inside the
source when its continuous index lies in [-0.5, n - 0.5) on every axis (the voxel block plus
half a voxel, clamped to the edge value by ITK's linear interpolator, mirrored by its B-spline
one), outside it the value is ``default``.

* :func:`resample_sitk` — SimpleITK's multi-threaded C++ resampler; the fastest path on a CPU.
* :func:`lattice_steps` / :func:`sample_on_lattice` — when every target voxel centre is a source
  voxel centre (the T2 under its own aligned model grid), every interpolator returns the samples
  themselves: array slicing gives the same values without interpolating.
* :func:`resample_torch` — ``torch.nn.functional.grid_sample`` on an affine sampling grid built
  from the two geometries (B-spline: :mod:`LesionAILib.preprocessing.bspline`); the path for CUDA
  (and identical code on CPU).
"""

from __future__ import annotations

import numpy as np
import SimpleITK as sitk
import torch
import torch.nn.functional as F

from LesionAILib.devices import resolve_device
from LesionAILib.geometry import Grid
from LesionAILib.preprocessing.bspline import bspline_coefficients, sample_bspline, source_indices

# "linear": trilinear; "bspline": cubic B-spline (interpolating, ITK's sitkBSpline); "nearest": labels
INTERPOLATION_MODES = ("linear", "bspline", "nearest")
_SITK_INTERPOLATORS = {"linear": sitk.sitkLinear, "bspline": sitk.sitkBSpline, "nearest": sitk.sitkNearestNeighbor}


def _index_affine_xyz(grid: Grid) -> np.ndarray:
    """4×4: homogeneous (i, j, k, 1) index in x-y-z order → LPS (x, y, z, 1)."""
    affine = np.eye(4)
    affine[:3, :3] = grid.direction_matrix * np.asarray(grid.spacing_xyz)[None, :]
    affine[:3, 3] = grid.origin
    return affine


def _normalisation(size_xyz: tuple[int, int, int]) -> np.ndarray:
    """4×4: index (i, j, k) → grid_sample's normalised coordinate (align_corners=False)."""
    matrix = np.eye(4)
    for axis, n in enumerate(size_xyz):
        matrix[axis, axis] = 2.0 / n
        matrix[axis, 3] = 1.0 / n - 1.0
    return matrix


def source_index_affine(source: Grid, target: Grid) -> np.ndarray:
    """4×4 (float64): target index (i, j, k, 1) → source continuous index (i, j, k, 1)."""
    return np.linalg.inv(_index_affine_xyz(source)) @ _index_affine_xyz(target)


def sampling_theta(source: Grid, target: Grid) -> np.ndarray:
    """3×4 matrix for ``F.affine_grid`` (align_corners=False) resampling ``source`` onto ``target``."""
    theta = (
        _normalisation(source.size_xyz)
        @ source_index_affine(source, target)
        @ np.linalg.inv(_normalisation(target.size_xyz))
    )
    return theta[:3]


def field_of_view(source: Grid, target: Grid, device: str | torch.device = "cpu") -> torch.Tensor:
    """[Z, Y, X] bool on ``target``: voxels whose centre lies inside ``source`` (ITK's rule).

    On a CPU SimpleITK evaluates the rule (nearest-neighbour resampling of an all-ones image); on
    CUDA it is computed from the affine map, which is linear in the target index.
    """
    device = resolve_device(device)
    if device.type == "cpu":
        ones = source.apply_to(sitk.Image([int(s) for s in source.size_xyz], sitk.sitkUInt8) + 1)
        inside = sitk.Resample(ones, target.reference_image(), sitk.Transform(), sitk.sitkNearestNeighbor, 0.0)
        return torch.from_numpy(sitk.GetArrayFromImage(inside).astype(bool))
    affine = torch.as_tensor(source_index_affine(source, target), dtype=torch.float32, device=device)
    k, j, i = (torch.arange(n, device=device, dtype=torch.float32) for n in target.shape)
    inside = torch.ones(target.shape, dtype=torch.bool, device=device)
    for axis, n in enumerate(source.size_xyz):
        row = affine[axis]
        value = row[0] * i[None, None, :] + row[1] * j[None, :, None] + row[2] * k[:, None, None] + row[3]
        inside &= (value >= -0.5) & (value < n - 0.5)
    return inside


def resample_torch(
    volume: torch.Tensor,
    source: Grid,
    target: Grid,
    mode: str = "linear",
    default: float = 0.0,
) -> torch.Tensor:
    """Resample ``volume`` from ``source`` onto ``target`` with ``grid_sample``.

    Args:
        volume: [Z, Y, X] or [C, Z, Y, X] tensor on ``source`` (any device; float or integer).
        source, target: grids (LPS mm).
        mode: ``"linear"`` (trilinear), ``"bspline"`` (cubic B-spline, computed in float64) or
            ``"nearest"`` (label maps).
        default: value outside the source's field of view.

    Returns:
        float32 tensor [Z, Y, X] or [C, Z, Y, X] on ``target``, on ``volume``'s device.
    """
    if mode not in INTERPOLATION_MODES:
        raise ValueError(f"mode must be one of {INTERPOLATION_MODES}, got {mode!r}")
    squeeze = volume.dim() == 3
    data = volume[None] if squeeze else volume
    if tuple(data.shape[1:]) != source.shape:
        raise ValueError(f"volume shape {tuple(data.shape[1:])} does not match source grid {source.shape}")
    if mode == "bspline":
        index = source_indices(source_index_affine(source, target), target.shape, data.device)
        sampled = sample_bspline(bspline_coefficients(data), index).to(torch.float32)
    else:
        data = data[None].to(torch.float32)  # [1, C, Z, Y, X]
        theta = torch.as_tensor(sampling_theta(source, target), dtype=torch.float32, device=data.device)
        size = (1, data.shape[1], *target.shape)
        coordinates = F.affine_grid(theta[None], list(size), align_corners=False)
        sampled = F.grid_sample(
            data,
            coordinates,
            mode="bilinear" if mode == "linear" else "nearest",
            padding_mode="border",
            align_corners=False,
        )[0]
    inside = field_of_view(source, target, data.device)
    sampled = torch.where(inside[None], sampled, torch.as_tensor(default, dtype=sampled.dtype, device=sampled.device))
    return sampled[0] if squeeze else sampled


# How far (in source voxels, anywhere on the target grid) a target voxel centre may sit from a source
# voxel centre for :func:`lattice_steps` to treat the two as coinciding. An interpolator evaluated
# that close to a sample returns the sample to within this fraction of the local contrast.
LATTICE_TOLERANCE = 1e-5


def lattice_steps(
    source: Grid, target: Grid, tolerance: float = LATTICE_TOLERANCE
) -> tuple[tuple[int, int], ...] | None:
    """Whether every target voxel centre is a source voxel centre; if so, where and how far apart.

    True when the two grids share their axes (no rotation or flip between them), the target
    spacing is a whole multiple of the source spacing on every axis, and the target origin lies on
    a source voxel centre — e.g. LesionAI's T2-aligned model grid (:func:`~LesionAILib.geometry.aligned_grid`
    with ``snap=True``) over the T2 it was aligned to, at the T2's own spacing or a multiple of it.
    Then any interpolating resampler (trilinear, cubic B-spline, nearest) returns the source samples
    themselves, and :func:`sample_on_lattice` gives that result by array slicing.

    Returns:
        per array axis (Z, Y, X): ``(start, step)``, the source index of target index 0 and the source
        index step per target voxel (``step`` ≥ 1); or None when some target voxel centre lies more
        than ``tolerance`` source voxels off the source lattice.
    """
    affine = source_index_affine(source, target)  # x, y, z order
    linear, offset = affine[:3, :3], affine[:3, 3]
    steps, starts = np.rint(np.diag(linear)), np.rint(offset)
    if np.any(steps < 1):
        return None
    last = np.asarray(target.size_xyz, dtype=np.float64) - 1
    off_diagonal = np.abs(linear - np.diag(np.diag(linear)))
    # the continuous index is affine in the target index, so its largest distance from the lattice
    # point start + step · index is bounded by the corner sum below
    deviation = np.abs(offset - starts) + np.abs(np.diag(linear) - steps) * last + off_diagonal @ last
    if np.any(deviation > tolerance):
        return None
    return tuple((int(starts[axis]), int(steps[axis])) for axis in (2, 1, 0))


def sample_on_lattice(
    array: np.ndarray,
    steps: tuple[tuple[int, int], ...],
    shape: tuple[int, int, int],
    default: float = 0.0,
    out: np.ndarray | None = None,
) -> np.ndarray:
    """Resample ``array`` [Z, Y, X] (any real dtype) onto a grid that lies on its lattice, by slicing.

    Args:
        array: the source voxels, [Z, Y, X].
        steps: :func:`lattice_steps` of the source and target grids.
        shape: the target grid's [Z, Y, X] shape.
        default: the value of target voxels whose centre is not a source voxel (outside the source:
            ITK's inside rule, continuous index in [-0.5, n - 0.5), keeps exactly the lattice points
            0 … n - 1).
        out: float32 [Z, Y, X] of ``shape`` to write into (default a new array).

    Returns:
        float32 [Z, Y, X]: what SimpleITK's resampler returns at any interpolation order, up to
        :data:`LATTICE_TOLERANCE` of the local contrast.
    """
    out = np.empty(shape, np.float32) if out is None else out
    target_slices, source_slices = [], []
    for (start, step), n_target, n_source in zip(steps, shape, array.shape, strict=True):
        first = max(0, -(start // step))  # the first target index whose source index is ≥ 0
        stop = max(first, min(n_target, (n_source - 1 - start) // step + 1))  # … and ≤ n_source - 1
        if stop == first:
            out.fill(default)
            return out
        target_slices.append(slice(first, stop))
        source_slices.append(slice(start + step * first, start + step * (stop - 1) + 1, step))
    inner = tuple(target_slices)
    # the default around the copied block: for each axis, the slabs before and after it
    for axis, block in enumerate(target_slices):
        head = tuple(target_slices[:axis]) + (slice(0, block.start),)
        tail = tuple(target_slices[:axis]) + (slice(block.stop, None),)
        out[head] = default
        out[tail] = default
    np.copyto(out[inner], array[tuple(source_slices)], casting="unsafe")
    return out


def resample_sitk_image(image: sitk.Image, target: Grid, mode: str = "linear", default: float = 0.0) -> sitk.Image:
    """Resample a SimpleITK image onto ``target`` in one pass (SimpleITK, multi-threaded C++): a float32 image.

    ``mode`` ``"bspline"`` is ITK's cubic B-spline (prefilter, then the 4 × 4 × 4 taps, mirror boundary).
    """
    if mode not in INTERPOLATION_MODES:
        raise ValueError(f"mode must be one of {INTERPOLATION_MODES}, got {mode!r}")
    # the output geometry set directly (a reference image would allocate a volume only to be read)
    resampler = sitk.ResampleImageFilter()
    resampler.SetSize([int(n) for n in target.size_xyz])
    resampler.SetOutputOrigin(target.origin)
    resampler.SetOutputSpacing(target.spacing_xyz)
    resampler.SetOutputDirection(target.direction_matrix.ravel().tolist())
    resampler.SetInterpolator(_SITK_INTERPOLATORS[mode])
    resampler.SetDefaultPixelValue(float(default))
    resampler.SetOutputPixelType(sitk.sitkFloat32)
    return resampler.Execute(image)


def resample_sitk_into(
    image: sitk.Image, target: Grid, mode: str, out: np.ndarray
) -> tuple[np.ndarray, sitk.Image | None]:
    """``image`` on ``target`` with NaN outside, the way preprocessing's CPU path takes it.

    When ``target`` lies on the image's lattice (:func:`lattice_steps`) the samples are copied into
    ``out`` (float32 [Z, Y, X] of ``target.shape``) and ``out`` is returned; otherwise one SimpleITK
    pass (:func:`resample_sitk_image`) and a read-only view of its buffer, ``out`` untouched.

    Returns:
        ``(values, keep)``: float32 [Z, Y, X] values, NaN where the image does not cover the voxel,
        and the SimpleITK image that owns them (None when they are ``out``); keep it referenced
        while ``values`` is used.
    """
    steps = lattice_steps(Grid.from_image(image), target)
    if steps is not None:
        return sample_on_lattice(sitk.GetArrayViewFromImage(image), steps, target.shape, np.nan, out), None
    resampled = resample_sitk_image(image, target, mode, default=float("nan"))
    return sitk.GetArrayViewFromImage(resampled), resampled


def resample_sitk(image: sitk.Image, target: Grid, mode: str = "linear", default: float = 0.0) -> np.ndarray:
    """:func:`resample_sitk_image` as a float32 array [Z, Y, X] on ``target``."""
    return sitk.GetArrayFromImage(resample_sitk_image(image, target, mode, default))


def resample_image_with_fov(
    image: sitk.Image,
    target: Grid,
    mode: str = "linear",
    device: str | torch.device = "auto",
    backend: str = "auto",
) -> tuple[torch.Tensor, torch.Tensor]:
    """Resample a SimpleITK image onto ``target``; also say which voxels the image covers.

    ``backend="auto"`` takes SimpleITK when the device is a CPU (fastest there) and torch on
    CUDA; ``"torch"`` or ``"sitk"`` force one. Both give the same values (tested to 1e-3).

    Returns:
        ``(values, inside)``: float32 [Z, Y, X] (0 outside the image) and bool [Z, Y, X], on ``device``.
    """
    device = resolve_device(device)
    if backend == "auto":
        backend = "sitk" if device.type == "cpu" else "torch"
    if backend == "sitk":
        # NaN marks "outside" in the same pass (ITK's inside rule), so no second resampling is needed.
        values = resample_sitk(image, target, mode, default=float("nan"))
        inside = ~np.isnan(values)
        values[~inside] = 0.0
        return torch.from_numpy(values).to(device), torch.from_numpy(inside).to(device)
    if backend != "torch":
        raise ValueError(f"backend must be 'auto', 'torch' or 'sitk', got {backend!r}")
    array = sitk.GetArrayFromImage(image)
    if array.dtype in (np.uint16, np.uint32):
        array = array.astype(np.float32)  # torch lacks unsigned arithmetic on some devices
    volume = torch.as_tensor(np.ascontiguousarray(array), device=device)
    source = Grid.from_image(image)
    return resample_torch(volume, source, target, mode), field_of_view(source, target, device)

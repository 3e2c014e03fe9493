"""Cubic B-spline interpolation in torch, computing what ITK's ``BSplineInterpolateImageFunction`` (order 3) does.

Two steps, both separable along the array axes:

1. **Prefilter** (:func:`prefilter_matrix`, :func:`bspline_coefficients`): the interpolating
   spline's coefficients, from the recursive filter of Unser (1993) with the single pole
   ``z = √3 − 2``: gain ``(1 − z)(1 − 1/z) = 6``, a causal pass ``c[n] += z · c[n − 1]`` and an
   anti-causal pass ``c[n] = z · (c[n + 1] − c[n])``, with ITK's whole-sample mirror boundary
   and ITK's initial values (causal sum truncated where ``|z|ⁿ`` < 10⁻¹⁰, else the exact mirrored
   sum). The filter is linear, so along an axis of ``n`` voxels it is an ``n × n`` matrix: it is
   built once per length by running the recursion on the identity (float64), then applied as one
   matrix product per axis (what a GPU does fastest).
2. **Evaluation** (:func:`sample_bspline`): the tricubic B-spline weights at each sample point's
   continuous source index, over the 4 × 4 × 4 coefficients around it, mirrored at the borders
   like ITK. The 64 products are computed as 8 trilinear fetches from ``grid_sample``: along an
   axis ``w0·c[f−1] + w1·c[f] = (w0 + w1) · lerp(c[f−1], c[f], w1 / (w0 + w1))`` (all weights are
   positive, each pair sums to at least 1/6), so a trilinear sample at a shifted position carries
   8 of the taps.

Everything runs in float64 so the result matches SimpleITK's ``sitkBSpline`` (double precision)
to float32 rounding (tested). Shapes: volumes [C, Z, Y, X]; indices in (i, j, k) = (X, Y, Z) order
like :func:`~LesionAILib.preprocessing.resampling.source_index_affine`.
"""

from __future__ import annotations

import math
from functools import lru_cache

import numpy as np
import torch
import torch.nn.functional as F

POLE = math.sqrt(3.0) - 2.0
# ITK's BSplineDecompositionImageFilter tolerance: the causal initial sum stops where |z|^n < 1e-10
_TOLERANCE = 1e-10
# taps reach 2 voxels beyond the continuous index's floor on either side
_PAD = 2


def _recursive_prefilter(data: np.ndarray) -> np.ndarray:
    """Run ITK's cubic B-spline decomposition along axis 0 of ``data`` [n, m] (float64, in place)."""
    n, z = data.shape[0], POLE
    if n == 1:
        return data
    data *= (1.0 - z) * (1.0 - 1.0 / z)
    horizon = math.ceil(math.log(_TOLERANCE) / math.log(abs(z)))
    if horizon < n:
        powers = z ** np.arange(horizon)
        data[0] = powers @ data[:horizon]
    else:  # the exact sum over the mirrored signal
        zn, z2n, inverse = z, z ** (n - 1), 1.0 / z
        total = data[0] + z2n * data[n - 1]
        z2n *= z2n * inverse
        for index in range(1, n - 1):
            total += (zn + z2n) * data[index]
            zn *= z
            z2n *= inverse
        data[0] = total / (1.0 - zn * zn)
    for index in range(1, n):
        data[index] += z * data[index - 1]
    data[n - 1] = (z / (z * z - 1.0)) * (z * data[n - 2] + data[n - 1])
    for index in range(n - 2, -1, -1):
        data[index] = z * (data[index + 1] - data[index])
    return data


@lru_cache(maxsize=32)
def prefilter_matrix(n: int) -> np.ndarray:
    """[n, n] float64 ``P`` with ``coefficients = P @ samples`` along an axis of ``n`` voxels (read-only)."""
    matrix = _recursive_prefilter(np.eye(n))
    matrix.flags.writeable = False
    return matrix


def bspline_coefficients(volume: torch.Tensor) -> torch.Tensor:
    """[C, Z, Y, X] samples → [C, Z, Y, X] float64 cubic B-spline coefficients (same device)."""
    coefficients = volume.to(torch.float64)
    for axis in (1, 2, 3):
        matrix = torch.tensor(prefilter_matrix(coefficients.shape[axis]), device=volume.device)
        coefficients = torch.movedim(torch.tensordot(matrix, coefficients, dims=([1], [axis])), 0, axis)
    return coefficients


def mirror_index(index: torch.Tensor, n: int) -> torch.Tensor:
    """ITK's mirror boundary for integer indices: −k → k, n − 1 + k → n − 1 − k (period 2n − 2)."""
    if n == 1:
        return torch.zeros_like(index)
    period = 2 * n - 2
    folded = torch.remainder(index, period)
    return torch.where(folded >= n, period - folded, folded)


def _mirror_pad(coefficients: torch.Tensor) -> torch.Tensor:
    """[C, Z, Y, X] → [C, Z + 4, Y + 4, X + 4]: ``_PAD`` mirrored voxels added on each side of each axis."""
    padded = coefficients
    for axis in (1, 2, 3):
        n = coefficients.shape[axis]
        taps = torch.arange(-_PAD, n + _PAD, device=coefficients.device)
        padded = padded.index_select(axis, mirror_index(taps, n))
    return padded


def _axis_fetches(index: torch.Tensor, size: int) -> tuple[tuple[torch.Tensor, torch.Tensor], ...]:
    """For continuous indices along one axis: the two (weight, normalised position) pairs of the fetches.

    ``size`` is the padded axis length; positions are in ``grid_sample``'s [-1, 1] (align_corners=False).
    """
    position = index + _PAD
    floor = torch.floor(position)
    w = position - floor
    # ITK's weights for order 3 (BSplineInterpolateImageFunction::SetInterpolationWeights)
    w3 = w * w * w / 6.0
    w0 = 1.0 / 6.0 + 0.5 * w * (w - 1.0) - w3
    w2 = w + w0 - 2.0 * w3
    w1 = 1.0 - w0 - w2 - w3
    low, high = w0 + w1, w2 + w3
    first = floor - 1.0 + w1 / low  # between taps f − 1 and f
    second = floor + 1.0 + w3 / high  # between taps f + 1 and f + 2
    return (low, (2.0 * first + 1.0) / size - 1.0), (high, (2.0 * second + 1.0) / size - 1.0)


def sample_bspline(coefficients: torch.Tensor, source_index_ijk: torch.Tensor) -> torch.Tensor:
    """Evaluate the cubic B-spline at continuous source indices.

    Args:
        coefficients: [C, Z, Y, X] float64 from :func:`bspline_coefficients`.
        source_index_ijk: [Z', Y', X', 3] float64 continuous source index (i, j, k) of each sample.

    Returns:
        [C, Z', Y', X'] float64 on the coefficients' device. Indices outside [-0.5, n − 0.5) are
        evaluated on the mirrored extension (the caller masks them, as ITK does).
    """
    padded = _mirror_pad(coefficients)[None]  # [1, C, Z + 4, Y + 4, X + 4]
    sizes_xyz = padded.shape[-1], padded.shape[-2], padded.shape[-3]
    fetches = [_axis_fetches(source_index_ijk[..., axis], sizes_xyz[axis]) for axis in range(3)]
    total = None
    for weight_x, x in fetches[0]:
        for weight_y, y in fetches[1]:
            for weight_z, z in fetches[2]:
                grid = torch.stack([x, y, z], -1)[None]
                sampled = F.grid_sample(padded, grid, mode="bilinear", padding_mode="border", align_corners=False)[0]
                term = sampled * (weight_x * weight_y * weight_z)[None]
                total = term if total is None else total + term
    return total


def source_indices(affine: np.ndarray, shape_zyx: tuple[int, int, int], device: torch.device) -> torch.Tensor:
    """[Z, Y, X, 3] float64 source index (i, j, k) of every target voxel, from the 4×4 target→source ``affine``."""
    matrix = torch.as_tensor(affine, dtype=torch.float64, device=device)
    k, j, i = (torch.arange(n, dtype=torch.float64, device=device) for n in shape_zyx)
    axes = [
        row[0] * i[None, None, :] + row[1] * j[None, :, None] + row[2] * k[:, None, None] + row[3]
        for row in matrix[:3]
    ]
    return torch.stack(axes, -1)

"""Soft-edged solids of the phantom's body frame: rotations, ellipsoids and irregular blobs.

Coordinates are body-frame millimetres (origin at the gland centre, axes u, v, w ~ LPS rotated by the
case's patient positioning). Membership is 1 inside, 0 outside and falls linearly across the edge.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np

from LesionAILib.phantom.tissues import AIR, Tissue


def rotation(about_x: float = 0.0, about_y: float = 0.0, about_z: float = 0.0) -> np.ndarray:
    """Rotation matrix Rz @ Ry @ Rx for angles in radians about the frame axes."""
    cx, sx = math.cos(about_x), math.sin(about_x)
    cy, sy = math.cos(about_y), math.sin(about_y)
    cz, sz = math.cos(about_z), math.sin(about_z)
    rx = np.array([[1, 0, 0], [0, cx, -sx], [0, sx, cx]])
    ry = np.array([[cy, 0, sy], [0, 1, 0], [-sy, 0, cy]])
    rz = np.array([[cz, -sz, 0], [sz, cz, 0], [0, 0, 1]])
    return rz @ ry @ rx


@dataclass(frozen=True)
class Ellipsoid:
    """Soft-edged ellipsoid in the body frame: centre (mm), axes (3x3, columns = local axes), semi-axes
    (mm), edge width (mm)."""

    centre: np.ndarray
    axes: np.ndarray
    semi: np.ndarray
    edge_mm: float
    tissue: Tissue

    def quadratic(self) -> tuple[np.ndarray, np.ndarray, float]:
        """(Q, L, k) such that membership = clip(p^T Q p + L.p + k, 0, 1) for body-frame points p.

        Uses the linearised distance to the surface d ~ (q - 1) R / 2 with R the smallest semi-axis,
        and membership 0.5 - d / edge.
        """
        shape = self.axes @ np.diag(1.0 / self.semi**2) @ self.axes.T
        alpha = -float(self.semi.min()) / (2.0 * self.edge_mm)
        beta = 0.5 - alpha
        q = alpha * shape
        return q, -2.0 * q @ self.centre, float(self.centre @ q @ self.centre) + beta

    def bounds(self) -> tuple[np.ndarray, np.ndarray]:
        """Body-frame box (low, high corners, mm) holding every point of positive membership."""
        shape_inv = self.axes @ np.diag(self.semi**2) @ self.axes.T
        half = np.sqrt(np.diag(shape_inv)) * (1.0 + self.edge_mm / self.semi.min()) + self.edge_mm
        return self.centre - half, self.centre + half


def ellipsoid(centre, semi, edge_mm: float, tissue: Tissue, axes: np.ndarray | None = None) -> Ellipsoid:
    """An Ellipsoid from sequences of centre and semi-axes (mm); axes default to the body axes."""
    return Ellipsoid(
        np.asarray(centre, float), np.eye(3) if axes is None else axes, np.asarray(semi, float), edge_mm, tissue
    )


def _monomials(nu: np.ndarray, nv: np.ndarray, nw: np.ndarray) -> Iterator[np.ndarray]:
    """The 19 monomials of degree 1-3 of a unit direction (nu, nv, nw)."""
    first = (nu, nv, nw)
    yield from first
    second = []
    for i in range(3):
        for j in range(i, 3):
            second.append(first[i] * first[j])
    yield from second
    for i in range(3):
        for j in range(i, 3):
            for k in range(j, 3):
                yield second[(i * (5 - i)) // 2 + j] * first[k]


_N_MONOMIALS = 19


@dataclass(frozen=True)
class Blob:
    """Irregular solid: an ellipsoid whose radius is modulated by 1 + sum(coeffs * monomials(direction)).

    centre in body-frame mm, axes 3x3 (columns = local axes), semi-axes mm, edge width mm.
    """

    centre: np.ndarray
    axes: np.ndarray
    semi: np.ndarray
    coeffs: np.ndarray
    edge_mm: float

    def rho(self, u: np.ndarray, v: np.ndarray, w: np.ndarray) -> np.ndarray:
        """Normalised radius (1 on the surface) at body-frame points; same shape as u."""
        d = (u - np.float32(self.centre[0]), v - np.float32(self.centre[1]), w - np.float32(self.centre[2]))
        local = [sum(d[j] * np.float32(self.axes[j, i] / self.semi[i]) for j in range(3)) for i in range(3)]
        radius = np.sqrt(local[0] ** 2 + local[1] ** 2 + local[2] ** 2)
        inv = 1.0 / np.maximum(radius, np.float32(1e-6))
        directions = [c * inv for c in local]
        modulation = np.ones_like(radius)
        for coeff, mono in zip(self.coeffs, _monomials(*directions), strict=True):
            modulation += np.float32(coeff) * mono
        return radius / modulation

    def membership(self, rho: np.ndarray, scale: float = 1.0) -> np.ndarray:
        """Soft membership in [0, 1] of the blob scaled by `scale`, from rho()."""
        slope = np.float32(float(self.semi.min()) * scale / self.edge_mm)
        return np.clip(np.float32(0.5) - (rho - np.float32(scale)) * slope, 0.0, 1.0)

    def _outer(self, scale: float) -> Ellipsoid:
        """An ellipsoid (edge 1 mm) whose positive part contains every point of the blob scaled by `scale`."""
        stretch = 1.0 + float(np.abs(self.coeffs).sum())
        return Ellipsoid(self.centre, self.axes, self.semi * scale * stretch + 1.5 * self.edge_mm, 1.0, AIR)

    def bounds(self, scale: float = 1.0) -> tuple[np.ndarray, np.ndarray]:
        """Body-frame box (low, high corners, mm) holding every point the blob scaled by `scale` can reach."""
        return self._outer(scale).bounds()

    def envelope(self, scale: float = 1.0) -> tuple[np.ndarray, np.ndarray, float]:
        """Quadratic (Q, L, k) that is > 0 on every point the blob scaled by `scale` can reach."""
        return self._outer(scale).quadratic()


def blob_volume_ml(blob: Blob, step_mm: float = 1.0) -> float:
    """Volume (ml) of {rho <= 1}, counted on a lattice of step_mm."""
    low, high = blob.bounds()
    grids = np.meshgrid(
        *[np.arange(lo, hi, step_mm, dtype=np.float32) for lo, hi in zip(low, high, strict=True)],
        indexing="ij",
        sparse=False,
    )
    return float(np.count_nonzero(blob.rho(*grids) <= 1.0)) * step_mm**3 / 1000.0


def random_blob(
    rng: np.random.Generator,
    centre: np.ndarray,
    semi: np.ndarray,
    irregularity: float,
    edge_mm: float,
    axes: np.ndarray | None = None,
) -> Blob:
    """Blob with random orientation (unless given) and random perturbation of total amplitude
    `irregularity` (sum of |coefficients|, higher degrees weaker)."""
    if axes is None:
        axes = rotation(*rng.uniform(-math.pi, math.pi, 3))
    weights = np.array([1.0] * 3 + [0.6] * 6 + [0.35] * 10)
    coeffs = rng.standard_normal(_N_MONOMIALS) * weights
    coeffs *= irregularity / max(np.abs(coeffs).sum(), 1e-9)
    return Blob(np.asarray(centre, float), axes, np.asarray(semi, float), coeffs, edge_mm)

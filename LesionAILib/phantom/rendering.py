"""Painting the phantom on an image grid: sub-sample lattices, signal canvases, partial volume, labels.

A voxel value is the average of the tissue signal over sub-samples spread across the voxel (3
sub-slices through the slice thickness; 2x2 in-plane for DWI), which gives partial volume. Structures
are painted in order, later ones covering earlier ones.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from LesionAILib.geometry import Grid
from LesionAILib.phantom.anatomy import Anatomy
from LesionAILib.phantom.lesions import LesionSpec
from LesionAILib.phantom.shapes import Blob, Ellipsoid
from LesionAILib.phantom.tissues import AFMS, AIR, CAPSULE, URETHRA, Tissue

TissueChannels = Callable[[Tissue], dict[str, float]]
"""Noise-free signal of each image channel (name -> value) of a tissue."""


@dataclass(frozen=True)
class _Block:
    """A box of a lattice: fine-index slices (z, y, x), aligned to whole voxels."""

    z: slice
    y: slice
    x: slice

    @property
    def slices(self) -> tuple[slice, slice, slice]:
        return self.z, self.y, self.x

    def empty(self) -> bool:
        return self.z.start >= self.z.stop or self.y.start >= self.y.stop or self.x.start >= self.x.stop

    def relative_to(self, outer: _Block) -> tuple[slice, slice, slice]:
        """This block's slices within the array of an enclosing block."""
        return tuple(slice(a.start - b.start, a.stop - b.start) for a, b in zip(self.slices, outer.slices, strict=True))


class Lattice:
    """Voxel sub-sample points of a grid, mapped affinely into the body frame.

    Fine array axes are [Z * sz, Y * sy, X * sx]; index coordinates (voxel units) of the sub-samples
    are spread evenly inside each voxel. `shift_lps` displaces what the grid sees (misregistration).
    """

    def __init__(self, grid: Grid, sub: tuple[int, int, int], anatomy: Anatomy, shift_lps: np.ndarray | None = None):
        self.sub = sub  # (sx, sy, sz)
        self.fine: list[np.ndarray] = []
        for n, s in zip(grid.size_xyz, sub, strict=True):
            offsets = (np.arange(s) + 0.5) / s - 0.5
            self.fine.append((np.arange(n)[:, None] + offsets[None, :]).ravel())
        shift = np.zeros(3) if shift_lps is None else shift_lps
        # body = A @ index + b
        self.matrix = anatomy.rotation.T @ grid.direction_matrix @ np.diag(grid.spacing_xyz)
        self.offset = anatomy.rotation.T @ (np.asarray(grid.origin) + shift - anatomy.centre_lps)
        self.shape = tuple(len(self.fine[i]) for i in (2, 1, 0))

    def block(self, low: np.ndarray, high: np.ndarray) -> _Block:
        """Voxel-aligned box of the lattice that contains the body-frame box [low, high]."""
        corners = np.array(
            [
                [low[0] if i & 1 else high[0], low[1] if i & 2 else high[1], low[2] if i & 4 else high[2]]
                for i in range(8)
            ]
        )
        index = np.linalg.solve(self.matrix, (corners - self.offset).T)
        bounds = []
        for axis in range(3):
            s = self.sub[axis]
            n = len(self.fine[axis]) // s
            start = int(np.clip(math.floor(index[axis].min() + 0.5), 0, n))
            stop = int(np.clip(math.ceil(index[axis].max() + 0.5), 0, n))
            bounds.append(slice(start * s, stop * s))
        return _Block(bounds[2], bounds[1], bounds[0])

    def crop(self, block: _Block, mask: np.ndarray) -> _Block:
        """Smallest voxel-aligned sub-block of `block` holding all True points of `mask` (block-shaped)."""
        bounds = []
        for axis, sub in ((0, self.sub[2]), (1, self.sub[1]), (2, self.sub[0])):
            hits = np.flatnonzero(mask.any(axis=tuple(a for a in range(3) if a != axis)))
            start = block.slices[axis].start
            if len(hits) == 0:
                return _Block(slice(0, 0), slice(0, 0), slice(0, 0))
            low = start + hits[0] - (start + hits[0]) % sub
            high = start + hits[-1] + 1
            bounds.append(slice(low, high + (-high) % sub))
        return _Block(*bounds)

    def blob_block(self, blob: Blob, scale: float = 1.0) -> _Block:
        """Voxel-aligned block holding every point a blob (scaled by `scale`) can reach."""
        block = self.block(*blob.bounds(scale))
        if block.empty():
            return block
        return self.crop(block, self.quadratic(block, *blob.envelope(scale)) > 0.0)

    def whole(self) -> _Block:
        return _Block(slice(0, self.shape[0]), slice(0, self.shape[1]), slice(0, self.shape[2]))

    def coordinates(self, block: _Block) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Body-frame coordinates (u, v, w), each float32 of the block's shape."""
        x = self.fine[0][block.x]
        y = self.fine[1][block.y]
        z = self.fine[2][block.z]
        out = []
        for row in range(3):
            a = self.matrix[row]
            plane = (a[0] * x[None, :] + a[1] * y[:, None] + self.offset[row]).astype(np.float32)
            out.append(plane[None] + (a[2] * z).astype(np.float32)[:, None, None])
        return out[0], out[1], out[2]

    def quadratic(self, block: _Block, q: np.ndarray, lin: np.ndarray, const: float) -> np.ndarray:
        """p^T Q p + lin.p + const at the block's points (float32), p the body-frame position.

        Evaluated as a quadratic in the index coordinates: an [Y, X] plane, a [Z] line and one [Z, Y, X]
        product, which is much cheaper than forming the three coordinates.
        """
        a, b = self.matrix, self.offset
        m = a.T @ q @ a
        g = 2.0 * a.T @ q @ b + a.T @ lin
        h = float(b @ q @ b + lin @ b + const)
        x = self.fine[0][block.x]
        y = self.fine[1][block.y]
        z = self.fine[2][block.z]
        plane = (
            (m[0, 0] * x * x)[None, :]
            + (m[1, 1] * y * y + g[1] * y + h)[:, None]
            + (2.0 * m[0, 1] * y)[:, None] * x[None, :]
            + (g[0] * x)[None, :]
        )
        cross = (2.0 * m[0, 2] * x)[None, :] + (2.0 * m[1, 2] * y)[:, None]
        line = m[2, 2] * z * z + g[2] * z
        out = z.astype(np.float32)[:, None, None] * cross.astype(np.float32)[None]
        out += plane.astype(np.float32)[None]
        out += line.astype(np.float32)[:, None, None]
        return out


class _Canvas:
    """Signal channels on a lattice, painted structure by structure (later ones cover earlier ones:
    value <- value + m * (tissue value - value))."""

    def __init__(self, lattice: Lattice, channels: TissueChannels):
        self.lattice = lattice
        self.channels = channels
        self.arrays = {name: np.zeros(lattice.shape, np.float32) for name in channels(AIR)}
        self._cache: dict[Tissue, dict[str, float]] = {}
        self._blank = True

    def paint(self, block: _Block, membership: np.ndarray, tissue: Tissue) -> None:
        values = self._cache.setdefault(tissue, self.channels(tissue))
        if self._blank and block == self.lattice.whole():  # first coat over air: value = m * tissue value
            for name, array in self.arrays.items():
                np.multiply(membership, np.float32(values[name]), out=array)
            self._blank = False
            return
        self._blank = False
        scratch = np.empty_like(membership)
        for name, array in self.arrays.items():
            view = array[block.slices]
            np.subtract(np.float32(values[name]), view, out=scratch)
            scratch *= membership
            view += scratch

    def paint_ellipsoid(self, ellipsoid: Ellipsoid) -> None:
        block = self.lattice.block(*ellipsoid.bounds())
        if block.empty():
            return
        membership = self.lattice.quadratic(block, *ellipsoid.quadratic())
        tight = self.lattice.crop(block, membership > 0.0)
        if tight.empty():
            return
        membership = membership[tight.relative_to(block)]
        np.clip(membership, 0.0, 1.0, out=membership)
        self.paint(tight, membership, ellipsoid.tissue)

    def voxel_means(self) -> dict[str, np.ndarray]:
        """Channels averaged over the sub-samples of each voxel, [Z, Y, X]."""
        sx, sy, sz = self.lattice.sub
        out = {}
        for name, array in self.arrays.items():
            total = None
            for k in range(sz):
                for j in range(sy):
                    for i in range(sx):
                        part = array[k::sz, j::sy, i::sx]
                        total = part.copy() if total is None else np.add(total, part, out=total)
            total *= np.float32(1.0 / (sx * sy * sz))
            out[name] = total
        return out


@dataclass
class Labels:
    """Ground truth on a grid: zones (0/1/2) and lesion instances (0, 1..n), uint8 [Z, Y, X]."""

    zones: np.ndarray
    instances: np.ndarray


def render(
    anatomy: Anatomy, lesions: list[LesionSpec], lattice: Lattice, channels: TissueChannels, with_labels: bool
) -> tuple[dict[str, np.ndarray], Labels | None]:
    """Paint the anatomy and its lesions on a lattice; returns voxel-mean channels [Z, Y, X] float32 and
    (optionally) the labels, lesion instance k + 1 being lesions[k].

    Labels need a lattice without in-plane sub-sampling and with an odd number of sub-slices: zones are
    read at the voxel centre, lesion masks where the lesion covers >= half of the voxel.
    """
    canvas = _Canvas(lattice, channels)
    for ellipsoid in anatomy.background:
        canvas.paint_ellipsoid(ellipsoid)

    gland = anatomy.gland
    block = lattice.blob_block(gland, anatomy.capsule_scale)
    sz = lattice.sub[2]
    labels = None
    if with_labels:
        voxels = (lattice.shape[0] // sz, lattice.shape[1], lattice.shape[2])
        labels = Labels(np.zeros(voxels, np.uint8), np.zeros(voxels, np.uint8))
    if block.empty():
        return canvas.voxel_means(), labels
    u, v, w = lattice.coordinates(block)
    gland_rho = gland.rho(u, v, w)
    canvas.paint(block, gland.membership(gland_rho, anatomy.capsule_scale), CAPSULE)
    gland_m = gland.membership(gland_rho)
    canvas.paint(block, gland_m, anatomy.pz_tissue)
    afms_raw = np.clip(lattice.quadratic(block, *anatomy.afms.quadratic()), 0.0, 1.0)
    canvas.paint(block, afms_raw * gland_m, AFMS)
    tz_raw = anatomy.tz.membership(anatomy.tz.rho(u, v, w))
    canvas.paint(block, tz_raw * gland_m, anatomy.tz_tissue)
    if labels is not None:  # zones at the voxel centres (the middle sub-slice)
        centre = slice(sz // 2, None, sz)
        central = (tz_raw[centre] >= 0.5) | (afms_raw[centre] >= 0.5)
        zone_block = np.where(gland_m[centre] >= 0.5, np.where(central, 2, 1), 0).astype(np.uint8)
        labels.zones[block.z.start // sz : block.z.stop // sz, block.y, block.x] = zone_block
    canvas.paint(block, np.clip(lattice.quadratic(block, *anatomy.urethra.quadratic()), 0.0, 1.0) * gland_m, URETHRA)

    def clipped(blob: Blob) -> tuple[_Block, np.ndarray] | None:
        sub_block = lattice.blob_block(blob)
        if sub_block.empty():
            return None
        su, sv, sw = lattice.coordinates(sub_block)
        m = blob.membership(blob.rho(su, sv, sw)) * gland.membership(gland.rho(su, sv, sw))
        return sub_block, m

    for blob, tissue in anatomy.nodules:
        painted = clipped(blob)
        if painted is not None:
            canvas.paint(painted[0], painted[1], tissue)
    for lesion_id, lesion in enumerate(lesions, start=1):
        painted = clipped(lesion.blob)
        if painted is None:
            continue
        sub_block, m = painted
        canvas.paint(sub_block, m, lesion.tissue)
        if labels is not None:
            coverage = m.reshape(m.shape[0] // sz, sz, *m.shape[1:]).mean(axis=1)
            target = labels.instances[sub_block.z.start // sz : sub_block.z.stop // sz, sub_block.y, sub_block.x]
            inside = coverage >= 0.5
            if not inside.any():  # tiny lesion between slice centres: keep its best-covered voxel
                inside = coverage >= coverage.max() * 0.999
                inside &= coverage > 0.05
            target[inside] = lesion_id
    return canvas.voxel_means(), labels

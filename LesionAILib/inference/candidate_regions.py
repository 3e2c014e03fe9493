"""Candidate regions carried from the model grid into the T2 geometry, each present and none touching.

Nearest-neighbour resampling alone fails two ways when the T2 lattice differs from the model grid
(thick or few slices, another matrix, an oblique plane): a thin region that falls between T2 voxel
centres vanishes (its candidate is then in the table but in no map), and two regions one model
voxel apart can land on 26-adjacent T2 voxels (PI-CAI's ``parse_detection_map`` then refuses the
detection map, since a connected blob must carry one value). :func:`candidate_map_in_t2` repairs
both on the T2 lattice (and keeps one connected part per candidate, since PI-CAI counts each part
as a lesion) and reports what it could not keep.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import SimpleITK as sitk
from scipy import ndimage

from LesionAILib.geometry import Grid
from LesionAILib.inference.candidates import Candidate, renumber
from LesionAILib.preprocessing.pipeline import to_t2_grid

_CONNECTIVITY = np.ones((3, 3, 3), bool)


@dataclass
class T2CandidateRegions:
    """Candidate regions on the T2 lattice.

    Attributes:
        labels: [Z, Y, X] int32 on the T2 grid; voxel value = candidate id (1..n, the order of
            ``candidates``), 0 elsewhere. Regions of different candidates never touch (26-neighbourhood).
        candidates: the candidates that have a region there, renumbered 1..n in their given order.
        dropped: one line per candidate that has no voxel left on the T2 lattice, and why.
    """

    labels: np.ndarray
    candidates: list[Candidate]
    dropped: list[str] = field(default_factory=list)


def _fallback_region(region: np.ndarray, model_grid: Grid, t2_grid: Grid, free: np.ndarray) -> np.ndarray:
    """T2 voxels that hold at least half of the largest share of a region nearest sampling missed."""
    share = _to_t2_array(region.astype(np.float32), model_grid, t2_grid, "linear")
    peak = float(share.max())
    if peak <= 0.0:
        return np.zeros(share.shape, bool)
    return (share >= 0.5 * peak) & free


def _box(region: np.ndarray, margin: int = 0) -> tuple[slice, ...]:
    """The bounding box of a non-empty mask, grown by ``margin`` voxels (clipped to the array)."""
    box = []
    for axis in range(region.ndim):
        hit = np.flatnonzero(region.any(axis=tuple(a for a in range(region.ndim) if a != axis)))
        box.append(slice(max(0, int(hit[0]) - margin), min(region.shape[axis], int(hit[-1]) + 1 + margin)))
    return tuple(box)


def _largest_component(region: np.ndarray) -> np.ndarray:
    """The largest 26-connected part of a region (resampling may split a thin one; PI-CAI would count each part).

    Labelled inside the region's bounding box only (every part lies there), not on the whole T2 volume.
    """
    box = _box(region)
    parts, count = ndimage.label(region[box], structure=_CONNECTIVITY)
    if count <= 1:
        return region
    largest = np.zeros_like(region)
    largest[box] = parts == 1 + int(np.argmax(np.bincount(parts[region[box]])[1:]))
    return largest


def _away_from(region: np.ndarray, claimed: np.ndarray) -> np.ndarray:
    """``region`` without its voxels 26-adjacent to (or in) ``claimed``, looking only around ``region``.

    A voxel's dilation value depends on its 3 × 3 × 3 neighbourhood only, so the dilation is computed
    on the region's bounding box grown by one voxel and read on the box: the same voxels as dilating
    the whole volume, at the cost of the box.
    """
    outer = _box(region, margin=1)
    near = ndimage.binary_dilation(claimed[outer], structure=_CONNECTIVITY)
    kept = region.copy()
    kept[outer] &= ~near
    return kept


def _to_t2_array(volume: np.ndarray, model_grid: Grid, t2_grid: Grid, mode: str) -> np.ndarray:
    return sitk.GetArrayFromImage(to_t2_grid(volume, model_grid, t2_grid, mode))


def candidate_map_in_t2(
    labels: np.ndarray, candidates: list[Candidate], model_grid: Grid, t2_grid: Grid
) -> T2CandidateRegions:
    """Bring a candidate label map into the T2 geometry, keeping every region present and apart.

    Args:
        labels: [Z, Y, X] int label map on ``model_grid``; value = ``candidate_id`` of ``candidates``.
        candidates: ordered by priority (most probable first); a region that would touch a region of
            an earlier candidate loses its touching voxels.
        model_grid: the grid of ``labels``; t2_grid: the original T2 series' grid (LPS mm).

    Returns:
        :class:`T2CandidateRegions`. A region missed by nearest-neighbour sampling is taken from
        linear resampling of its mask (the T2 voxels holding ≥ half its largest share); a candidate
        outside the T2 volume, or left with no voxel after separation, is dropped and named in
        ``dropped``. The candidates (modified in place) are renumbered 1..n.
    """
    mapped = _to_t2_array(labels.astype(np.float32), model_grid, t2_grid, "nearest").astype(np.int32)
    present = set(np.flatnonzero(np.bincount(mapped.ravel())).tolist())
    for candidate in candidates:
        if candidate.candidate_id not in present:
            fallback = _fallback_region(labels == candidate.candidate_id, model_grid, t2_grid, mapped == 0)
            mapped[fallback] = candidate.candidate_id
    # each candidate is worked on inside its bounding box grown by one voxel (its 26-neighbours lie
    # there), not on the whole T2 volume: one pass finds every box
    boxes = ndimage.find_objects(mapped)
    result = np.zeros(mapped.shape, np.int32)
    claimed = np.zeros(mapped.shape, bool)
    kept, dropped = [], []
    for candidate in candidates:
        index = candidate.candidate_id - 1
        box = boxes[index] if 0 <= index < len(boxes) else None
        centre = ", ".join(f"{v:.1f}" for v in candidate.center_lps_mm)
        where = f"candidate with peak {candidate.peak:.3f} at LPS ({centre}) mm"
        if box is None:
            dropped.append(f"{where} has no voxel in the T2 volume")
            continue
        outer = tuple(slice(max(0, b.start - 1), min(n, b.stop + 1)) for b, n in zip(box, mapped.shape, strict=True))
        region = mapped[outer] == candidate.candidate_id
        if kept:
            region = _away_from(region, claimed[outer])
        if not region.any():
            dropped.append(f"{where} lies wholly against a more probable candidate on the T2 lattice")
            continue
        region = _largest_component(region)
        result[outer][region] = candidate.candidate_id
        claimed[outer] |= region
        kept.append(candidate)
    return T2CandidateRegions(labels=renumber(kept, result), candidates=kept, dropped=dropped)

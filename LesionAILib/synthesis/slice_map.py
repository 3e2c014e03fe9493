"""The 2D patch model slid over a volume's axial slices: a window per stride position, its centre hidden and scored.

The volume is ADC and high-b on their native grid (≈ 2 mm pixels), each histogram-equalised as a
whole exactly as the ProstateX finding patches are (:func:`LesionAILib.prostatex.patches.equalize_histogram`).
At every **window centre** — the pixels of a ``stride`` lattice on each slice that lie within the
scored radius of the region, so every region pixel is inside the scored disk of at least one
window — the 32 × 32 window around it (the centre at patch pixel
:data:`~LesionAILib.prostatex.patches.NEAREST_VOXEL_AT`, zeros outside the volume, as a finding
patch) has its centre box (:data:`~LesionAILib.synthesis.patch_inpainting.CENTRE_BOX` pixels, 16 mm)
hidden and synthesised, and the window is scored exactly as a finding is in the cross-validated
benchmark (:func:`~LesionAILib.synthesis.patch_inpainting.centre_discrepancy`: mean real −
synthesised over the central disk of 6 mm radius, per sequence). Per window and sequence that gives

* the **absolute** score: robust z of |discrepancy| against the model's normal-tissue statistics;
* the **signed** score: discrepancy / (1.4826 · MAD), negated for ADC, so ADC darker and high-b
  brighter than the synthesis (what a tumour does) count as abnormal.

Each pixel gets the mean of the window scores whose scored disk covers it (so a pixel's value is
the average finding score of the windows around it, on the scale the statistics were fitted on).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view
from scipy import ndimage

from LesionAILib.prostatex.patches import NEAREST_VOXEL_AT, PATCH_SIZE
from LesionAILib.synthesis.network import InpaintingNet
from LesionAILib.synthesis.normalisation import MAD_TO_SD, NormalTissueStatistics, combine
from LesionAILib.synthesis.patch_inpainting import EXCLUDED_RADIUS_MM, PIXEL_MM, centre_discrepancy, disk

SCORED_RADIUS_PX = EXCLUDED_RADIUS_MM / PIXEL_MM
SIGNED, ABSOLUTE = "signed", "absolute"
_SMALLEST_SPREAD = 1e-6


@dataclass
class SliceMaps:
    """Per-pixel window scores on the volume's grid ([Z, Y, X]; channels in the model's role order).

    Attributes:
        signed: [C, Z, Y, X] float32 mean signed score of the covering windows (0 where none).
        absolute: [C, Z, Y, X] float32 mean absolute robust z of the covering windows (0 where none).
        coverage: [Z, Y, X] int32, windows whose scored disk covers the pixel.
        centres: [N, 3] int (k, row, column) of the windows.
        discrepancy: [N, C] float64 signed mean(real − synthesised) of each window.
    """

    signed: np.ndarray
    absolute: np.ndarray
    coverage: np.ndarray
    centres: np.ndarray
    discrepancy: np.ndarray

    def sequences(self, score: str) -> np.ndarray:
        """[C, Z, Y, X] per-sequence map of ``score`` (:data:`SIGNED` or :data:`ABSOLUTE`)."""
        return self.signed if score == SIGNED else self.absolute

    def combined(self, score: str) -> np.ndarray:
        """[Z, Y, X] mean over sequences of ``score``, 0 where no window covers."""
        return np.where(self.coverage > 0, combine(self.sequences(score)), 0.0).astype(np.float32)


def disk_offsets(radius_px: float = SCORED_RADIUS_PX) -> np.ndarray:
    """[M, 2] (row, column) offsets of the pixels within ``radius_px`` of a centre pixel."""
    reach = int(np.floor(radius_px))
    rows, columns = np.mgrid[-reach : reach + 1, -reach : reach + 1]
    inside = rows**2 + columns**2 <= radius_px**2
    return np.stack([rows[inside], columns[inside]], 1)


def window_centres(region: np.ndarray, stride: int, radius_px: float = SCORED_RADIUS_PX) -> np.ndarray:
    """[N, 3] (k, row, column) lattice pixels (every ``stride``-th row and column) within ``radius_px`` of ``region``.

    With ``stride`` ≤ radius · √2 every region pixel lies within ``radius_px`` of such a centre.
    """
    footprint = disk((int(np.floor(radius_px)),) * 2, radius_px, 2 * int(np.floor(radius_px)) + 1)
    reach = ndimage.binary_dilation(region, structure=footprint[None])
    lattice = np.zeros(region.shape, bool)
    lattice[:, ::stride, ::stride] = True
    return np.argwhere(reach & lattice)


def cut_windows(image: np.ndarray, centres: np.ndarray) -> np.ndarray:
    """[N, C, 32, 32] float32 windows of ``image`` [C, Z, Y, X], centre pixel at NEAREST_VOXEL_AT, 0 outside."""
    padded = np.pad(image, ((0, 0), (0, 0), (PATCH_SIZE, PATCH_SIZE), (PATCH_SIZE, PATCH_SIZE)))
    views = sliding_window_view(padded, (PATCH_SIZE, PATCH_SIZE), axis=(2, 3))  # [C, Z, Y', X', 32, 32]
    rows = centres[:, 1] + PATCH_SIZE - NEAREST_VOXEL_AT[0]
    columns = centres[:, 2] + PATCH_SIZE - NEAREST_VOXEL_AT[1]
    windows = views[:, centres[:, 0], rows, columns]  # [C, N, 32, 32]
    return np.ascontiguousarray(windows.transpose(1, 0, 2, 3), dtype=np.float32)


def window_scores(discrepancy: np.ndarray, statistics: NormalTissueStatistics) -> tuple[np.ndarray, np.ndarray]:
    """(signed [C, N], absolute [C, N]) scores of windows' signed discrepancies [N, C] (see module docstring)."""
    spread = np.maximum(MAD_TO_SD * np.asarray(statistics.mad), _SMALLEST_SPREAD)[:, None]
    direction = np.array([-1.0 if role == "adc" else 1.0 for role in statistics.roles])[:, None]
    return direction * discrepancy.T / spread, statistics.zscores(np.abs(discrepancy).T)


def spread_over_disks(
    values: np.ndarray, centres: np.ndarray, shape: tuple[int, int, int], radius_px: float = SCORED_RADIUS_PX
) -> tuple[np.ndarray, np.ndarray]:
    """(mean [C, Z, Y, X] float32 of the ``values`` [C, N] whose disk covers each pixel, coverage [Z, Y, X] int32)."""
    total = np.zeros((len(values), *shape), np.float64)
    coverage = np.zeros(shape, np.int32)
    for row, column in disk_offsets(radius_px):
        k, r, c = centres[:, 0], centres[:, 1] + row, centres[:, 2] + column
        inside = (r >= 0) & (r < shape[1]) & (c >= 0) & (c < shape[2])
        k, r, c = k[inside], r[inside], c[inside]
        np.add.at(coverage, (k, r, c), 1)
        for channel in range(len(values)):
            np.add.at(total[channel], (k, r, c), values[channel, inside])
    mean = np.where(coverage > 0, total / np.maximum(coverage, 1), 0.0)
    return mean.astype(np.float32), coverage


def slice_maps(
    net: InpaintingNet,
    statistics: NormalTissueStatistics,
    image: np.ndarray,
    region: np.ndarray,
    stride: int = 2,
    batch: int = 512,
) -> SliceMaps:
    """Slide ``net`` (CPU) over ``image`` [C, Z, Y, X] (equalised, model role order) within ``region`` [Z, Y, X]."""
    centres = window_centres(region, stride)
    discrepancy = np.zeros((len(centres), image.shape[0]))
    for first in range(0, len(centres), batch):
        chunk = centres[first : first + batch]
        discrepancy[first : first + len(chunk)] = centre_discrepancy(net, cut_windows(image, chunk))
    signed, absolute = window_scores(discrepancy, statistics)
    shape = tuple(int(s) for s in region.shape)
    signed_map, coverage = spread_over_disks(signed, centres, shape)
    absolute_map, _ = spread_over_disks(absolute, centres, shape)
    return SliceMaps(signed_map, absolute_map, coverage, centres, discrepancy)

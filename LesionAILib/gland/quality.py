"""Plausibility checks of a gland mask: each finding is one warning line for the user, never an error.

Limits are those the TAPS package checks its own output against: a gland of 15–80 ml and an
extent of 10–150 mm along every axis; a mask that touches the image border, has several
3D components (the largest is kept) or empty slices between occupied ones is suspect too.
"""

from __future__ import annotations

import numpy as np

from LesionAILib.errors import StudyWarning
from LesionAILib.geometry import Grid

VOLUME_RANGE_ML = (15.0, 80.0)
EXTENT_RANGE_MM = (10.0, 150.0)


def _line(message: str, source: str) -> str:
    return str(StudyWarning(message, source or None))


def gland_warnings(mask: np.ndarray, grid: Grid, components: int, removed_voxels: int, source: str = "") -> list[str]:
    """One line per suspect property of ``mask``.

    Args:
        mask: ``[Z, Y, X]`` bool gland mask on ``grid`` (the T2 grid), largest component only.
        components: how many 26-connected components the thresholded prediction had.
        removed_voxels: voxels of the components other than the largest (dropped).
        source: the T2 file or series the lines name.
    """
    if not mask.any():
        return [_line("no prostate gland found (the gland mask is empty)", source)]
    lines = []
    volume_ml = float(mask.sum()) * grid.voxel_volume_ml()
    low, high = VOLUME_RANGE_ML
    if not low <= volume_ml <= high:
        lines.append(_line(f"gland volume {volume_ml:.1f} ml is outside the expected {low:.0f}–{high:.0f} ml", source))
    occupied = np.argwhere(mask)
    extent_mm = (occupied.max(0) - occupied.min(0) + 1) * np.asarray(grid.spacing)
    low, high = EXTENT_RANGE_MM
    if np.any((extent_mm < low) | (extent_mm > high)):
        shown = " × ".join(f"{v:.0f}" for v in extent_mm[::-1])
        lines.append(_line(f"gland extent {shown} mm (X × Y × Z) is outside {low:.0f}–{high:.0f} mm", source))
    on_border = (occupied.min(0) == 0) | (occupied.max(0) == np.asarray(mask.shape) - 1)
    if on_border.any():
        axes = ", ".join(name for name, touches in zip("ZYX", on_border, strict=True) if touches)
        lines.append(_line(f"gland mask touches the image border along {axes}: it may be cut off", source))
    if components > 1:
        lines.append(
            _line(
                f"the prediction had {components} separate parts; kept the largest ({removed_voxels} voxels dropped)",
                source,
            )
        )
    slices = np.flatnonzero(mask.any(axis=(1, 2)))
    if np.any(np.diff(slices) > 1):
        lines.append(_line("gland mask has empty slices between occupied ones", source))
    return lines

"""The gland PNG: its outline over three T2 slices through the gland (a quarter, half and three quarters up)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from LesionAILib.gland.outputs import GLAND_COLOR
from LesionAILib.rendering import percentile_window, plt, save_figure


def gland_slices(mask: np.ndarray, count: int = 3) -> list[int]:
    """``count`` slice indices spread over the gland's slices (the middle slices of the volume without a gland)."""
    occupied = np.flatnonzero(mask.any(axis=(1, 2)))
    if occupied.size == 0:
        middle = mask.shape[0] // 2
        return sorted({int(np.clip(middle + offset, 0, mask.shape[0] - 1)) for offset in (-2, 0, 2)})
    positions = np.linspace(occupied[0], occupied[-1], count + 2)[1:-1]
    return sorted({int(round(p)) for p in positions})


def gland_figure(t2: np.ndarray, mask: np.ndarray, path: str | Path, title: str, subtitle: str) -> Path:
    """Write a PNG of the gland outline over T2 slices.

    Args:
        t2, mask: ``[Z, Y, X]`` arrays on the T2 grid (drawn in array order: anterior up, patient's
            right on the left for an axial DICOM-derived grid).
        path: the PNG; title/subtitle: above the panels (e.g. the case, volume and PSA density).
    """
    slices = gland_slices(mask)
    window = percentile_window(t2.astype(np.float32))
    figure, axes = plt.subplots(1, len(slices), figsize=(4.2 * len(slices), 4.8), facecolor="black")
    for axis, k in zip(np.atleast_1d(axes), slices, strict=True):
        axis.imshow(t2[k], cmap="gray", vmin=window[0], vmax=window[1], interpolation="nearest")
        if mask[k].any():
            axis.contour(mask[k].astype(float), levels=[0.5], colors=[GLAND_COLOR], linewidths=1.4)
        axis.set_title(f"slice {k}", color="white", fontsize=10)
        axis.axis("off")
    figure.suptitle(f"{title}\nprostate gland (TAPS model): {subtitle}", color="white", fontsize=11)
    return save_figure(figure, path)

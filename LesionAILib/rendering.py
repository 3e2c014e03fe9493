"""PNG figures a person can look at: sequences side by side, heatmaps over T2, candidate outlines.

Matplotlib with the non-interactive Agg backend; nothing here opens a window. Images are
drawn in array order (row 0 at the top), which for an axial DICOM-derived grid is anterior at
the top and the patient's right on the left of the picture (radiological convention).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from .io_utils import atomic_path  # noqa: E402

ROLE_TITLES = {"t2w": "T2w", "adc": "ADC", "hbv": "high-b DWI"}


def percentile_window(array: np.ndarray, low: float = 1.0, high: float = 99.0) -> tuple[float, float]:
    """Display window from percentiles of the non-zero voxels (falls back to min/max)."""
    values = array[array != 0]
    if values.size == 0:
        return float(array.min()), float(array.max()) + 1e-6
    lower, upper = np.percentile(values, [low, high])
    return float(lower), float(max(upper, lower + 1e-6))


def save_figure(figure, path: str | Path, dpi: int = 100) -> Path:
    """Save and close a matplotlib figure atomically."""
    with atomic_path(path) as temporary:
        figure.savefig(temporary, dpi=dpi, bbox_inches="tight", facecolor=figure.get_facecolor())
    plt.close(figure)
    return Path(path)


def sequence_panels(
    volumes: Sequence[np.ndarray],
    titles: Sequence[str],
    path: str | Path,
    slice_index: int | None = None,
    windows: Sequence[tuple[float, float] | None] | None = None,
    suptitle: str | None = None,
) -> Path:
    """One axial slice of each [Z, Y, X] volume side by side, greyscale, written as a PNG."""
    count = len(volumes)
    figure, axes = plt.subplots(1, count, figsize=(4 * count, 4.4), facecolor="black")
    axes = np.atleast_1d(axes)
    for index, (volume, title, axis) in enumerate(zip(volumes, titles, axes, strict=True)):
        k = volume.shape[0] // 2 if slice_index is None else slice_index
        window = (windows[index] if windows else None) or percentile_window(volume[k])
        axis.imshow(volume[k], cmap="gray", vmin=window[0], vmax=window[1], interpolation="nearest")
        axis.set_title(f"{title}\n[{window[0]:.3g}, {window[1]:.3g}]", color="white", fontsize=10)
        axis.axis("off")
    if suptitle:
        figure.suptitle(suptitle, color="white", fontsize=11)
    return save_figure(figure, path)

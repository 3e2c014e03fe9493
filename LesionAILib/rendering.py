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

from LesionAILib.atomic_io import atomic_path  # noqa: E402
from LesionAILib.palette import HEAT_STOPS, OUTLINE_COLORS  # noqa: E402

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


def heat_colormap():
    """LesionAI's heat colour map (:data:`LesionAILib.palette.HEAT_STOPS`) for matplotlib."""
    from matplotlib.colors import LinearSegmentedColormap

    return LinearSegmentedColormap.from_list("lesionai_heat", list(HEAT_STOPS))


def overlay_slice(
    axis,
    t2_slice: np.ndarray,
    heat_slice: np.ndarray,
    outline: np.ndarray | None = None,
    threshold: float = 0.1,
    window: tuple[float, float] | None = None,
) -> None:
    """Draw a T2 slice, the heatmap above ``threshold`` (semi-transparent), and a candidate outline."""
    window = window or percentile_window(t2_slice)
    axis.imshow(t2_slice, cmap="gray", vmin=window[0], vmax=window[1], interpolation="nearest")
    masked = np.ma.masked_less(heat_slice, threshold)
    axis.imshow(masked, cmap=heat_colormap(), vmin=0.0, vmax=1.0, alpha=0.55, interpolation="nearest")
    if outline is not None and outline.any():
        axis.contour(outline.astype(float), levels=[0.5], colors=[OUTLINE_COLORS[0]], linewidths=1.2)
    axis.axis("off")


def candidate_figures(
    t2: np.ndarray,
    heatmap: np.ndarray,
    candidate_map: np.ndarray,
    candidates: Sequence,
    slice_indices: Sequence[int],
    out_dir: str | Path,
    title: str,
    notice: str = "",
    threshold: float = 0.1,
) -> list[Path]:
    """One PNG per candidate: the T2 slice through its centre with the heatmap and its outline.

    Args:
        t2, heatmap, candidate_map: [Z, Y, X] arrays on the T2 grid.
        candidates: objects with ``candidate_id``, ``probability``, ``grade_group``, ``volume_ml``, ``center_ras_mm``.
        slice_indices: the T2 slice (Z index) through each candidate's centre.
        out_dir: folder for ``candidate_<id>.png``; an ``overview.png`` shows the top candidate (or
            the middle slice when there is none).
    """
    out_dir = Path(out_dir)
    window = percentile_window(t2)
    written = []
    items = list(zip(candidates, slice_indices, strict=True))
    for candidate, k in items:
        figure, axis = plt.subplots(figsize=(6, 6.4), facecolor="black")
        overlay_slice(axis, t2[k], heatmap[k], candidate_map[k] == candidate.candidate_id, threshold, window)
        grade = "" if candidate.grade_group is None else f", most likely GG{candidate.grade_group}"
        ras = ", ".join(f"{v:.1f}" for v in candidate.center_ras_mm)
        axis.set_title(
            f"{title}\ncandidate {candidate.candidate_id}: p = {candidate.probability:.2f}{grade}, "
            f"{candidate.volume_ml:.2f} ml, RAS ({ras}) mm, slice {k}",
            color="white",
            fontsize=9,
        )
        if notice:
            figure.text(0.5, 0.01, notice, color="#ffcc00", ha="center", fontsize=8)
        written.append(save_figure(figure, out_dir / f"candidate_{candidate.candidate_id}.png"))
    k = items[0][1] if items else t2.shape[0] // 2
    figure, axes = plt.subplots(1, 2, figsize=(11, 5.8), facecolor="black")
    axes[0].imshow(t2[k], cmap="gray", vmin=window[0], vmax=window[1], interpolation="nearest")
    axes[0].set_title(f"T2w slice {k}", color="white", fontsize=10)
    axes[0].axis("off")
    overlay_slice(axes[1], t2[k], heatmap[k], candidate_map[k] > 0, threshold, window)
    axes[1].set_title("heatmap and candidates", color="white", fontsize=10)
    figure.suptitle(title, color="white", fontsize=11)
    if notice:
        figure.text(0.5, 0.01, notice, color="#ffcc00", ha="center", fontsize=9)
    written.append(save_figure(figure, out_dir / "overview.png"))
    return written

"""PNG strip of a classified point: its T2, ADC and high-b patches with the point and the probability."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from LesionAILib.prostatex.patches import FindingPatches
from LesionAILib.rendering import ROLE_TITLES, plt, save_figure


def point_in_patch(patches: FindingPatches, role: str) -> tuple[float, float]:
    """(row, column) of the point in ``role``'s patch, in pixels (continuous)."""
    window = patches.windows[role]
    _, j, i = window.point_index
    return j - window.row_start, i - window.column_start


def write_patch_strip(patches: FindingPatches, path: str | Path, title: str, notice: str = "") -> Path:
    """The three equalised patches side by side (grey, [0, 1]), a cross at the point, the localization
    map as contours; ``title`` above, ``notice`` (e.g. the intended use) below."""
    roles = ("t2w", "adc", "hbv")
    figure, axes = plt.subplots(1, len(roles), figsize=(3.2 * len(roles), 3.9), facecolor="black")
    for axis, role in zip(np.atleast_1d(axes), roles, strict=True):
        window = patches.windows[role]
        axis.imshow(patches.images[role], cmap="gray", vmin=0.0, vmax=1.0, interpolation="nearest")
        localization = patches.localization[role]
        if localization.max() > localization.min():
            levels = localization.min() + (localization.max() - localization.min()) * np.array([0.5, 0.9])
            axis.contour(localization, levels=levels, colors=["#ffcc00"], linewidths=0.8, alpha=0.7)
        row, column = point_in_patch(patches, role)
        axis.plot([column], [row], marker="+", color="#00ffff", markersize=12, markeredgewidth=1.5)
        height, width = (window.size * v for v in window.spacing_mm)
        axis.set_title(
            f"{ROLE_TITLES[role]} slice {window.slice_index}\n{height:.0f} × {width:.0f} mm",
            color="white",
            fontsize=9,
        )
        axis.axis("off")
    figure.suptitle(title, color="white", fontsize=10)
    if notice:
        figure.text(0.5, 0.01, notice, color="#ffcc00", ha="center", fontsize=8)
    return save_figure(figure, path)

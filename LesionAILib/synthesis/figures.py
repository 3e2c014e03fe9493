"""FIG 7-style panels of one hidden box: incomplete / synthesised / real / difference, one row per sequence."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from LesionAILib.rendering import ROLE_TITLES, percentile_window, save_figure
from LesionAILib.synthesis.mapping import BoxSynthesis

PANEL_TITLES = ("incomplete (hidden box)", "synthesised", "real", "real − synthesised")


def box_panels(view: BoxSynthesis, roles: Sequence[str], path: str | Path, title: str, notice: str = "") -> Path:
    """Draw the central slice (first axis) of ``view``'s crop for every sequence; a 2D view is drawn as is.

    The incomplete image shows the hidden box blank; the synthesised one is the completed image
    (context as given, box synthesised); the difference is real − synthesised inside the box, on a
    symmetric scale of the larger absolute value.
    """
    import matplotlib.pyplot as plt

    hidden = view.hidden
    if hidden.ndim == 3:
        middle = int(round(np.mean(np.nonzero(hidden.any((1, 2)))[0])))
        pick = lambda array: array[..., middle, :, :]  # noqa: E731
    else:
        pick = lambda array: array  # noqa: E731
    real, synthesised, mask = pick(view.real), pick(view.synthesised), pick(hidden)
    completed = np.where(mask, synthesised, real)
    figure, axes = plt.subplots(len(roles), 4, figsize=(10, 2.6 * len(roles)), squeeze=False)
    for row, role in enumerate(roles):
        low, high = percentile_window(real[row], 1, 99)
        difference = np.where(mask, real[row] - synthesised[row], np.nan)
        limit = float(np.nanmax(np.abs(difference))) if mask.any() else 1.0
        panels = (np.where(mask, np.nan, real[row]), completed[row], real[row], difference)
        for column, (panel, name) in enumerate(zip(panels, PANEL_TITLES, strict=True)):
            axis = axes[row, column]
            if column == 3:
                shown = axis.imshow(panel, cmap="coolwarm", vmin=-limit, vmax=limit)
                figure.colorbar(shown, ax=axis, fraction=0.046)
            else:
                axis.imshow(panel, cmap="gray", vmin=low, vmax=high)
            axis.contour(mask, levels=[0.5], colors="yellow", linewidths=0.8)
            axis.set_xticks([])
            axis.set_yticks([])
            if row == 0:
                axis.set_title(name, fontsize=9)
        axes[row, 0].set_ylabel(ROLE_TITLES.get(role, role))
    figure.suptitle(title + (f"\n{notice}" if notice else ""), fontsize=9)
    return save_figure(figure, path)

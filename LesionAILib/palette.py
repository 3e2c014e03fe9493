"""Colours shared by the PNG figures and the Slicer module, so a heatmap looks the same everywhere."""

from __future__ import annotations

# LesionAI's heat colour map on [0, 1]: dark red → red → orange → yellow → white. It starts from dark
# red rather than black so values just above the display threshold stay visible over a grey T2.
HEAT_STOPS: tuple[tuple[float, tuple[float, float, float]], ...] = (
    (0.0, (0.35, 0.0, 0.06)),
    (0.35, (0xB2 / 255, 0x18 / 255, 0x2B / 255)),
    (0.65, (0xF4 / 255, 0x6D / 255, 0x43 / 255)),
    (0.85, (0xFE / 255, 0xE0 / 255, 0x8B / 255)),
    (1.0, (1.0, 1.0, 1.0)),
)
# Candidate outlines: cool colours that stand out against grey T2 and the warm heatmap.
OUTLINE_COLORS: tuple[tuple[float, float, float], ...] = (
    (0.0, 0.9, 1.0),
    (0.3, 1.0, 0.3),
    (1.0, 0.3, 1.0),
    (0.4, 0.6, 1.0),
    (0.7, 1.0, 0.9),
)

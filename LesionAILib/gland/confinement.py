"""Candidates confined to the gland: each is flagged inside (within a margin) or outside, never dropped.

``lesionai analyze --gland`` segments the gland first, centres the analysis grid on its centroid
and flags every candidate with ``in_gland``: its centre lies in the gland mask or within
``margin_mm`` of it (distance to the nearest gland voxel centre, LPS mm). Candidates outside stay in
the table and the candidate map; the detection map and the case score use the candidates inside.
No torch here (results are read in the Slicer process).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import SimpleITK as sitk

from LesionAILib.geometry import Grid

DEFAULT_GLAND_MARGIN_MM = 5.0


@dataclass
class GlandConfinement:
    """The gland an analysis confines its candidates to.

    Attributes:
        mask: uint8 gland mask on the T2 grid (LPS mm).
        margin_mm: how far outside the mask a candidate centre still counts as in the gland.
        volume_ml, centroid_lps_mm: of the mask (``None`` centroid when empty).
        model_name, model_sha256: the gland model; warnings: its quality findings.
    """

    mask: sitk.Image
    margin_mm: float = DEFAULT_GLAND_MARGIN_MM
    volume_ml: float = 0.0
    centroid_lps_mm: tuple[float, float, float] | None = None
    model_name: str = ""
    model_sha256: str = ""
    warnings: list[str] = field(default_factory=list)

    @classmethod
    def from_segmentation(cls, gland, margin_mm: float = DEFAULT_GLAND_MARGIN_MM) -> GlandConfinement:
        """From a :class:`~LesionAILib.gland.segmentation.GlandSegmentation`."""
        return cls(
            mask=gland.mask,
            margin_mm=float(margin_mm),
            volume_ml=float(gland.volume_ml),
            centroid_lps_mm=gland.centroid_lps_mm,
            model_name=gland.model.name,
            model_sha256=gland.model.sha256,
            warnings=list(gland.warnings),
        )

    @property
    def empty(self) -> bool:
        return not sitk.GetArrayViewFromImage(self.mask).any()

    def distance_mm(self, points_lps: Sequence[Sequence[float]]) -> np.ndarray:
        """Distance (mm) from each LPS point ``[N, 3]`` to the gland: 0 inside the mask, else to the nearest gland
        voxel centre; ``inf`` for every point when the mask is empty."""
        points = np.asarray(points_lps, dtype=np.float64).reshape(-1, 3)
        mask = sitk.GetArrayViewFromImage(self.mask) > 0
        if not mask.any():
            return np.full(len(points), np.inf)
        grid = Grid.from_image(self.mask)
        gland_points = grid.index_to_lps(np.argwhere(mask).astype(np.float64))
        distances = np.empty(len(points))
        for n, point in enumerate(points):
            index = np.round(grid.lps_to_index(point)).astype(int)
            if grid.contains_index(index, margin=0.0) and mask[tuple(index)]:
                distances[n] = 0.0
            else:
                distances[n] = float(np.sqrt(((gland_points - point) ** 2).sum(1).min()))
        return distances

    def flag(self, candidates: Sequence) -> None:
        """Set each candidate's ``in_gland`` (in place); left ``None`` when the mask is empty (nothing to confine)."""
        if not candidates or self.empty:
            return
        distances = self.distance_mm([c.center_lps_mm for c in candidates])
        for candidate, distance in zip(candidates, distances, strict=True):
            candidate.in_gland = bool(distance <= self.margin_mm)

    def to_dict(self) -> dict:
        """The ``gland`` entry of ``result.json``."""
        return {
            "volume_ml": round(self.volume_ml, 4),
            "margin_mm": self.margin_mm,
            "centroid_lps_mm": None if self.centroid_lps_mm is None else [float(v) for v in self.centroid_lps_mm],
            "model": self.model_name,
            "model_sha256": self.model_sha256,
            "warnings": list(self.warnings),
            "file": "gland.nii.gz",
        }

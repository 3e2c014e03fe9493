"""One hidden box at a point of a study: what the synthesis model makes of it there (the FIG 7A/7B viewer).

>>> from LesionAILib.synthesis.slice_analysis import abnormality_analyzer
>>> seen = view_at_point(abnormality_analyzer("synthesis.safetensors"), case, (25.7, 31.9, -38.5))  # LPS mm
>>> seen.difference        # {"t2w": 0.21, "adc": 0.83, ...}: mean |real − synthesised| inside the box
>>> box_panels(seen.view, seen.roles, "view.png", "…")             # incomplete / synthesised / real / difference

A **3D model** sees the case preprocessed onto its synthesis grid **centred on the point** (the same
preprocessing and normalisation as its abnormality map, :mod:`LesionAILib.synthesis.volumes`), so the
hidden box (its mask size, e.g. 4 × 16 × 16 voxels = 12 × 16 × 16 mm) is centred on the point wherever
the gland is, up to the grid's snap onto the T2 voxel lattice (under half a T2 voxel per axis, so the
T2 is not interpolated between its slices). A **2D patch model** (the real-patient ProstateX one) sees
the native ADC slice nearest the point, equalised as in training, with the centre box of the 32 × 32
window at the point hidden. Differences are in the model's input units (robust z for T2 and high-b and
10⁻³ mm²/s for ADC in 3D; equalised intensities 0–1 in 2D), not the map's z-scores against normal tissue.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from LesionAILib.errors import LesionAIError
from LesionAILib.geometry import Grid, lps_to_ras
from LesionAILib.preprocessing.pipeline import preprocess
from LesionAILib.studies.case import Case
from LesionAILib.synthesis.mapping import BoxSynthesis
from LesionAILib.synthesis.volumes import REGION_FOV_CENTRE, SynthesisVolume


@dataclass
class PointView:
    """The hidden box at one point (positions in mm; ``view`` crops [C, *context] on the model's grid).

    Attributes:
        point_lps_mm / point_ras_mm: the point asked for (LPS, and the same point in RAS).
        box_centre_lps_mm: the centre of the hidden box (the point, snapped onto the grid's voxels).
        difference: per role, mean |real − synthesised| inside the hidden box (the model's input units).
    """

    case_id: str
    model_name: str
    model_notice: str
    roles: tuple[str, ...]
    point_lps_mm: tuple[float, float, float]
    point_ras_mm: tuple[float, float, float]
    box_centre_lps_mm: tuple[float, float, float]
    difference: dict[str, float]
    view: BoxSynthesis

    def to_dict(self) -> dict:
        """JSON-ready summary (no arrays)."""
        return {
            "case_id": self.case_id,
            "model": self.model_name,
            "notice": self.model_notice,
            "point_lps_mm": list(self.point_lps_mm),
            "point_ras_mm": list(self.point_ras_mm),
            "box_centre_lps_mm": list(self.box_centre_lps_mm),
            "box_size_voxels": list(self.view.box.size),
            "difference": {role: round(value, 6) for role, value in self.difference.items()},
        }


def _outside(case: Case, point: Sequence[float], what: str, hint: str = "choose a point every sequence covers"):
    raise LesionAIError(
        f"the point LPS ({', '.join(f'{v:g}' for v in point)}) mm lies outside {what}", case.case_id, hint
    )


def _check_inside(case: Case, point: Sequence[float]) -> None:
    """One line naming the case and the T2's extent when the point lies outside the T2 image."""
    t2 = Grid.from_image(case.t2w)
    if not bool(t2.contains_index(t2.lps_to_index(point))):
        corners = t2.index_to_lps(np.array([[0, 0, 0], np.asarray(t2.shape) - 1], dtype=np.float64))
        low, high = corners.min(0), corners.max(0)
        extent = ", ".join(f"{a:.1f}..{b:.1f}" for a, b in zip(low, high, strict=True))
        _outside(
            case,
            point,
            f"the T2 image (LPS x, y, z {extent} mm)",
            "give a point inside the study (LPS mm; --at-ras for Slicer's RAS)",
        )


def _synthesis_grid_view(analyzer, case: Case, point: tuple[float, float, float]) -> tuple[Grid, BoxSynthesis]:
    """A 3D model: the case on its synthesis grid centred on ``point``, the box hidden there."""
    prepared = preprocess(case, analyzer.metadata.preprocess, center_lps=point, device="cpu")
    grid = prepared.grid
    centre = grid.lps_to_index(point)
    coverage = prepared.fov.numpy()
    nearest = tuple(int(np.clip(round(c), 0, n - 1)) for c, n in zip(centre, grid.shape, strict=True))
    missing = [role for role, covered in zip(prepared.roles, coverage, strict=True) if not covered[nearest]]
    if missing:
        _outside(case, point, f"the {', '.join(missing)} image(s)")
    acquired = coverage.all(0)
    volume = SynthesisVolume(
        image=prepared.image.numpy(),
        acquired=acquired,
        region=acquired,
        lesions=None,
        grid=grid,
        t2_grid=prepared.t2_grid,
        roles=prepared.roles,
        region_source=REGION_FOV_CENTRE,
    )
    return grid, analyzer.view_at(volume, tuple(centre))


def _native_slice_view(analyzer, case: Case, point: tuple[float, float, float]) -> tuple[Grid, BoxSynthesis]:
    """A 2D patch model: the case on its native ADC grid (equalised as in training), the window at ``point``."""
    t2 = Grid.from_image(case.t2w)
    volume = analyzer.volume(case, t2.image_from_array(np.ones(t2.shape, np.uint8)))  # region unused: one window
    centre = volume.grid.lps_to_index(point)
    if not bool(volume.grid.contains_index(centre)):
        _outside(case, point, "the ADC image")
    return volume.grid, analyzer.view_at(volume, tuple(centre))


def view_at_point(analyzer, case: Case, point_lps: Sequence[float]) -> PointView:
    """The hidden box of ``analyzer``'s model centred at ``point_lps`` (mm) of ``case`` (see module docstring).

    ``analyzer``: a 3D :class:`~LesionAILib.synthesis.analysis.AbnormalityAnalyzer` or a 2D
    :class:`~LesionAILib.synthesis.slice_analysis.SliceAbnormalityAnalyzer`, as
    :func:`~LesionAILib.synthesis.slice_analysis.abnormality_analyzer` picks for a model file.

    Raises:
        LesionAIError: one line when the point lies outside the T2 image, or where not every sequence covers it.
    """
    point = tuple(float(v) for v in point_lps)
    _check_inside(case, point)
    on_synthesis_grid = getattr(analyzer.metadata, "preprocess", None) is not None
    grid, view = (_synthesis_grid_view if on_synthesis_grid else _native_slice_view)(analyzer, case, point)
    roles = tuple(analyzer.metadata.roles)
    gap = np.abs(view.real - view.synthesised)[:, view.hidden]  # [C, hidden voxels]
    return PointView(
        case_id=case.case_id,
        model_name=analyzer.metadata.display_name,
        model_notice=analyzer.metadata.notice,
        roles=roles,
        point_lps_mm=point,
        point_ras_mm=tuple(float(v) for v in lps_to_ras(point)),
        box_centre_lps_mm=tuple(float(v) for v in grid.index_to_lps(view.box.centre)),
        difference={role: float(gap[index].mean()) for index, role in enumerate(roles)},
        view=view,
    )

"""A case on the synthesis grid: normalised sequences, where they were acquired, the region to analyse, its lesions.

The synthesis grid (:data:`SYNTHESIS_PREPROCESS`, stored in every synthesis model file) is the
house preprocessing (:func:`LesionAILib.preprocessing.pipeline.preprocess`: T2 frame, T2/high-b
robust z-score, ADC in 10⁻³ mm²/s) at 3 × 1 × 1 mm, 16 × 96 × 96 voxels (48 × 96 × 96 mm),
centred on the region's centroid. The **region** is the prostate: a gland mask on the T2 grid
(the phantom's own mask, or :mod:`LesionAILib.gland` on real studies), or, without one, an
ellipsoid around the T2 field-of-view centre (:data:`FALLBACK_SEMI_AXES_MM`), which the result says.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import SimpleITK as sitk

from LesionAILib.geometry import Grid
from LesionAILib.preprocessing.pipeline import PreprocessConfig, preprocess
from LesionAILib.preprocessing.resampling import resample_sitk_image
from LesionAILib.studies.case import Case

SYNTHESIS_PREPROCESS = PreprocessConfig(shape=(16, 96, 96), spacing=(3.0, 1.0, 1.0))
FALLBACK_SEMI_AXES_MM = (20.0, 25.0, 30.0)  # Z, Y, X: a typical gland (≈ 40 × 50 × 60 mm) around the FOV centre
REGION_GLAND, REGION_FOV_CENTRE = "gland mask", "ellipsoid around the T2 field-of-view centre (no gland mask)"


@dataclass
class SynthesisVolume:
    """One case on the synthesis grid.

    Attributes:
        image: [C, Z, Y, X] float32, the normalised sequences (``roles`` order).
        acquired: [Z, Y, X] bool, every sequence covers the voxel.
        region: [Z, Y, X] bool, the voxels to analyse (the prostate).
        lesions: [Z, Y, X] int, lesion instance ids (0 elsewhere) when known, else ``None``.
        grid: the synthesis grid; t2_grid: the T2 series' grid (LPS mm).
        region_source: :data:`REGION_GLAND` or :data:`REGION_FOV_CENTRE`.
    """

    image: np.ndarray
    acquired: np.ndarray
    region: np.ndarray
    lesions: np.ndarray | None
    grid: Grid
    t2_grid: Grid
    roles: tuple[str, ...]
    region_source: str


def mask_centroid_lps(mask: sitk.Image) -> tuple[float, float, float] | None:
    """LPS mm centroid of a mask's non-zero voxels (``None`` when empty)."""
    voxels = np.argwhere(sitk.GetArrayViewFromImage(mask) > 0)
    if not len(voxels):
        return None
    return tuple(float(v) for v in Grid.from_image(mask).index_to_lps(voxels.mean(0)))


def fallback_region(
    grid: Grid, centre_lps: Sequence[float], semi_axes_mm: Sequence[float] = FALLBACK_SEMI_AXES_MM
) -> np.ndarray:
    """[Z, Y, X] bool: the ellipsoid with ``semi_axes_mm`` (along the grid's Z, Y, X axes) around ``centre_lps``."""
    centre = grid.lps_to_index(centre_lps)
    axes = np.meshgrid(*[np.arange(n) for n in grid.shape], indexing="ij")
    radius = sum(((a - c) * s / r) ** 2 for a, c, s, r in zip(axes, centre, grid.spacing, semi_axes_mm, strict=True))
    return radius <= 1.0


def synthesis_volume(
    case: Case, gland: sitk.Image | None = None, config: PreprocessConfig = SYNTHESIS_PREPROCESS
) -> SynthesisVolume:
    """Preprocess ``case`` onto the synthesis grid around its gland (``gland``: mask on the T2 grid, or ``None``).

    ``case.lesion_mask`` (instances on the T2 grid), when present, is carried along (nearest).
    """
    centre = mask_centroid_lps(gland) if gland is not None else None
    prepared = preprocess(case, config, center_lps=centre, device="cpu")
    grid = prepared.grid
    if centre is not None:
        region = sitk.GetArrayFromImage(resample_sitk_image(gland, grid, "nearest")) > 0.5
        source = REGION_GLAND
    else:
        region = fallback_region(grid, prepared.t2_grid.center_lps)
        source = REGION_FOV_CENTRE
    acquired = prepared.fov.numpy().all(0)
    lesions = None if prepared.lesion_mask is None else prepared.lesion_mask.numpy().astype(np.int32)
    return SynthesisVolume(
        image=prepared.image.numpy(),
        acquired=acquired,
        region=region & acquired,
        lesions=lesions,
        grid=grid,
        t2_grid=prepared.t2_grid,
        roles=prepared.roles,
        region_source=source,
    )


def phantom_volume(phantom, config: PreprocessConfig = SYNTHESIS_PREPROCESS) -> SynthesisVolume:
    """A :class:`~LesionAILib.phantom.cases.PhantomCase` on the synthesis grid: its zones are the gland, its
    lesion instances (every lesion, benign mimics included) the lesions."""
    from LesionAILib.studies.case import SeriesSource, make_case

    sources = {role: SeriesSource(role, "synthetic phantom", [phantom.case_id]) for role in ("t2w", "adc", "hbv")}
    images = {"t2w": phantom.t2w, "adc": phantom.adc, "hbv": phantom.hbv}
    case = make_case(images, phantom.patient_id, "", sources, lesion_mask=phantom.lesion_instances)
    gland = sitk.Cast(phantom.zones > 0, sitk.sitkUInt8)
    return synthesis_volume(case, gland, config)

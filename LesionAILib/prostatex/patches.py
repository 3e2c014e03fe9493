"""Finding patches exactly as the ProstateX findings dataset defines them, from any study and point.

For each sequence (T2, ADC, high-b), in that series' own grid (no resampling):

1. the whole volume is **histogram-equalised**: every voxel becomes the fraction of the volume's
   voxels at or below its value (the cumulative distribution, in [0, 1]); integer volumes use one
   bin per integer, others 65536 bins over their range — scikit-image's ``equalize_hist(volume,
   nbins=65536)``;
2. the **axial slice through the point** is the nearest slice, ``k = round(k_point)``;
3. a **32 × 32 window** at the series' native in-plane resolution (T2 ≈ 0.5 mm → 16 mm field of
   view, ADC and high-b 2 mm → 64 mm), rows in DICOM order, placed so that the voxel nearest the
   point, ``(round(j_point), round(i_point))``, is patch pixel (row 15, column 16)
   (:data:`NEAREST_VOXEL_AT`). Parts of the window outside the volume are 0.

That offset convention was measured on the two full studies in ``../shared/data/prostatex``: at the
ProstateX-0000 and ProstateX-0001 findings it reproduces the stored patches of all three
sequences exactly (correlation 1.0, best offset (0, 0) within ±2 pixels; ``Testing/test_patches.py``).
The dataset README's "slice ``k - 1`` of the ``ijk`` listed in ``images.csv``" holds for both (listed
k = 9 and 10; continuous k = 8.498 and 8.99999, slices 8 and 9); the listed ``ijk`` itself rounds
up, so it cannot place the window — the nearest voxel of the continuous index does.

Each patch comes with a **localization map** on the same 32 × 32 grid — the channel the classifier
takes besides the images: either a Gaussian blob centred on the patch (σ = 6 T2 pixels, 3 ADC/high-b
pixels: 3 mm and 6 mm at ProstateX resolution; this is what the shipped classifier was trained
with), or a localizer heatmap (any SimpleITK image in LPS) sampled at the patch pixels' centres.

>>> extractor = PatchExtractor(open_case("ProstateX-0000"))   # equalises the three volumes once
>>> patches = extractor.extract((25.7457, 31.8707, -38.511))    # LPS mm
>>> patches.images["adc"].shape, patches.windows["adc"].slice_index
((32, 32), 8)
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import SimpleITK as sitk

from LesionAILib.errors import StudyError
from LesionAILib.geometry import Grid, lps_to_ras, ras_to_lps
from LesionAILib.studies.case import Case
from LesionAILib.studies.roles import ROLE_NAMES, ROLES

PATCH_SIZE = 32
NEAREST_VOXEL_AT = (15, 16)  # (row, column) of the patch where the voxel nearest the point lands
EQUALISATION_BINS = 65536
BLOB_SIGMA_PIXELS = {"t2w": 6.0, "adc": 3.0, "hbv": 3.0}


def equalize_histogram(volume: np.ndarray, bins: int = EQUALISATION_BINS) -> np.ndarray:
    """Whole-volume histogram equalisation: each voxel → the volume's cumulative distribution at its value.

    Args:
        volume: any-shaped array. Integer volumes get one bin per integer value; float volumes
            ``bins`` equal bins over [min, max] with linear interpolation between bin centres
            (both as scikit-image's ``equalize_hist``).

    Returns:
        float32 array of the same shape, values in (0, 1].
    """
    values = np.asarray(volume)
    if np.issubdtype(values.dtype, np.integer) and int(values.max()) - int(values.min()) < 2**24:
        offsets = (values.astype(np.int64) - int(values.min())).ravel()
        cdf = np.cumsum(np.bincount(offsets)) / offsets.size
        return cdf[offsets].reshape(values.shape).astype(np.float32)
    values = values.astype(np.float64)
    low, high = float(values.min()), float(values.max())
    counts, edges = np.histogram(values, bins=bins, range=(low, high if high > low else low + 1.0))
    centres = 0.5 * (edges[:-1] + edges[1:])
    cdf = np.cumsum(counts) / values.size
    return np.interp(values.ravel(), centres, cdf).reshape(values.shape).astype(np.float32)


@dataclass(frozen=True)
class PatchWindow:
    """Where a patch lies in its series: slice ``slice_index``, rows/columns from ``row_start``/``column_start``.

    ``grid`` is the series' grid (LPS); ``point_index`` the point's continuous (k, j, i) index in it.
    """

    role: str
    grid: Grid
    slice_index: int
    row_start: int
    column_start: int
    point_index: tuple[float, float, float]
    size: int = PATCH_SIZE

    @property
    def spacing_mm(self) -> tuple[float, float]:
        """In-plane pixel size (row, column) in mm."""
        return self.grid.spacing[1], self.grid.spacing[2]

    def reference_image(self) -> sitk.Image:
        """A size × size × 1 image whose voxel centres are the patch pixels (for resampling onto the patch)."""
        origin = self.grid.index_to_lps((self.slice_index, self.row_start, self.column_start))
        reference = sitk.Image([self.size, self.size, 1], sitk.sitkFloat32)
        reference.SetOrigin(tuple(float(v) for v in origin))
        reference.SetSpacing(self.grid.spacing_xyz)
        reference.SetDirection(self.grid.direction_matrix.ravel().tolist())
        return reference

    def to_dict(self) -> dict:
        return {
            "slice_index": self.slice_index,
            "rows": [self.row_start, self.row_start + self.size],
            "columns": [self.column_start, self.column_start + self.size],
            "pixel_mm": [round(v, 4) for v in self.spacing_mm],
            "point_index_kji": [round(v, 3) for v in self.point_index],
        }


def patch_window(grid: Grid, point_lps: Sequence[float], role: str, size: int = PATCH_SIZE) -> PatchWindow:
    """The dataset's window for ``point_lps`` (mm) in a series of ``grid``; refuses points outside the volume."""
    index = grid.lps_to_index(point_lps)
    nearest = np.floor(index + 0.5).astype(int)
    if np.any(nearest < 0) or np.any(nearest >= np.asarray(grid.shape)):
        raise StudyError(
            f"the point LPS ({', '.join(f'{v:.1f}' for v in point_lps)}) mm is outside the {ROLE_NAMES[role]} "
            f"volume (continuous index k, j, i = {', '.join(f'{v:.1f}' for v in index)}; "
            f"size {', '.join(str(s) for s in grid.shape)})",
            hint="give a point inside the study, in LPS mm, or in RAS mm with --ras",
        )
    k, j, i = (int(v) for v in nearest)
    row, column = NEAREST_VOXEL_AT
    return PatchWindow(role, grid, k, j - row, i - column, tuple(float(v) for v in index), size)


def cut_window(volume: np.ndarray, window: PatchWindow) -> np.ndarray:
    """The window's [size, size] float32 pixels of a [Z, Y, X] volume (0 where it leaves the volume)."""
    patch = np.zeros((window.size, window.size), np.float32)
    rows, columns = volume.shape[1:]
    r0, c0 = max(window.row_start, 0), max(window.column_start, 0)
    r1, c1 = min(window.row_start + window.size, rows), min(window.column_start + window.size, columns)
    if r1 > r0 and c1 > c0:
        patch[r0 - window.row_start : r1 - window.row_start, c0 - window.column_start : c1 - window.column_start] = (
            volume[window.slice_index, r0:r1, c0:c1]
        )
    return patch


def localization_blob(sigma_pixels: float, size: int = PATCH_SIZE) -> np.ndarray:
    """[size, size] float32 Gaussian centred on the patch centre ((size − 1) / 2), peak ≈ 1, σ in pixels."""
    offsets = np.arange(size, dtype=np.float64) - (size - 1) / 2.0
    squared = offsets[:, None] ** 2 + offsets[None, :] ** 2
    return np.exp(-squared / (2.0 * sigma_pixels**2)).astype(np.float32)


def sample_heatmap(heatmap: sitk.Image, window: PatchWindow) -> np.ndarray:
    """A heatmap (any 3D image, LPS geometry) sampled linearly at the window's pixel centres: [size, size] float32."""
    sampled = sitk.Resample(
        sitk.Cast(heatmap, sitk.sitkFloat32), window.reference_image(), sitk.Transform(), sitk.sitkLinear, 0.0
    )
    return sitk.GetArrayFromImage(sampled)[0].astype(np.float32)


@dataclass
class FindingPatches:
    """The patches of one point: per role (``t2w``, ``adc``, ``hbv``) a [32, 32] float32 image in [0, 1]
    (equalised), its localization map and its window; ``localization_source`` is ``"blob"`` or ``"heatmap"``."""

    point_lps: tuple[float, float, float]
    images: dict[str, np.ndarray]
    localization: dict[str, np.ndarray]
    windows: dict[str, PatchWindow]
    localization_source: str

    @property
    def point_ras(self) -> tuple[float, float, float]:
        return tuple(float(v) for v in lps_to_ras(self.point_lps))

    def to_dict(self) -> dict:
        return {
            "point_lps_mm": [round(v, 3) for v in self.point_lps],
            "point_ras_mm": [round(v, 3) for v in self.point_ras],
            "localization": self.localization_source,
            "windows": {role: window.to_dict() for role, window in self.windows.items()},
        }


class PatchExtractor:
    """Extracts dataset-style patches from one case; equalises each volume once (see module docstring).

    Args:
        case: the study (native grids, LPS).
        equalised: optional precomputed ``{role: [Z, Y, X] equalised volume}``.
    """

    def __init__(self, case: Case, equalised: Mapping[str, np.ndarray] | None = None):
        self.case = case
        self.grids = {role: case.grid(role) for role in ROLES}
        self.equalised = dict(equalised) if equalised is not None else {}
        for role in ROLES:
            if role not in self.equalised:
                self.equalised[role] = equalize_histogram(sitk.GetArrayViewFromImage(case.image(role)))

    def extract(self, point: Sequence[float], ras: bool = False, heatmap: sitk.Image | None = None) -> FindingPatches:
        """Patches at ``point`` (mm; LPS, or RAS with ``ras=True``); localization = ``heatmap`` sampled, else blobs.

        Raises :class:`~LesionAILib.errors.StudyError` (one line) if the point is outside a volume.
        """
        point_lps = tuple(float(v) for v in (ras_to_lps(point) if ras else np.asarray(point, dtype=np.float64)))
        if len(point_lps) != 3 or not np.all(np.isfinite(point_lps)):
            raise StudyError(f"a point needs three finite coordinates in mm, got {tuple(point)}")
        windows = {role: patch_window(self.grids[role], point_lps, role) for role in ROLES}
        images = {role: cut_window(self.equalised[role], windows[role]) for role in ROLES}
        if heatmap is None:
            localization = {role: localization_blob(BLOB_SIGMA_PIXELS[role]) for role in ROLES}
        else:
            localization = {role: sample_heatmap(heatmap, windows[role]) for role in ROLES}
        return FindingPatches(point_lps, images, localization, windows, "blob" if heatmap is None else "heatmap")


def extract_patches(
    case: Case, point: Sequence[float], ras: bool = False, heatmap: sitk.Image | None = None
) -> FindingPatches:
    """One-off :meth:`PatchExtractor.extract` (use a :class:`PatchExtractor` for several points of a case)."""
    return PatchExtractor(case).extract(point, ras, heatmap)

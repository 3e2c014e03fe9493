"""Segment the prostate gland on a T2 image with the TAPS network: one or two windows placed on the gland.

>>> from LesionAILib.gland.segmentation import GlandSegmenter
>>> gland = GlandSegmenter().segment(case.t2w)        # CUDA when available
>>> gland.volume_ml, gland.warnings, gland.mask       # mask: uint8 SimpleITK image on the T2 grid

Steps (facts of the released model, ``lavlab-taps`` 1.1.2; code our own):

1. The T2 on the model grid (:mod:`LesionAILib.gland.preprocessing`): 0.8 × 0.8 × 3 mm, RAS-ordered
   axes, z-scored over non-zero voxels.
2. **Window placement instead of a full sliding window.** The network sees 128 × 128 × 32 voxels
   (R, A, S; 102 × 102 × 96 mm). The first window is centred on the centre of the T2 field of view;
   if the gland it finds is centred more than :data:`REFINE_DISTANCE_VOXELS` from the window centre
   or comes within :data:`EDGE_MARGIN_VOXELS` of a window edge, a second window is centred on the
   gland's centroid and the two are blended with the Gaussian weights of a sliding window
   (σ = 0.125 × window size). Along an axis shorter than the window (S, usually) the window covers the
   foreground box with zero padding split as the package splits it. The package itself covers the
   whole foreground box with half-overlapping windows (≈ 9 per study, 45–60 s here).
3. The logits (where the windows reach, clipped to the foreground box) are blurred by a Gaussian
   of σ = 2.5 model voxels (edges repeated), resampled linearly into the exact T2 geometry and
   thresholded at probability 0.55 (logit > ln(0.55 / 0.45)); the largest 26-connected component is
   the gland.
4. Quality checks (:mod:`LesionAILib.gland.quality`) give warning lines, never errors.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import SimpleITK as sitk
import torch
from scipy import ndimage

from LesionAILib.devices import resolve_device
from LesionAILib.errors import StudyWarning
from LesionAILib.geometry import Grid, lps_to_ras
from LesionAILib.gland.model_file import GlandModelInfo, load_gland_network
from LesionAILib.gland.preprocessing import GlandInput, gland_input
from LesionAILib.gland.quality import gland_warnings

WINDOW_ZYX = (32, 128, 128)  # S, A, R voxels
WINDOW_SIGMA_SCALE = 0.125
LOGIT_BLUR_SIGMA_VOXELS = 2.5
PROBABILITY_THRESHOLD = 0.55
LOGIT_THRESHOLD = float(np.log(PROBABILITY_THRESHOLD / (1.0 - PROBABILITY_THRESHOLD)))
REFINE_DISTANCE_VOXELS = 16  # 12.8 mm in-plane
EDGE_MARGIN_VOXELS = 8  # 6.4 mm in-plane
_OUTSIDE_LOGIT = -100.0  # where no window reached: certainly not gland
_CONNECTIVITY = np.ones((3, 3, 3), bool)


@dataclass
class GlandSegmentation:
    """A gland mask and what made it.

    Attributes:
        mask: uint8 SimpleITK image, exactly the T2 image's grid (1 = gland).
        volume_ml: gland volume (voxels × T2 voxel volume).
        centroid_lps_mm, centroid_ras_mm: the mask's centroid (``None`` when empty).
        warnings: one line per quality finding (empty mask, volume, extent, border, parts, gaps).
        model: which weights (name, version, sha256).
        windows: network windows run (1 or 2).
        device: where the network ran; timings: seconds per stage.
    """

    mask: sitk.Image
    volume_ml: float
    centroid_lps_mm: tuple[float, float, float] | None
    centroid_ras_mm: tuple[float, float, float] | None
    warnings: list[str]
    model: GlandModelInfo
    windows: int
    device: str
    timings: dict[str, float] = field(default_factory=dict)


def window_weights(shape=WINDOW_ZYX, sigma_scale: float = WINDOW_SIGMA_SCALE) -> np.ndarray:
    """Gaussian blending weights of one window ``[Z, Y, X]`` float32: 1 at the centre, σ = ``sigma_scale`` × size."""
    profiles = [np.exp(-((np.arange(n) - (n - 1) / 2.0) ** 2) / (2.0 * (sigma_scale * n) ** 2)) for n in shape]
    weights = profiles[0][:, None, None] * profiles[1][None, :, None] * profiles[2][None, None, :]
    return (weights / weights.max()).astype(np.float32)


def window_start(prepared: GlandInput, centre_index: np.ndarray) -> np.ndarray:
    """The first voxel (Z, Y, X) of a window centred on ``centre_index`` (model grid), kept inside the
    foreground box; along an axis shorter than the window the box is centred in it (extra padding after)."""
    start = []
    for axis, size in enumerate(WINDOW_ZYX):
        low, high = prepared.foreground_start[axis], prepared.foreground_stop[axis]
        if high - low <= size:
            start.append(low - (size - (high - low)) // 2)
        else:
            start.append(int(np.clip(round(centre_index[axis] - (size - 1) / 2.0), low, high - size)))
    return np.asarray(start)


def crop_block(image: np.ndarray, start: np.ndarray, shape) -> np.ndarray:
    """``image[start : start + shape]`` with zeros where the block leaves the array."""
    block = np.zeros(shape, np.float32)
    source = tuple(slice(max(s, 0), min(s + n, size)) for s, n, size in zip(start, shape, image.shape, strict=True))
    target = tuple(slice(piece.start - s, piece.stop - s) for piece, s in zip(source, start, strict=True))
    block[target] = image[source]
    return block


class GlandSegmenter:
    """The TAPS gland model, loaded once (sha256-checked) and run on T2 images.

    Args:
        device: ``"auto"`` (CUDA when available), ``"cpu"`` or ``"cuda"``.
        model_path: an ONNX file instead of the installed ``lavlab-taps`` one (still checked by sha256).
    """

    def __init__(self, device: str | torch.device = "auto", model_path: str | Path | None = None):
        self.device = resolve_device(device)
        self.network, self.model = load_gland_network(self.device, model_path)
        self._weights = window_weights()

    @torch.inference_mode()
    def window_logits(self, image: np.ndarray) -> np.ndarray:
        """Network logits ``[Z, Y, X]`` (S, A, R) of one z-scored window ``[Z, Y, X]``."""
        tensor = torch.from_numpy(np.ascontiguousarray(image.transpose(2, 1, 0)))[None, None].to(self.device)
        return self.network(tensor)[0, 0].float().cpu().numpy().transpose(2, 1, 0)

    def blended_logits(self, prepared: GlandInput, starts: list[np.ndarray], logits: list[np.ndarray]):
        """Gaussian-weighted logits of the windows over the part of the foreground box they cover.

        Returns ``(logits [Z, Y, X] float32, first voxel (Z, Y, X) on the model grid)``; voxels of the
        covering box that no window reached take the nearest reached value (so the blur sees no step).
        """
        low = np.maximum(np.min(starts, 0), prepared.foreground_start)
        high = np.minimum(np.max(starts, 0) + WINDOW_ZYX, prepared.foreground_stop)
        total = np.zeros(high - low, np.float64)
        weight = np.zeros(high - low, np.float64)
        for start, window in zip(starts, logits, strict=True):
            first, last = np.maximum(start, low), np.minimum(start + WINDOW_ZYX, high)
            target = tuple(slice(a - b, c - b) for a, c, b in zip(first, last, low, strict=True))
            source = tuple(slice(a - b, c - b) for a, c, b in zip(first, last, start, strict=True))
            total[target] += (window * self._weights)[source]
            weight[target] += self._weights[source]
        covered = weight > 0
        blended = np.where(covered, total / np.where(covered, weight, 1.0), 0.0)
        if not covered.all():
            nearest = ndimage.distance_transform_edt(~covered, return_distances=False, return_indices=True)
            blended = blended[tuple(nearest)]
        return blended.astype(np.float32), low

    @staticmethod
    def _gland_voxels(blurred: np.ndarray) -> np.ndarray:
        return blurred > LOGIT_THRESHOLD

    def _needs_second_window(self, prepared: GlandInput, start: np.ndarray, low: np.ndarray, gland: np.ndarray):
        """The centre (model-grid index) for a second window, or ``None`` when the first one holds the gland well."""
        if not gland.any():
            return None
        voxels = np.argwhere(gland) + low
        centroid = voxels.mean(0)
        for axis, size in enumerate(WINDOW_ZYX):
            box_low, box_high = prepared.foreground_start[axis], prepared.foreground_stop[axis]
            if box_high - box_low <= size:
                continue  # the window already covers the whole box along this axis
            first, last = start[axis], start[axis] + size - 1
            off_centre = abs(centroid[axis] - (first + last) / 2.0) > REFINE_DISTANCE_VOXELS
            # an edge of the window that the box goes beyond could cut the gland off
            near_low = voxels[:, axis].min() - first < EDGE_MARGIN_VOXELS and first > box_low
            near_high = last - voxels[:, axis].max() < EDGE_MARGIN_VOXELS and last < box_high - 1
            if off_centre or near_low or near_high:
                return centroid
        return None

    def segment(self, t2: sitk.Image, source: str | Path = "") -> GlandSegmentation:
        """The gland mask of a T2 image (any orientation; LPS geometry), on exactly its grid.

        Args:
            t2: the axial T2 as a 3D SimpleITK image.
            source: the file or series named in warning lines.
        """
        clock, timings = time.perf_counter(), {}

        def lap(stage: str) -> None:
            nonlocal clock
            if self.device.type == "cuda":
                torch.cuda.synchronize()
            now = time.perf_counter()
            timings[stage] = now - clock
            clock = now

        prepared = gland_input(t2)
        t2_grid = Grid.from_image(t2)
        lap("preprocess")
        fov_centre = prepared.grid.lps_to_index(t2_grid.center_lps)
        starts = [window_start(prepared, fov_centre)]
        logits = [self.window_logits(crop_block(prepared.image, starts[0], WINDOW_ZYX))]
        blended, low = self.blended_logits(prepared, starts, logits)
        blurred = ndimage.gaussian_filter(blended, LOGIT_BLUR_SIGMA_VOXELS, mode="nearest")
        lap("window_1")
        centre = self._needs_second_window(prepared, starts[0], low, self._gland_voxels(blurred))
        if centre is not None:
            second = window_start(prepared, centre)
            if not np.array_equal(second, starts[0]):
                starts.append(second)
                logits.append(self.window_logits(crop_block(prepared.image, second, WINDOW_ZYX)))
                blended, low = self.blended_logits(prepared, starts, logits)
                blurred = ndimage.gaussian_filter(blended, LOGIT_BLUR_SIGMA_VOXELS, mode="nearest")
            lap("window_2")
        mask, components, removed = self._mask_on_t2(prepared.grid, blurred, low, t2)
        lap("to_t2")
        lines = gland_warnings(mask, t2_grid, components, removed, str(source))
        lines += self._window_edge_warning(prepared, starts, t2_grid, mask, str(source))
        timings["total"] = sum(timings.values())
        return self._result(mask, t2, t2_grid, lines, len(starts), timings)

    def _mask_on_t2(self, grid: Grid, blurred: np.ndarray, low: np.ndarray, t2: sitk.Image):
        """Threshold the blurred logits resampled onto the T2 grid; keep the largest component.

        Returns (``[Z, Y, X]`` bool mask, number of components, voxels dropped)."""
        region = Grid(blurred.shape, grid.spacing, tuple(grid.index_to_lps(low.astype(float))), grid.direction)
        resampled = sitk.Resample(
            region.image_from_array(blurred), t2, sitk.Transform(), sitk.sitkLinear, _OUTSIDE_LOGIT, sitk.sitkFloat32
        )
        thresholded = sitk.GetArrayFromImage(resampled) > LOGIT_THRESHOLD
        labels, components = ndimage.label(thresholded, structure=_CONNECTIVITY)
        if components <= 1:
            return thresholded, components, 0
        sizes = np.bincount(labels.ravel())[1:]
        largest = labels == int(np.argmax(sizes)) + 1
        return largest, components, int(sizes.sum() - sizes.max())

    @staticmethod
    def _window_edge_warning(prepared, starts, t2_grid: Grid, mask: np.ndarray, source: str) -> list[str]:
        """A line when the gland reaches an in-plane edge of the windows inside the image (it may be cut off there)."""
        if not mask.any():
            return []
        index = prepared.grid.lps_to_index(t2_grid.index_to_lps(np.argwhere(mask)))
        low, high = np.min(starts, 0), np.max(starts, 0) + WINDOW_ZYX - 1
        for axis in (1, 2):
            cut_low = index[:, axis].min() <= low[axis] + 1 and low[axis] > prepared.foreground_start[axis]
            cut_high = index[:, axis].max() >= high[axis] - 1 and high[axis] < prepared.foreground_stop[axis] - 1
            if cut_low or cut_high:
                message = "gland mask reaches the edge of the model's window: it may be cut off"
                return [str(StudyWarning(message, source or None))]
        return []

    def _result(self, mask, t2, t2_grid: Grid, lines, windows: int, timings) -> GlandSegmentation:
        image = sitk.GetImageFromArray(mask.astype(np.uint8))
        image.CopyInformation(t2)
        centroid = None
        if mask.any():
            centroid = tuple(float(v) for v in t2_grid.index_to_lps(np.argwhere(mask).mean(0)))
        return GlandSegmentation(
            mask=image,
            volume_ml=float(mask.sum()) * t2_grid.voxel_volume_ml(),
            centroid_lps_mm=centroid,
            centroid_ras_mm=None if centroid is None else tuple(float(v) for v in lps_to_ras(centroid)),
            warnings=lines,
            model=self.model,
            windows=windows,
            device=str(self.device),
            timings=timings,
        )

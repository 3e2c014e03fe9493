"""The patch classifier's localization-map channel (centred blob, ADC-derived low-ADC map, or none),
and the diffusion patches brought onto the T2 patch's pixels that both a T2-grid map and a spatially
consistent channel stack need.

The three 32 × 32 patches of a finding lie in three grids (:mod:`LesionAILib.prostatex.patches`):
T2 at ≈ 0.5 mm (16 mm field of view), ADC and high-b at ≈ 2 mm (64 mm), each with the voxel
nearest the point at pixel (row 15, column 16). From the patches alone the point is taken at that
pixel's centre in both grids (the dataset keeps no sub-pixel position: up to 0.25 mm off on the
T2, 1 mm on the ADC), so T2 pixel (r, c) sits at ADC pixel (15 + (r − 15) / 4, 16 + (c − 16) / 4).

Map kinds (:data:`LOCALIZATION_KINDS`), each a [N, 2, 32, 32] pair (on the T2 grid, on the ADC grid):

* ``blob`` — the centred Gaussian the shipped classifier was trained with: the same for every
  finding (it tells a network where in the patch the point is, nothing about the finding);
* ``low_adc`` — the blob times a low-ADC likelihood: for each pixel the share of the patch's
  tissue pixels whose (smoothed, σ = 1 pixel) ADC is higher, so the map is bright where the point
  sits on tissue darker on ADC than its surroundings, and dark on a high-ADC spot. It is computed
  from the ADC patch, so it adds no information a network could not derive; it hands the
  network that derivation as a prior;
* ``none`` — zeros (the channel removed: a zero input channel adds nothing to a convolution).
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from scipy import ndimage

from LesionAILib.prostatex.patches import BLOB_SIGMA_PIXELS, NEAREST_VOXEL_AT, PATCH_SIZE, localization_blob

LOCALIZATION_KINDS = ("blob", "low_adc", "none")
T2_PIXELS_PER_DWI_PIXEL = 4.0  # ProstateX: T2 ≈ 0.5 mm, ADC / high-b ≈ 2 mm in-plane
ADC_SMOOTHING_PIXELS = 1.0


def diffusion_on_t2_pixels(diffusion: torch.Tensor) -> torch.Tensor:
    """[N, C, 32, 32] ADC-grid patches → [N, C, 32, 32] sampled bilinearly at the T2 patch's pixel centres."""
    count, channels, rows, columns = diffusion.shape
    row, column = NEAREST_VOXEL_AT
    positions = torch.arange(PATCH_SIZE, dtype=torch.float32)
    source_rows = row + (positions - row) / T2_PIXELS_PER_DWI_PIXEL
    source_columns = column + (positions - column) / T2_PIXELS_PER_DWI_PIXEL
    # grid_sample with align_corners=True: −1 and 1 are the centres of the first and last pixel
    y = (2.0 * source_rows / (rows - 1) - 1.0)[:, None].expand(PATCH_SIZE, PATCH_SIZE)
    x = (2.0 * source_columns / (columns - 1) - 1.0)[None, :].expand(PATCH_SIZE, PATCH_SIZE)
    grid = torch.stack([x, y], -1)[None].expand(count, PATCH_SIZE, PATCH_SIZE, 2)
    return F.grid_sample(diffusion.float(), grid, mode="bilinear", align_corners=True)


def aligned_channels(images: torch.Tensor) -> torch.Tensor:
    """[N, 3, 32, 32] T2 / ADC / high-b patches in their own grids → the same three sequences on the T2
    patch's pixels (16 mm field of view, where all three exist), a spatially consistent channel stack."""
    return torch.cat([images[:, :1], diffusion_on_t2_pixels(images[:, 1:3])], 1)


def low_adc_likelihood(adc: np.ndarray) -> np.ndarray:
    """[N, 32, 32] equalised ADC patches → [N, 32, 32] float32 in [0, 1]: per pixel the share of the
    patch's pixels inside the volume (ADC > 0) whose smoothed ADC is higher; 0 outside the volume."""
    likelihood = np.zeros(adc.shape, np.float32)
    for index, patch in enumerate(np.asarray(adc, np.float64)):
        tissue = patch > 0
        if tissue.sum() < 2:
            continue
        # normalised convolution: pixels outside the volume (0) do not darken the tissue next to them
        weight = ndimage.gaussian_filter(tissue.astype(np.float64), ADC_SMOOTHING_PIXELS)
        smoothed = ndimage.gaussian_filter(patch, ADC_SMOOTHING_PIXELS) / np.maximum(weight, 1e-6)
        ordered = np.sort(smoothed[tissue])
        higher = ordered.size - np.searchsorted(ordered, smoothed, side="right")
        likelihood[index] = np.where(tissue, higher / ordered.size, 0.0)
    return likelihood


def localization_maps(images: torch.Tensor, kind: str) -> torch.Tensor:
    """The [N, 2, 32, 32] float32 maps of ``kind`` (on the T2 grid, on the ADC grid) for [N, 3, 32, 32] patches."""
    if kind not in LOCALIZATION_KINDS:
        raise ValueError(f"unknown localization map {kind!r}; use one of {', '.join(LOCALIZATION_KINDS)}")
    count = images.shape[0]
    blobs = torch.from_numpy(
        np.stack([localization_blob(BLOB_SIGMA_PIXELS["t2w"]), localization_blob(BLOB_SIGMA_PIXELS["adc"])])
    )
    if kind == "none":
        return torch.zeros(count, 2, PATCH_SIZE, PATCH_SIZE)
    if kind == "blob":
        return blobs[None].expand(count, 2, PATCH_SIZE, PATCH_SIZE).clone()
    on_adc = torch.from_numpy(low_adc_likelihood(images[:, 1].numpy()))[:, None]
    on_t2 = diffusion_on_t2_pixels(on_adc)
    return torch.cat([on_t2, on_adc], 1) * blobs[None]

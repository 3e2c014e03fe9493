"""How a site's scanner images the phantom: scan planning, T2w and DWI signals, texture, bias, noise, ADC fit.

Each sequence is sampled on its own oblique grid (origin/spacing/direction as in DICOM); see
:mod:`LesionAILib.phantom.rendering` for the partial-volume sampling. Signals:

* T2w: ``S = k * PD * exp(-TE / T2)`` (arbitrary units; site A: PZ ~400, TZ ~210, muscle ~100,
  fat ~490, urine ~810), times a tissue texture, a smooth coil bias field and Rician noise
  (magnitude of complex Gaussian noise).
* DWI: ``S(b) = k * PD * exp(-TE_dwi / T2) * exp(-b * ADC)`` at the two b-values of the ADC fit
  (T2 shine-through included; fat suppressed to 2.5 %, but up to 5-30 % within 4 cm of the anterior
  skin, the usual B0-inhomogeneity failure), blurred slightly (EPI), bias field, Rician noise. The ADC
  map is the two-point log-linear fit of the noisy signals times the site's ADC calibration factor,
  set to 0 where the (smoothed) low-b signal is below 2.5 noise SD (as scanners do), and clipped to
  [0, 4000]. The high-b image is computed from the fit (``S(b_lo) * exp(-(b - b_lo) * ADC)``) or, for
  sites that acquire it, simulated directly with its own noise. The DWI content is shifted against
  the T2 (EPI misregistration, mostly along the phase-encode axis).

Arrays are [Z, Y, X] float32; T2w and high-b in arbitrary units, ADC in um^2/s.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from scipy import ndimage

from LesionAILib.geometry import Grid
from LesionAILib.phantom.anatomy import Anatomy
from LesionAILib.phantom.lesions import LesionSpec
from LesionAILib.phantom.profiles import SiteProfile
from LesionAILib.phantom.rendering import Labels, Lattice, TissueChannels, render
from LesionAILib.phantom.shapes import rotation
from LesionAILib.phantom.tissues import FAT, NORMAL_PZ, Tissue

_ADC_MAX = 4000.0  # um^2/s, upper clip of the ADC map
_FAT_SUPPRESSION = 0.025  # residual fat signal on (fat-saturated) DWI
_T2_REFERENCE_GAIN = 760.0  # T2w gain of site A: normal PZ (T2 165 ms, TE 104 ms) ~ 400
_DWI_REFERENCE_GAIN = 400.0  # DWI gain of site A: normal PZ at b=1400 ~ 20
_SUBSLICES = 3  # sub-samples through the slice thickness (odd: the middle one is the voxel centre)


@dataclass(frozen=True)
class ScanGeometry:
    """The grids of one examination (T2w, and DWI for ADC and high-b) and the DWI misregistration
    (LPS mm: what the DWI grid sees is displaced by it)."""

    t2_grid: Grid
    dwi_grid: Grid
    dwi_shift_lps: np.ndarray


def _acquisition_planes(rng: np.random.Generator, site: SiteProfile) -> tuple[np.ndarray, np.ndarray]:
    """Direction matrices (columns = image axes in LPS) of the T2w and the DWI grids.

    Oblique axial: tilt of 3-20 degrees about left-right (slice normal towards posterior-superior, like
    ProstateX), a small tilt about anterior-posterior and a small in-plane rotation.
    """
    deg = math.pi / 180.0
    t2 = rotation(-rng.uniform(3, 20) * deg, rng.normal(0, 3) * deg, rng.normal(0, 2) * deg)
    offset = site.dwi_tilt_offset_deg * deg * (1.0 if rng.random() < 0.5 else -1.0)
    dwi = t2 @ rotation(offset, 0.0, 0.0)
    return t2, dwi


def plan_scan(rng: np.random.Generator, site: SiteProfile, anatomy: Anatomy) -> ScanGeometry:
    """Oblique T2w and DWI grids centred near the gland, enough T2 slices to cover it (within the site's
    range), and the DWI shift: 0.5-1.5 times the site's misregistration, mostly along phase encoding."""
    t2_direction, dwi_direction = _acquisition_planes(rng, site)
    fov_centre = anatomy.to_lps(
        np.array([[rng.normal(0, 3), rng.normal(0, 3), 0.2 * anatomy.gland.semi[2] + rng.normal(0, 3)]])
    )[0]
    coverage = 2.1 * anatomy.gland.semi[2] + 20.0
    n_slices = int(np.clip(math.ceil(coverage / site.t2_slice_mm) + rng.integers(0, 2), *site.t2_slices))
    t2_grid = Grid(
        (n_slices, site.t2_matrix, site.t2_matrix),
        (site.t2_slice_mm, site.t2_inplane_mm, site.t2_inplane_mm),
        (0.0, 0.0, 0.0),
        t2_direction,
    ).centred_on(fov_centre)
    dwi_slices = int(round(n_slices * site.t2_slice_mm / site.dwi_slice_mm))
    dwi_grid = Grid(
        (dwi_slices, site.dwi_matrix[1], site.dwi_matrix[0]),
        (site.dwi_slice_mm, site.dwi_inplane_mm, site.dwi_inplane_mm),
        (0.0, 0.0, 0.0),
        dwi_direction,
    ).centred_on(fov_centre)
    shift_dir = np.array([rng.normal(0, 0.35), 1.0 if rng.random() < 0.5 else -1.0, rng.normal(0, 0.35)])
    shift = dwi_direction @ (shift_dir / np.linalg.norm(shift_dir)) * site.misregistration_mm * rng.uniform(0.5, 1.5)
    return ScanGeometry(t2_grid, dwi_grid, shift)


def _upsample2(array: np.ndarray, axis: int, length: int) -> np.ndarray:
    """Linear x2 upsampling along one axis (cell-centred samples), cropped to `length`."""
    a = np.moveaxis(array, axis, 0)
    previous = np.concatenate([a[:1], a[:-1]])
    following = np.concatenate([a[1:], a[-1:]])
    out = np.empty((2 * a.shape[0], *a.shape[1:]), a.dtype)
    out[0::2] = np.float32(0.75) * a + np.float32(0.25) * previous
    out[1::2] = np.float32(0.75) * a + np.float32(0.25) * following
    return np.moveaxis(out[:length], 0, axis)


def _texture(
    rng: np.random.Generator, shape: tuple[int, int, int], sigma_voxels: tuple[float, float, float]
) -> np.ndarray:
    """Smooth zero-mean unit-SD random field [Z, Y, X] (tissue microstructure), float32.

    Filtered white noise at half the in-plane resolution, upsampled linearly; sigma in voxels of `shape`.
    """
    coarse = rng.standard_normal((shape[0], (shape[1] + 1) // 2, (shape[2] + 1) // 2), dtype=np.float32)
    coarse = ndimage.gaussian_filter(coarse, (sigma_voxels[0], sigma_voxels[1] / 2, sigma_voxels[2] / 2))
    coarse /= max(float(coarse.std()), 1e-6)
    return _upsample2(_upsample2(coarse, 1, shape[1]), 2, shape[2])


def _bias_field(rng: np.random.Generator, anatomy: Anatomy, grid: Grid, strength: float) -> np.ndarray:
    """Smooth multiplicative coil-sensitivity field exp(quadratic polynomial of position) [Z, Y, X]."""
    lattice = Lattice(grid, (1, 1, 1), anatomy)
    scale = 1.0 / 100.0  # polynomial in units of 10 cm
    q = rng.normal(0, 0.5, (3, 3))
    q = (q + q.T) / 2 * strength * scale**2
    q[2, :] *= 0.3
    q[:, 2] *= 0.3
    lin = rng.normal(0, 0.6, 3) * strength * scale
    poly = lattice.quadratic(lattice.whole(), q, lin, 0.0)
    return np.exp(poly - np.float32(poly.mean()))


def _rician(rng: np.random.Generator, signal: np.ndarray, sigma: float) -> np.ndarray:
    """Magnitude of the signal plus complex Gaussian noise of SD sigma per channel."""
    real = rng.standard_normal(signal.shape, dtype=np.float32)
    real *= np.float32(sigma)
    real += signal
    imag = rng.standard_normal(signal.shape, dtype=np.float32)
    imag *= np.float32(sigma)
    return np.hypot(real, imag)


def _t2w_channels(site: SiteProfile) -> TissueChannels:
    gain = _T2_REFERENCE_GAIN * site.t2_gain

    def channels(tissue: Tissue) -> dict[str, float]:
        return {"t2w": gain * tissue.pd * math.exp(-site.t2_te_ms / tissue.t2_ms), "texture": tissue.texture}

    return channels


def _dwi_channels(site: SiteProfile) -> TissueChannels:
    gain = _DWI_REFERENCE_GAIN * site.dwi_gain
    b_lo, b_hi = site.adc_b_values

    def channels(tissue: Tissue) -> dict[str, float]:
        t2_ms = tissue.t2_ms if tissue.dwi_t2_ms is None else tissue.dwi_t2_ms
        unsuppressed = gain * tissue.pd * math.exp(-site.dwi_te_ms / t2_ms)
        s0 = unsuppressed * (_FAT_SUPPRESSION if tissue.fat else 1.0)
        values = {
            "b_lo": s0 * math.exp(-b_lo * tissue.adc * 1e-6),
            "b_hi": s0 * math.exp(-b_hi * tissue.adc * 1e-6),
            "texture": tissue.texture,
            "fat_s0": unsuppressed if tissue.fat else 0.0,
        }
        if site.hbv_acquired:
            values["hbv"] = s0 * math.exp(-site.hbv_b_value * tissue.adc * 1e-6)
        return values

    return channels


def acquire_t2w(
    rng: np.random.Generator, site: SiteProfile, anatomy: Anatomy, lesions: list[LesionSpec], grid: Grid
) -> tuple[np.ndarray, Labels]:
    """The noisy T2w array [Z, Y, X] float32 on `grid` and the ground-truth labels on the same grid."""
    channels, labels = render(
        anatomy, lesions, Lattice(grid, (1, 1, _SUBSLICES), anatomy), _t2w_channels(site), with_labels=True
    )
    assert labels is not None
    t2_sigma_vox = (0.3, 1.6, 1.6)
    t2w = channels["t2w"] * (1.0 + channels["texture"] * _texture(rng, labels.zones.shape, t2_sigma_vox))
    t2w *= _bias_field(rng, anatomy, grid, site.bias_field)
    # the site's SNR is that of normal PZ (before the per-case jitter)
    pz_t2w = _T2_REFERENCE_GAIN * site.t2_gain * math.exp(-site.t2_te_ms / NORMAL_PZ.t2_ms)
    t2w = _rician(rng, t2w, pz_t2w / site.t2_snr)
    return t2w.astype(np.float32), labels


def _add_fat_leak(
    rng: np.random.Generator, anatomy: Anatomy, lattice: Lattice, site: SiteProfile, channels: dict[str, np.ndarray]
) -> None:
    """Imperfect fat suppression near the anterior abdominal wall (B0 inhomogeneity at the air-tissue
    boundary): a residual fat signal fading over 40 mm from the skin, up to 5-30 % of unsuppressed fat,
    added to the DWI channels in place (fat ADC ~200 um^2/s, so it stays bright at high b)."""
    ramp_mm = 40.0
    strength = rng.uniform(0.05, 0.3)
    # leak = strength * clip((v_skin + ramp - v) / ramp, 0, 1), v = posterior coordinate of the body frame
    slope = np.array([0.0, -strength / ramp_mm, 0.0])
    leak = lattice.quadratic(
        lattice.whole(), np.zeros((3, 3)), slope, strength * (anatomy.anterior_skin_v + ramp_mm) / ramp_mm
    )
    np.clip(leak, 0.0, strength, out=leak)
    leak *= channels.pop("fat_s0")
    fat_adc = FAT.adc * 1e-6
    channels["b_lo"] += leak * np.float32(math.exp(-site.adc_b_values[0] * fat_adc))
    channels["b_hi"] += leak * np.float32(math.exp(-site.adc_b_values[1] * fat_adc))
    if "hbv" in channels:
        channels["hbv"] += leak * np.float32(math.exp(-site.hbv_b_value * fat_adc))


def _dwi_images(
    rng: np.random.Generator, site: SiteProfile, channels: dict[str, np.ndarray], bias: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Noisy ADC (um^2/s) and high-b arrays [Z, Y, X] from the noise-free DWI channels."""
    b_lo, b_hi = site.adc_b_values
    gain = _DWI_REFERENCE_GAIN * site.dwi_gain
    # the site's SNR is that of normal PZ (before the per-case jitter) at the low b-value
    pz_s0 = gain * math.exp(-site.dwi_te_ms / NORMAL_PZ.t2_ms)
    sigma = pz_s0 * math.exp(-b_lo * NORMAL_PZ.adc * 1e-6) / site.dwi_snr
    texture = channels["texture"]
    micro = 1.0 + texture * _texture(rng, texture.shape, (0.6, 0.8, 0.8))
    diffusion = 1.0 + 0.5 * texture * _texture(rng, texture.shape, (0.6, 0.8, 0.8))
    signals = {}
    for name in ("b_lo", "b_hi", "hbv"):
        if name not in channels:
            continue
        s = channels[name] * micro * bias
        if name != "b_lo":
            s *= diffusion
        s = ndimage.gaussian_filter(s, (0.0, 0.5, 0.3))  # EPI blurring, mostly along phase encoding (y)
        # the high-b images are averaged more: noise 0.6x that of the low b-value
        signals[name] = _rician(rng, s, sigma * (1.0 if name == "b_lo" else 0.6))
    tiny = np.float32(1e-3 * sigma)
    delta_b = np.float32((b_hi - b_lo) * 1e-6)  # s/um^2, so that the fit gives the ADC in um^2/s
    adc = np.log(np.maximum(signals["b_lo"], tiny) / np.maximum(signals["b_hi"], tiny)) / delta_b
    adc *= np.float32(site.adc_calibration)
    background = ndimage.gaussian_filter(signals["b_lo"], (0.0, 1.0, 1.0)) < 2.5 * sigma
    if site.hbv_acquired:
        hbv = signals["hbv"]
    else:
        hbv = signals["b_lo"] * np.exp(-(site.hbv_b_value - b_lo) * 1e-6 * np.clip(adc, 0.0, _ADC_MAX))
        hbv[background] = 0.0
    adc[background] = 0.0
    np.clip(adc, 0.0, _ADC_MAX, out=adc)
    return adc.astype(np.float32), hbv.astype(np.float32)


def acquire_dwi(
    rng: np.random.Generator, site: SiteProfile, anatomy: Anatomy, lesions: list[LesionSpec], scan: ScanGeometry
) -> tuple[np.ndarray, np.ndarray]:
    """Noisy ADC (um^2/s) and high-b arrays [Z, Y, X] float32 on the scan's DWI grid."""
    grid, shift = scan.dwi_grid, scan.dwi_shift_lps
    channels, _ = render(
        anatomy, lesions, Lattice(grid, (2, 2, _SUBSLICES), anatomy, shift), _dwi_channels(site), with_labels=False
    )
    _add_fat_leak(rng, anatomy, Lattice(grid, (1, 1, 1), anatomy, shift), site, channels)
    return _dwi_images(rng, site, channels, _bias_field(rng, anatomy, grid, site.bias_field))

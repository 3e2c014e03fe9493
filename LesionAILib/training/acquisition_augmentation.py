"""Augmentation over acquisition parameters: what another scanner protocol would have made of the same patient.

Each transform acts on preprocessed tensors (model grid, [C, Z, Y, X] per sample, channels in role
order ``t2w``, ``adc``, ``hbv``; T2 and high-b robust z-scores, ADC in 10⁻³ mm²/s) and leaves the
grid, the maps and the labels where they are:

* **resolution and slice thickness** — :func:`resample_down_up`: area-average down-sampling by a
  factor per axis, then trilinear up-sampling back to the grid (a coarser in-plane matrix, a thicker
  slice); the T2 and the diffusion acquisition get their own factors;
* **coil bias** — :func:`bias_field`: a smooth multiplicative field ``exp(quadratic polynomial)``
  on the T2 and (its own) on the high-b; not on the ADC, where a coil's sensitivity cancels in the fit;
* **b-value** — :func:`recompute_high_b`: the high-b image at ``b + Δb``, ``S · exp(−Δb · ADC)``
  (the scanners' computed-high-b formula, with the case's own ADC);
* **ADC calibration** — the ADC multiplied by a factor (vendors' ADCs differ by up to ~15 %);
* **noise** — Gaussian noise of a drawn standard deviation per channel inside the field of view;
* **misregistration** — :func:`move_rigidly`: the diffusion channels (one acquisition) displaced
  against the T2 by a shift through the slices and a tilt about the left-right axis (the in-plane
  shift is :class:`~LesionAILib.training.augmentation.AugmentConfig`'s ``misregistration_mm``).

Multiplicative changes need the signal, not its z-score: the signal is taken as ``z − z_min`` (the
pipeline clips at the 0.5th percentile, the air background, so a sample's minimum sits at zero
signal) and the result is brought back to the sample's mean and standard deviation, as the
pipeline's renormalisation would. On crops that hold no background (phase-2 candidate crops) the
zero is then the crop's darkest tissue, which weakens the multiplicative changes there.

The default ranges are those of the random acquisition profiles of the robustness run
(:mod:`LesionAILib.phantom.random_profiles`, issue 10) relative to the reference site A: slices up
to 5 mm (A: 3 mm), DWI pixels up to 3.2 mm (A: 2 mm), high-b 800–2000 (A: 1400), ADC calibration
0.85–1.15, bias field up to 0.8, misregistration up to 7 mm. They were fixed from those ranges, not
from any held-out site. Parameters are drawn from ``numpy.random.default_rng([*seed, 7])``, a stream
apart from the other augmentations', so switching this on leaves their draws unchanged.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from LesionAILib.dataclass_dicts import DictSerialisable

ACQUISITION_STREAM = 7  # appended to a sample's seed: its acquisition parameters' own random stream
BIAS_LENGTH_MM = 100.0  # the bias polynomial is in units of 10 cm, as the phantom's coil field


@dataclass(frozen=True)
class AcquisitionAugmentConfig(DictSerialisable):
    """Strengths of the acquisition augmentation; ``enabled=False`` (the default) turns it off.

    Attributes:
        probability: share of samples that get a simulated acquisition (the others pass unchanged).
        inplane_factors: largest in-plane down-sampling factor of the (T2, diffusion) acquisition (1: none).
        slice_factor: largest through-plane factor, drawn separately for the T2 and the diffusion.
        noise_sd: largest added noise SD per role (T2 and high-b in z units, ADC in 10⁻³ mm²/s).
        bias_strength: largest coil-field strength (log-amplitude scale of the phantom's profiles).
        adc_scale_range: the ADC is multiplied by a factor in [1 − r, 1 + r].
        b_value_shift: the high-b is recomputed at b + Δb, Δb in [−this, +this] s/mm².
        misregistration_z_mm: largest diffusion shift through the slices (mm).
        misregistration_tilt_degrees: largest diffusion tilt about the left-right axis.
    """

    enabled: bool = False
    probability: float = 0.8
    inplane_factors: tuple[float, float] = (1.3, 1.6)
    slice_factor: float = 1.7
    noise_sd: tuple[float, float, float] = (0.3, 0.15, 0.3)  # t2w, adc, hbv
    bias_strength: float = 0.8
    adc_scale_range: float = 0.15
    b_value_shift: float = 600.0
    misregistration_z_mm: float = 3.0
    misregistration_tilt_degrees: float = 5.0


@dataclass(frozen=True)
class Acquisition:
    """One sample's simulated acquisition (the parameters :func:`simulate_acquisition` applies)."""

    t2_factors: tuple[float, float, float]  # (Z, Y, X) down-sampling factors
    dwi_factors: tuple[float, float, float]
    t2_bias: tuple[np.ndarray, np.ndarray]  # (quadratic [3, 3], linear [3]) coefficients, per (Z, Y, X) mm
    dwi_bias: tuple[np.ndarray, np.ndarray]
    adc_scale: float
    delta_b: float  # s/mm²
    noise_sd: tuple[float, float, float]  # per role t2w, adc, hbv
    shift_z_mm: float
    tilt_radians: float
    noise_seed: int


def _bias_coefficients(rng: np.random.Generator, strength: float) -> tuple[np.ndarray, np.ndarray]:
    """A coil field's coefficients as the phantom draws them (through-plane terms weaker)."""
    quadratic = rng.normal(0, 0.5, (3, 3))
    quadratic = (quadratic + quadratic.T) / 2 * strength
    quadratic[0, :] *= 0.3
    quadratic[:, 0] *= 0.3
    return quadratic, rng.normal(0, 0.6, 3) * strength


def sample_acquisition(config: AcquisitionAugmentConfig, rng: np.random.Generator) -> Acquisition:
    """Draw one sample's acquisition within ``config``'s ranges (factors and strengths uniform)."""

    def factors(inplane: float) -> tuple[float, float, float]:
        through, across = rng.uniform(1.0, config.slice_factor), rng.uniform(1.0, inplane)
        return (float(through), float(across), float(across))

    t2_factors, dwi_factors = (factors(inplane) for inplane in config.inplane_factors)
    t2_bias = _bias_coefficients(rng, rng.uniform(0.0, config.bias_strength))
    dwi_bias = _bias_coefficients(rng, rng.uniform(0.0, config.bias_strength))
    noise = rng.uniform(0.0, 1.0, 3) * np.asarray(config.noise_sd)
    return Acquisition(
        t2_factors=t2_factors,
        dwi_factors=dwi_factors,
        t2_bias=t2_bias,
        dwi_bias=dwi_bias,
        adc_scale=float(1.0 + rng.uniform(-config.adc_scale_range, config.adc_scale_range)),
        delta_b=float(rng.uniform(-config.b_value_shift, config.b_value_shift)),
        noise_sd=tuple(float(v) for v in noise),
        shift_z_mm=float(rng.uniform(-config.misregistration_z_mm, config.misregistration_z_mm)),
        tilt_radians=math.radians(rng.uniform(-1.0, 1.0) * config.misregistration_tilt_degrees),
        noise_seed=int(rng.integers(0, 2**31 - 1)),
    )


# --------------------------------------------------------------------------- the transforms
def resample_down_up(volume: torch.Tensor, factors: Sequence[float]) -> torch.Tensor:
    """[C, Z, Y, X] → same shape, as if acquired ``factors`` (Z, Y, X) times coarser and resampled back.

    Area averaging onto ``round(size / factor)`` samples per axis, then trilinear interpolation back
    (cell-centred, so the content does not move). A factor of 1 leaves that axis as it is.
    """
    shape = volume.shape[1:]
    coarse = [max(1, round(size / max(float(f), 1.0))) for size, f in zip(shape, factors, strict=True)]
    if list(coarse) == list(shape):
        return volume
    down = F.interpolate(volume[None], size=coarse, mode="area")
    return F.interpolate(down, size=list(shape), mode="trilinear", align_corners=False)[0]


def bias_field(
    shape: Sequence[int], spacing: Sequence[float], coefficients: tuple[np.ndarray, np.ndarray]
) -> torch.Tensor:
    """[Z, Y, X] float32 multiplicative field ``exp(uᵀ Q u + l · u)``, normalised to a geometric mean of 1.

    ``u`` is the (Z, Y, X) position from the grid's centre in units of 10 cm (``spacing`` in mm);
    ``coefficients`` are ``(Q [3, 3], l [3])``.
    """
    quadratic, linear = (torch.as_tensor(c, dtype=torch.float32) for c in coefficients)
    axes = [
        (torch.arange(n, dtype=torch.float32) - (n - 1) / 2) * mm / BIAS_LENGTH_MM
        for n, mm in zip(shape, spacing, strict=True)
    ]
    position = torch.stack(torch.meshgrid(*axes, indexing="ij"), -1)  # [Z, Y, X, 3]
    log_field = torch.einsum("zyxi,ij,zyxj->zyx", position, quadratic, position) + position @ linear
    return torch.exp(log_field - log_field.mean())


def recompute_high_b(high_b_signal: torch.Tensor, adc: torch.Tensor, delta_b: float) -> torch.Tensor:
    """The high-b signal at ``b + delta_b`` (s/mm²): ``S · exp(−Δb · ADC)``, ADC in 10⁻³ mm²/s."""
    return high_b_signal * torch.exp(-delta_b * 1e-3 * adc.clamp(0.0, 4.0))


def in_signal_units(channel: torch.Tensor, inside: torch.Tensor, change) -> torch.Tensor:
    """Apply a multiplicative ``change`` to a z-scored [Z, Y, X] channel through its signal ``z − z_min``;
    the result keeps the channel's mean and SD inside ``inside`` (the pipeline renormalises) and 0 outside."""
    values = channel[inside]
    if values.numel() < 2:
        return channel
    mean, sd = values.mean(), values.std()
    changed = change(channel - values.min())[inside]
    changed = (changed - changed.mean()) / changed.std().clamp_min(1e-6) * sd + mean
    out = torch.zeros_like(channel)
    out[inside] = changed
    return out


def move_rigidly(
    volume: torch.Tensor, spacing: Sequence[float], shift_z_mm: float, tilt_radians: float
) -> torch.Tensor:
    """[C, Z, Y, X] content displaced by ``shift_z_mm`` through the slices and tilted by ``tilt_radians``
    about the left-right (X) axis through the grid's centre (trilinear, zeros from outside)."""
    if shift_z_mm == 0.0 and tilt_radians == 0.0:
        return volume
    z, y, x = volume.shape[1:]
    half = np.array([x * spacing[2], y * spacing[1], z * spacing[0]]) / 2.0  # mm per normalised unit (x, y, z)
    cos, sin = math.cos(tilt_radians), math.sin(tilt_radians)
    rotation = np.array([[1.0, 0.0, 0.0], [0.0, cos, -sin], [0.0, sin, cos]])  # in (x, y, z) mm
    # output voxel p (normalised) reads the input at S⁻¹ Rᵀ (S p − t), S = diag(half): what was at u
    # (mm from the centre) appears at R u + t
    matrix = rotation.T * half[None, :] / half[:, None]
    offset = -(rotation.T @ np.array([0.0, 0.0, shift_z_mm])) / half
    theta = torch.tensor(np.concatenate([matrix, offset[:, None]], 1)[None], dtype=torch.float32, device=volume.device)
    grid = F.affine_grid(theta, [1, volume.shape[0], z, y, x], align_corners=False)
    return F.grid_sample(volume[None], grid, mode="bilinear", padding_mode="zeros", align_corners=False)[0]


# --------------------------------------------------------------------------- one sample, a batch
def _any_bias(coefficients: tuple[np.ndarray, np.ndarray]) -> bool:
    return any(np.any(c != 0) for c in coefficients)


def apply_acquisition(
    sample: torch.Tensor, roles: Sequence[str], spacing: Sequence[float], acquisition: Acquisition
) -> torch.Tensor:
    """One sample [C, Z, Y, X] (``roles`` order) as the drawn ``acquisition`` would have made it."""
    roles = list(roles)
    out = sample.clone()
    shape = sample.shape[1:]
    diffusion = [i for i, role in enumerate(roles) if role in ("adc", "hbv")]
    if diffusion:
        inside = (sample[diffusion] != 0).float()
        moved = move_rigidly(
            torch.cat([sample[diffusion], inside]), spacing, acquisition.shift_z_mm, acquisition.tilt_radians
        )
        out[diffusion] = moved[: len(diffusion)] * (moved[len(diffusion) :] > 0.5)
    for i, role in enumerate(roles):
        factors = acquisition.t2_factors if role == "t2w" else acquisition.dwi_factors
        inside = out[i] != 0
        out[i] = resample_down_up(out[i : i + 1], factors)[0] * inside
    if "t2w" in roles and _any_bias(acquisition.t2_bias):
        i = roles.index("t2w")
        field = bias_field(shape, spacing, acquisition.t2_bias).to(out.device)
        out[i] = in_signal_units(out[i], out[i] != 0, lambda signal: signal * field)
    if "adc" in roles:
        i = roles.index("adc")
        out[i] = (out[i] * acquisition.adc_scale).clamp(0.0, 4.0) * (out[i] != 0)
    if "hbv" in roles and (_any_bias(acquisition.dwi_bias) or acquisition.delta_b != 0.0):
        i = roles.index("hbv")
        field = bias_field(shape, spacing, acquisition.dwi_bias).to(out.device)
        adc = out[roles.index("adc")] / acquisition.adc_scale if "adc" in roles else None

        def high_b(signal: torch.Tensor) -> torch.Tensor:
            signal = signal * field
            return signal if adc is None else recompute_high_b(signal, adc, acquisition.delta_b)

        out[i] = in_signal_units(out[i], out[i] != 0, high_b)
    generator = torch.Generator().manual_seed(acquisition.noise_seed)
    noise = torch.randn(out.shape, generator=generator).to(out.device)
    for i, role in enumerate(roles):
        sd = acquisition.noise_sd[("t2w", "adc", "hbv").index(role)] if role in ("t2w", "adc", "hbv") else 0.0
        out[i] = (out[i] + sd * noise[i]) * (out[i] != 0)
    return out


def simulate_acquisition(
    images: torch.Tensor,
    roles: Sequence[str],
    spacing: Sequence[float],
    config: AcquisitionAugmentConfig,
    seeds: Sequence[Sequence[int]],
) -> torch.Tensor:
    """[N, C, Z, Y, X] images, each sample (with probability ``config.probability``) through its own
    drawn acquisition; same shape, device and dtype. ``seeds`` as for the other augmentations."""
    if not config.enabled:
        return images
    out = images.clone()
    for index, seed in enumerate(seeds):
        rng = np.random.default_rng([*seed, ACQUISITION_STREAM])
        if rng.random() < config.probability:
            out[index] = apply_acquisition(images[index], roles, spacing, sample_acquisition(config, rng))
    return out

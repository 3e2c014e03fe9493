"""Random acquisition profiles beyond the fixed sites, for robustness runs.

Each profile draws every acquisition parameter a scanner protocol can change (matrix, in-plane
resolution, slice thickness and count, TE, gains, SNR, DWI plane tilt, b-values, computed or
acquired high-b, ADC calibration, bias field, misregistration) from ranges wider than the sites
A–D span, so an analysis that survives them has met protocols it was not trained on.
"""

from __future__ import annotations

import math

import numpy as np

from LesionAILib.phantom.profiles import SiteProfile

# Where a profile's random generator key starts: far above the fixed sites' keys (1-5).
FIRST_PROFILE_KEY = 1000
# Craniocaudal coverage (mm) the fixed sites ask of their T2 stacks; a random protocol covers
# 80-115 % of it, so some stacks end inside the gland.
T2_COVERAGE_MM = (57.0, 72.0)
ADC_B_VALUE_PAIRS = ((0.0, 800.0), (50.0, 800.0), (100.0, 1000.0), (0.0, 1000.0), (50.0, 600.0), (50.0, 1000.0))


def _log_uniform(rng: np.random.Generator, low: float, high: float) -> float:
    return float(math.exp(rng.uniform(math.log(low), math.log(high))))


def random_profile(index: int, seed: int = 0) -> SiteProfile:
    """The ``index``-th random acquisition profile of the series ``seed`` (deterministic).

    Ranges (mm, ms, s/mm²): T2 matrix 224–448, in-plane 0.4–0.8, slices 2.5–5.0 mm covering
    80–115 % of 57–72 mm, TE 85–150, SNR 8–40; DWI matrix 64–140 per axis, in-plane 1.5–3.2, slices
    2.5–5.0, tilt 0–15°, TE 55–100, SNR 10–50; ADC b-value pair from six protocols, high-b
    800–2000 (acquired or computed); gains log-uniform (T2 0.2–5, DWI 0.2–20); ADC calibration
    0.85–1.15; bias field 0.05–0.8; misregistration 0–7 mm.
    """
    rng = np.random.default_rng([seed, index, 7])
    t2_slice = float(rng.uniform(2.5, 5.0))
    coverage = float(rng.uniform(0.8, 1.15))
    low = max(3, math.ceil(T2_COVERAGE_MM[0] * coverage / t2_slice))
    high = max(low, math.ceil(T2_COVERAGE_MM[1] * coverage / t2_slice))
    adc_b_values = ADC_B_VALUE_PAIRS[int(rng.integers(len(ADC_B_VALUE_PAIRS)))]
    name = f"R{seed}-{index}"
    return SiteProfile(
        name=name,
        description=f"{name}: random acquisition profile {index} of series {seed}",
        site_id=FIRST_PROFILE_KEY + 1000 * seed + index,
        t2_matrix=int(rng.choice([224, 256, 288, 320, 352, 384, 448])),
        t2_inplane_mm=float(rng.uniform(0.4, 0.8)),
        t2_slice_mm=t2_slice,
        t2_slices=(low, high),
        t2_te_ms=float(rng.uniform(85.0, 150.0)),
        t2_gain=_log_uniform(rng, 0.2, 5.0),
        t2_snr=float(rng.uniform(8.0, 40.0)),
        dwi_matrix=(int(rng.integers(64, 141)), int(rng.integers(64, 141))),
        dwi_inplane_mm=float(rng.uniform(1.5, 3.2)),
        dwi_slice_mm=float(rng.uniform(2.5, 5.0)),
        dwi_tilt_offset_deg=float(rng.uniform(0.0, 15.0)),
        dwi_te_ms=float(rng.uniform(55.0, 100.0)),
        dwi_gain=_log_uniform(rng, 0.2, 20.0),
        dwi_snr=float(rng.uniform(10.0, 50.0)),
        adc_b_values=adc_b_values,
        hbv_b_value=float(rng.uniform(max(800.0, adc_b_values[1]), 2000.0)),
        hbv_acquired=bool(rng.integers(2)),
        adc_calibration=float(rng.uniform(0.85, 1.15)),
        bias_field=float(rng.uniform(0.05, 0.8)),
        misregistration_mm=float(rng.uniform(0.0, 7.0)),
    )

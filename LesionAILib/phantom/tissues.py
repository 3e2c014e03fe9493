"""MR properties of the phantom's tissues: proton density, T2 (ms), ADC (um^2/s), fat, texture.

Each tissue has a relative proton density, an effective (TSE) T2 in ms and an ADC in um^2/s
(1 um^2/s = 1e-6 mm^2/s, the DICOM ADC-map unit). Typical values before noise: fat 200 (fat-suppressed
on DWI), muscle 1450, normal PZ ~1800 (T2 ~165 ms), TZ ~1330 (T2 ~85 ms), urine ~2950. Lesion
appearances are in :mod:`LesionAILib.phantom.lesions`.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Tissue:
    """Relative proton density, effective T2 of the TSE T2w (ms), ADC (um^2/s), fat (suppressed on DWI),
    the relative amplitude of its texture and the T2 seen by the spin-echo EPI DWI (ms; defaults to
    t2_ms; shorter for muscle, whose TSE signal decays slower than its true T2)."""

    pd: float
    t2_ms: float
    adc: float
    fat: bool = False
    texture: float = 0.0
    dwi_t2_ms: float | None = None


AIR = Tissue(0.0, 1.0, 0.0)
FAT = Tissue(1.0, 240.0, 200.0, fat=True, texture=0.06)
MUSCLE = Tissue(0.9, 55.0, 1450.0, texture=0.06, dwi_t2_ms=45.0)
CORTEX = Tissue(0.05, 20.0, 300.0)
MARROW = Tissue(0.85, 130.0, 450.0, fat=True, texture=0.10)
URINE = Tissue(1.15, 1400.0, 2950.0, texture=0.01)
MUCOSA = Tissue(0.95, 75.0, 1150.0, texture=0.05)
SEMINAL = Tissue(1.0, 350.0, 2000.0, texture=0.10)
VEIN = Tissue(1.0, 250.0, 2000.0, texture=0.02)
ARTERY = Tissue(0.08, 100.0, 2500.0)
PLEXUS = Tissue(0.95, 200.0, 1700.0, texture=0.10)
CAPSULE = Tissue(0.9, 80.0, 1300.0, texture=0.02)
LYMPH_NODE = Tissue(1.0, 90.0, 950.0, texture=0.05)
AFMS = Tissue(0.9, 55.0, 1150.0, texture=0.04)  # anterior fibromuscular stroma
URETHRA = Tissue(1.0, 130.0, 1700.0, texture=0.02)
BULB = Tissue(1.0, 200.0, 1700.0, texture=0.05)
NORMAL_PZ = Tissue(1.0, 165.0, 1800.0, texture=0.12)  # before the per-case jitter
NORMAL_TZ = Tissue(0.95, 85.0, 1330.0, texture=0.16)


def jitter(tissue: Tissue, rng: np.random.Generator, t2_sd: float, adc_sd: float) -> Tissue:
    """The tissue with its T2 and ADC varied by Gaussians of SD t2_sd (ms) and adc_sd (um^2/s)."""
    return dataclasses.replace(
        tissue,
        t2_ms=max(20.0, tissue.t2_ms + t2_sd * rng.standard_normal()),
        adc=max(100.0, tissue.adc + adc_sd * rng.standard_normal()),
    )

"""Phantom lesions: sampling cancers and benign mimics into the gland, and measuring their ground truth.

0-3 lesions per case: cancers of ISUP grade group 1-5 (78 % PZ), benign mimics of grade group 0
(ill-defined prostatitis in the PZ, dark stromal BPH nodules in the TZ). Lesions are irregular
(perturbed ellipsoids, 3-25 mm) and clipped to the gland. Cancer ADC runs from ~900 um^2/s (ISUP 2)
down to ~650 (ISUP 5) with darker T2 (100 -> 80 ms); benign mimics overlap (prostatitis ~1250 +- 200,
stromal BPH nodules ~1050 +- 130, ISUP 1 ~1150), and a quarter of the lesions have weakened contrast.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from LesionAILib.phantom.anatomy import Anatomy
from LesionAILib.phantom.shapes import Blob, random_blob
from LesionAILib.phantom.tissues import Tissue

_SAMPLING_MM = 0.5  # lattice step used to measure lesion centre/volume/diameter

# cancer appearance per ISUP grade group: (ADC mean, SD) in um^2/s, (T2 mean, SD) in ms, diameter median mm
_CANCER_GRADES: dict[int, tuple[tuple[float, float], tuple[float, float], float]] = {
    1: ((1150.0, 150.0), (115.0, 15.0), 7.0),
    2: ((900.0, 120.0), (100.0, 12.0), 10.0),
    3: ((800.0, 110.0), (92.0, 12.0), 12.0),
    4: ((720.0, 100.0), (86.0, 10.0), 14.0),
    5: ((650.0, 90.0), (80.0, 10.0), 16.0),
}
_PROSTATITIS = ((1250.0, 200.0), (105.0, 15.0), 14.0)
_BPH_MIMIC = ((1050.0, 130.0), (65.0, 10.0), 9.0)
_GRADE_PROBABILITIES = (0.30, 0.30, 0.20, 0.11, 0.09)  # ISUP 1..5 among cancers


@dataclass(frozen=True)
class PhantomLesion:
    """Ground truth of one lesion: grade group (ISUP, 0 = benign), kind, zone of its centre, centre in
    LPS mm, largest diameter in mm and volume in ml (measured on a 0.5 mm lattice of the analytic
    shape clipped to the gland)."""

    lesion_id: int
    grade_group: int
    kind: str  # "cancer", "bph_nodule" or "prostatitis"
    zone: str  # "PZ" or "TZ"
    center_lps_mm: tuple[float, float, float]
    diameter_mm: float
    volume_ml: float

    @property
    def clinically_significant(self) -> bool:
        """ISUP grade group >= 2 (csPCa)."""
        return self.grade_group >= 2


@dataclass(frozen=True)
class LesionSpec:
    """A sampled lesion before rendering: grade group, kind, zone, body-frame shape and tissue."""

    grade_group: int
    kind: str
    zone: str
    blob: Blob
    tissue: Tissue


def _zone_of(anatomy: Anatomy, points: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(gland rho, TZ membership) at body-frame points [N, 3]."""
    u, v, w = (points[:, i].astype(np.float32) for i in range(3))
    gland_rho = anatomy.gland.rho(u, v, w)
    tz = anatomy.tz.membership(anatomy.tz.rho(u, v, w))
    return gland_rho, tz


def sample_lesions(rng: np.random.Generator, anatomy: Anatomy) -> list[LesionSpec]:
    """Sample 0-3 lesions (kind, grade, zone, shape, tissue) and place them in the gland."""
    n_lesions = int(rng.choice(4, p=[0.28, 0.42, 0.22, 0.08]))
    semi = anatomy.gland.semi
    lesions: list[LesionSpec] = []
    placed: list[tuple[np.ndarray, float]] = []
    for _ in range(n_lesions):
        kind = str(rng.choice(["cancer", "prostatitis", "bph_nodule"], p=[0.62, 0.19, 0.19]))
        if kind == "cancer":
            grade = int(rng.choice(5, p=_GRADE_PROBABILITIES)) + 1
            (adc_mean, adc_sd), (t2_mean, t2_sd), median_d = _CANCER_GRADES[grade]
            zone = "PZ" if rng.random() < 0.78 else "TZ"
        else:
            grade = 0
            (adc_mean, adc_sd), (t2_mean, t2_sd), median_d = _PROSTATITIS if kind == "prostatitis" else _BPH_MIMIC
            zone = "PZ" if kind == "prostatitis" else "TZ"
        diameter = float(np.clip(math.exp(rng.normal(math.log(median_d), 0.35)), 3.0, 25.0))
        host = anatomy.pz_tissue if zone == "PZ" else anatomy.tz_tissue
        # a quarter of the lesions have weak contrast (conspicuity < 1 pulls them towards the host)
        conspicuity = 1.0 if rng.random() < 0.75 else rng.uniform(0.45, 0.85)
        adc = host.adc + conspicuity * (rng.normal(adc_mean, adc_sd) - host.adc)
        t2 = host.t2_ms + conspicuity * (rng.normal(t2_mean, t2_sd) - host.t2_ms)
        tissue = Tissue(
            1.0, max(40.0, t2), float(np.clip(adc, 350.0, 2200.0)), texture=0.05 if kind == "cancer" else 0.1
        )
        if kind == "prostatitis":
            shape = diameter / 2 * np.array([1.0, rng.uniform(0.4, 0.6), rng.uniform(0.6, 0.9)])
            irregularity, edge = 0.15, rng.uniform(2.5, 4.0)
        elif kind == "bph_nodule":
            shape = diameter / 2 * rng.uniform(0.8, 1.0, 3)
            shape[0] = diameter / 2
            irregularity, edge = 0.04, 0.6
        else:
            shape = diameter / 2 * np.array([1.0, rng.uniform(0.55, 1.0), rng.uniform(0.55, 1.0)])
            irregularity, edge = 0.10 + 0.03 * grade, rng.uniform(0.8, 1.5)
        # rejection-sample a centre in the requested zone, away from the capsule and other lesions
        candidates = rng.uniform(-1.0, 1.0, (400, 3)) * semi
        gland_rho, tz = _zone_of(anatomy, candidates)
        in_zone = (gland_rho < 0.88) & ((tz < 0.2) if zone == "PZ" else (tz > 0.8))
        for point in candidates[in_zone]:
            if all(np.linalg.norm(point - q) > (diameter + d) / 2 + 2.0 for q, d in placed):
                blob = random_blob(rng, point, shape, irregularity, edge)
                # rescale so that the unclipped lesion's largest extent is the sampled diameter
                factor = diameter / _largest_extent(blob, _blob_points(blob))
                blob = Blob(blob.centre, blob.axes, blob.semi * factor, blob.coeffs, blob.edge_mm)
                lesions.append(LesionSpec(grade, kind, zone, blob, tissue))
                placed.append((point, diameter))
                break
    return lesions


def _blob_points(blob: Blob, clip: Blob | None = None) -> np.ndarray:
    """Body-frame points [N, 3] of a 0.5 mm lattice where the blob's membership (times that of `clip`)
    is >= 0.5; the best point if none is."""
    low, high = blob.bounds()
    step = _SAMPLING_MM
    axes = [np.arange(lo, hi + step, step, dtype=np.float64) for lo, hi in zip(low, high, strict=True)]
    points = np.stack([a.ravel() for a in np.meshgrid(*axes, indexing="ij")], axis=1)
    u, v, w = (points[:, i].astype(np.float32) for i in range(3))
    m = blob.membership(blob.rho(u, v, w))
    if clip is not None:
        m *= clip.membership(clip.rho(u, v, w))
    inside = points[m >= 0.5]
    return inside if len(inside) else points[[int(np.argmax(m))]]


def _largest_extent(blob: Blob, points: np.ndarray) -> float:
    """Largest extent (mm) of body-frame points [N, 3] along the blob's local axes."""
    projected = (points - blob.centre) @ blob.axes
    return float((projected.max(axis=0) - projected.min(axis=0)).max() + _SAMPLING_MM)


def lesion_record(anatomy: Anatomy, lesion_id: int, lesion: LesionSpec) -> PhantomLesion:
    """Centre (LPS), largest diameter and volume of a lesion, measured on a 0.5 mm lattice of the
    analytic shape clipped to the gland (membership >= 0.5)."""
    inside = _blob_points(lesion.blob, anatomy.gland)
    centre = anatomy.to_lps(inside.mean(axis=0)[None])[0]
    volume_ml = len(inside) * _SAMPLING_MM**3 / 1000.0
    diameter = _largest_extent(lesion.blob, inside)
    return PhantomLesion(
        lesion_id,
        lesion.grade_group,
        lesion.kind,
        lesion.zone,
        (float(centre[0]), float(centre[1]), float(centre[2])),
        round(diameter, 2),
        round(volume_ml, 4),
    )

"""Synthetic multiparametric prostate MRI cohorts (T2w, ADC, high-b DWI) with exact ground truth.

The detection networks of LesionAI are trained and tested on these phantoms, so they aim to look like
real bi-parametric prostate MRI (ProstateX / PI-CAI) and to be hard in the same ways.

Model
-----
Anatomy is analytic and lives in patient physical space (LPS millimetres: +x patient left, +y posterior,
+z superior, the ITK/DICOM convention). A per-case *body frame* is centred on the prostate and slightly
rotated against LPS (patient positioning). Every structure is a soft-edged solid in that frame:

* pelvis: elliptic body outline filled with fat (subcutaneous and pelvic fat), gluteus, obturator
  internus, levator ani and anterolateral muscles, femoral heads / acetabulum / ischium / pubic bones
  (dark cortex around fatty marrow), femoral and small vessels in the fat (flow voids and veins), lymph
  nodes (low ADC, bright on high-b), the penile bulb;
* bladder (muscular wall, urine), rectum (wall, mucosa, gas/stool lumen), seminal vesicles,
  periprostatic venous plexus and neurovascular bundles;
* the prostate: an ellipsoid of 25-80 ml deformed by a random low-order (degree <= 3) polynomial of the
  direction, with a dark capsule, a peripheral zone (PZ, the posterior/lateral crescent and the apex),
  a transition zone (TZ, central/anterior, growing with age/BPH), anterior fibromuscular stroma
  (labelled TZ in the zone mask), urethra and unlabelled BPH nodules (dark stromal and bright
  glandular);
* 0-3 lesions per case: cancers of ISUP grade group 1-5 (78 % PZ), benign mimics of grade group 0
  (ill-defined prostatitis in the PZ, dark stromal BPH nodules in the TZ). Lesions are irregular
  (perturbed ellipsoids, 3-25 mm) and clipped to the gland.

Each tissue has a relative proton density, an effective (TSE) T2 in ms and an ADC in um^2/s
(1 um^2/s = 1e-6 mm^2/s, the DICOM ADC-map unit). Typical values before noise: fat 200 (fat-suppressed
on DWI), muscle 1450, normal PZ ~1800 (T2 ~165 ms), TZ ~1330 (T2 ~85 ms), urine ~2950,
cancer ~900 (ISUP 2) down to ~650 (ISUP 5) with darker T2 (100 -> 80 ms); benign mimics overlap
(prostatitis ~1250 +- 200, stromal BPH nodules ~1050 +- 130, ISUP 1 ~1150), and a quarter of the
lesions have weakened contrast.

Acquisition
-----------
Each sequence is sampled on its own oblique grid (origin/spacing/direction as in DICOM). A voxel value
is the average of the tissue signal over sub-samples spread across the voxel (3 sub-slices through
the slice thickness; 2x2 in-plane for DWI), which gives partial volume. Signals:

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

Images are float32 (not rounded to uint16 as a scanner would: the values keep their sub-unit precision;
T2w and high-b in arbitrary units, ADC in um^2/s) and are written as uncompressed .mha (float noise does
not compress). Ground truth masks are uint8 on the T2 grid, written as .nii.gz.

Sites
-----
A :class:`SiteProfile` changes the grids (matrix, spacing, slice thickness, FOV, DWI plane), the T2w
contrast (TE) and intensity scale, the DWI TE, b-values and scale, the noise levels, the ADC
calibration (a few % to 10 %), the bias-field strength and the DWI misregistration. Site D is the one
most different from the reference site A.

Everything is a pure function of ``(seed, site, case index)``: the random generator is
``np.random.default_rng([seed, index, site_id])`` (bit-identical on one machine and numpy build). One
case takes ~0.2-0.35 s on one CPU core.
"""

from __future__ import annotations

import csv
import dataclasses
import datetime
import math
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import SimpleITK as sitk
from scipy import ndimage

from LesionAILib.atomic_io import write_image_atomic, write_json_atomic, write_text_atomic
from LesionAILib.geometry import Grid

GENERATOR_VERSION = 1

_F32 = np.float32
_ADC_MAX = 4000.0  # um^2/s, upper clip of the ADC map
_FAT_SUPPRESSION = 0.025  # residual fat signal on (fat-saturated) DWI
_T2_REFERENCE_GAIN = 760.0  # T2w gain of site A: normal PZ (T2 165 ms, TE 104 ms) ~ 400
_DWI_REFERENCE_GAIN = 400.0  # DWI gain of site A: normal PZ at b=1400 ~ 20
_PZ_T2_MS = 165.0  # reference T2 used to express the noise level as an SNR
_PZ_ADC = 1800.0  # reference ADC used to express the DWI noise level as an SNR
_SUBSLICES = 3  # sub-samples through the slice thickness (odd: the middle one is the voxel centre)
_LESION_SAMPLING_MM = 0.5  # lattice step used to measure lesion centre/volume/diameter


@dataclass(frozen=True)
class SiteProfile:
    """An acquisition profile (scanner, protocol) of one site.

    Grid sizes are (x, y) voxel counts; spacings in mm; times in ms; b-values in s/mm^2.
    """

    name: str
    description: str
    site_id: int  # integer key of the random generator
    t2_matrix: int  # square in-plane matrix of the T2w grid
    t2_inplane_mm: float
    t2_slice_mm: float
    t2_slices: tuple[int, int]  # min, max number of slices (chosen to cover the gland)
    t2_te_ms: float
    t2_gain: float  # intensity scale relative to site A
    t2_snr: float  # normal-PZ signal / noise SD on the T2w
    dwi_matrix: tuple[int, int]  # (x, y)
    dwi_inplane_mm: float
    dwi_slice_mm: float
    dwi_tilt_offset_deg: float  # extra obliquity of the DWI plane against the T2w plane
    dwi_te_ms: float
    dwi_gain: float  # DWI intensity scale relative to site A
    dwi_snr: float  # normal-PZ signal / noise SD at the low b-value
    adc_b_values: tuple[float, float]  # the two b-values of the ADC fit
    hbv_b_value: float  # b-value of the high-b image
    hbv_acquired: bool  # True: acquired (own noise); False: computed from the ADC fit
    adc_calibration: float  # multiplicative ADC bias of the scanner (1.0 at the reference site)
    bias_field: float  # strength of the multiplicative coil-sensitivity field (log-amplitude)
    misregistration_mm: float  # typical DWI-vs-T2 shift; per case 0.5-1.5 times this


SITES: dict[str, SiteProfile] = {
    "A": SiteProfile(
        name="A",
        description="A: 3T vendor-1 reference (ProstateX-like: T2 0.5 mm / 3 mm, DWI 2 mm, b50-800, computed b1400)",
        site_id=1,
        t2_matrix=384,
        t2_inplane_mm=0.5,
        t2_slice_mm=3.0,
        t2_slices=(19, 24),
        t2_te_ms=104.0,
        t2_gain=1.0,
        t2_snr=30.0,
        dwi_matrix=(84, 128),
        dwi_inplane_mm=2.0,
        dwi_slice_mm=3.0,
        dwi_tilt_offset_deg=0.0,
        dwi_te_ms=63.0,
        dwi_gain=1.0,
        dwi_snr=45.0,
        adc_b_values=(50.0, 800.0),
        hbv_b_value=1400.0,
        hbv_acquired=False,
        adc_calibration=1.0,
        bias_field=0.15,
        misregistration_mm=1.0,
    ),
    "B": SiteProfile(
        name="B",
        description="B: 3T vendor-2, smaller T2 FOV, shorter TE, DWI 1.8 mm b100-1000, computed b1500, ADC +4 %",
        site_id=2,
        t2_matrix=320,
        t2_inplane_mm=0.5,
        t2_slice_mm=3.0,
        t2_slices=(19, 24),
        t2_te_ms=96.0,
        t2_gain=2.4,
        t2_snr=34.0,
        dwi_matrix=(100, 100),
        dwi_inplane_mm=1.8,
        dwi_slice_mm=3.0,
        dwi_tilt_offset_deg=0.0,
        dwi_te_ms=70.0,
        dwi_gain=3.0,
        dwi_snr=45.0,
        adc_b_values=(100.0, 1000.0),
        hbv_b_value=1500.0,
        hbv_acquired=False,
        adc_calibration=1.04,
        bias_field=0.2,
        misregistration_mm=1.5,
    ),
    "C": SiteProfile(
        name="C",
        description="C: 1.5T vendor-1, noisier, TE 110, DWI 2 mm b0-1000, computed b2000, ADC -5 %",
        site_id=3,
        t2_matrix=352,
        t2_inplane_mm=0.5,
        t2_slice_mm=3.0,
        t2_slices=(19, 24),
        t2_te_ms=110.0,
        t2_gain=0.6,
        t2_snr=20.0,
        dwi_matrix=(96, 96),
        dwi_inplane_mm=2.0,
        dwi_slice_mm=3.0,
        dwi_tilt_offset_deg=0.0,
        dwi_te_ms=75.0,
        dwi_gain=0.3,
        dwi_snr=28.0,
        adc_b_values=(0.0, 1000.0),
        hbv_b_value=2000.0,
        hbv_acquired=False,
        adc_calibration=0.95,
        bias_field=0.3,
        misregistration_mm=2.5,
    ),
    "D": SiteProfile(
        name="D",
        description="D: 3T vendor-3 without endorectal coil, most unlike A: long TE 130, 3.6 mm slices, "
        "DWI 2.5 mm in a separately planned plane, acquired b1000, ADC -10 %, strong bias field, "
        "large DWI shift",
        site_id=4,
        t2_matrix=320,
        t2_inplane_mm=0.5625,
        t2_slice_mm=3.6,
        t2_slices=(16, 20),
        t2_te_ms=130.0,
        t2_gain=4.0,
        t2_snr=16.0,
        dwi_matrix=(86, 86),
        dwi_inplane_mm=2.5,
        dwi_slice_mm=3.6,
        dwi_tilt_offset_deg=6.0,
        dwi_te_ms=85.0,
        dwi_gain=10.0,
        dwi_snr=22.0,
        adc_b_values=(0.0, 800.0),
        hbv_b_value=1000.0,
        hbv_acquired=True,
        adc_calibration=0.90,
        bias_field=0.5,
        misregistration_mm=4.0,
    ),
}


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


@dataclass
class PhantomCase:
    """One synthetic study. Images are SimpleITK images (arrays [Z, Y, X]) on their own grids; the
    masks are uint8 on the T2w grid (lesion_instances: 0 background, 1..n lesion id; cspca_mask: the
    ISUP value on lesions with ISUP >= 2, else 0; zones: 0 outside, 1 PZ, 2 TZ)."""

    case_id: str
    patient_id: str
    study_id: str
    site: str
    seed: int
    t2w: sitk.Image
    adc: sitk.Image
    hbv: sitk.Image
    lesion_instances: sitk.Image
    cspca_mask: sitk.Image
    zones: sitk.Image
    lesions: list[PhantomLesion]
    b_value: float
    prostate_volume_ml: float = 0.0
    patient_age: int = 0
    psa: float = 0.0  # ng/ml
    mri_date: str = ""  # YYYY-MM-DD


# --------------------------------------------------------------------------------------------------
# Tissues
# --------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Tissue:
    """Relative proton density, effective T2 of the TSE T2w (ms), ADC (um^2/s), fat (suppressed on DWI),
    the relative amplitude of its texture and the T2 seen by the spin-echo EPI DWI (ms; defaults to
    t2_ms; shorter for muscle, whose TSE signal decays slower than its true T2)."""

    pd: float
    t2_ms: float
    adc: float
    fat: bool = False
    texture: float = 0.0
    dwi_t2_ms: float | None = None


_AIR = _Tissue(0.0, 1.0, 0.0)
_FAT = _Tissue(1.0, 240.0, 200.0, fat=True, texture=0.06)
_MUSCLE = _Tissue(0.9, 55.0, 1450.0, texture=0.06, dwi_t2_ms=45.0)
_CORTEX = _Tissue(0.05, 20.0, 300.0)
_MARROW = _Tissue(0.85, 130.0, 450.0, fat=True, texture=0.10)
_URINE = _Tissue(1.15, 1400.0, 2950.0, texture=0.01)
_MUCOSA = _Tissue(0.95, 75.0, 1150.0, texture=0.05)
_SEMINAL = _Tissue(1.0, 350.0, 2000.0, texture=0.10)
_VEIN = _Tissue(1.0, 250.0, 2000.0, texture=0.02)
_ARTERY = _Tissue(0.08, 100.0, 2500.0)
_PLEXUS = _Tissue(0.95, 200.0, 1700.0, texture=0.10)
_CAPSULE = _Tissue(0.9, 80.0, 1300.0, texture=0.02)
_LYMPH_NODE = _Tissue(1.0, 90.0, 950.0, texture=0.05)
_AFMS = _Tissue(0.9, 55.0, 1150.0, texture=0.04)
_URETHRA = _Tissue(1.0, 130.0, 1700.0, texture=0.02)
_BULB = _Tissue(1.0, 200.0, 1700.0, texture=0.05)

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


# --------------------------------------------------------------------------------------------------
# Geometry helpers
# --------------------------------------------------------------------------------------------------


def _rotation(about_x: float = 0.0, about_y: float = 0.0, about_z: float = 0.0) -> np.ndarray:
    """Rotation matrix Rz @ Ry @ Rx for angles in radians about the frame axes."""
    cx, sx = math.cos(about_x), math.sin(about_x)
    cy, sy = math.cos(about_y), math.sin(about_y)
    cz, sz = math.cos(about_z), math.sin(about_z)
    rx = np.array([[1, 0, 0], [0, cx, -sx], [0, sx, cx]])
    ry = np.array([[cy, 0, sy], [0, 1, 0], [-sy, 0, cy]])
    rz = np.array([[cz, -sz, 0], [sz, cz, 0], [0, 0, 1]])
    return rz @ ry @ rx


@dataclass(frozen=True)
class _Ellipsoid:
    """Soft-edged ellipsoid in the body frame: centre (mm), axes (3x3, columns = local axes), semi-axes
    (mm), edge width (mm)."""

    centre: np.ndarray
    axes: np.ndarray
    semi: np.ndarray
    edge_mm: float
    tissue: _Tissue

    def quadratic(self) -> tuple[np.ndarray, np.ndarray, float]:
        """(Q, L, k) such that membership = clip(p^T Q p + L.p + k, 0, 1) for body-frame points p.

        Uses the linearised distance to the surface d ~ (q - 1) R / 2 with R the smallest semi-axis,
        and membership 0.5 - d / edge.
        """
        shape = self.axes @ np.diag(1.0 / self.semi**2) @ self.axes.T
        alpha = -float(self.semi.min()) / (2.0 * self.edge_mm)
        beta = 0.5 - alpha
        q = alpha * shape
        return q, -2.0 * q @ self.centre, float(self.centre @ q @ self.centre) + beta

    def bounds(self) -> tuple[np.ndarray, np.ndarray]:
        shape_inv = self.axes @ np.diag(self.semi**2) @ self.axes.T
        half = np.sqrt(np.diag(shape_inv)) * (1.0 + self.edge_mm / self.semi.min()) + self.edge_mm
        return self.centre - half, self.centre + half


def _monomials(nu: np.ndarray, nv: np.ndarray, nw: np.ndarray) -> Iterator[np.ndarray]:
    """The 19 monomials of degree 1-3 of a unit direction (nu, nv, nw)."""
    first = (nu, nv, nw)
    yield from first
    second = []
    for i in range(3):
        for j in range(i, 3):
            second.append(first[i] * first[j])
    yield from second
    for i in range(3):
        for j in range(i, 3):
            for k in range(j, 3):
                yield second[(i * (5 - i)) // 2 + j] * first[k]


_N_MONOMIALS = 19


@dataclass(frozen=True)
class _Blob:
    """Irregular solid: an ellipsoid whose radius is modulated by 1 + sum(coeffs * monomials(direction)).

    centre in body-frame mm, axes 3x3 (columns = local axes), semi-axes mm, edge width mm.
    """

    centre: np.ndarray
    axes: np.ndarray
    semi: np.ndarray
    coeffs: np.ndarray
    edge_mm: float

    def rho(self, u: np.ndarray, v: np.ndarray, w: np.ndarray) -> np.ndarray:
        """Normalised radius (1 on the surface) at body-frame points; same shape as u."""
        d = (u - _F32(self.centre[0]), v - _F32(self.centre[1]), w - _F32(self.centre[2]))
        local = [sum(d[j] * _F32(self.axes[j, i] / self.semi[i]) for j in range(3)) for i in range(3)]
        radius = np.sqrt(local[0] ** 2 + local[1] ** 2 + local[2] ** 2)
        inv = 1.0 / np.maximum(radius, _F32(1e-6))
        directions = [c * inv for c in local]
        modulation = np.ones_like(radius)
        for coeff, mono in zip(self.coeffs, _monomials(*directions), strict=True):
            modulation += _F32(coeff) * mono
        return radius / modulation

    def membership(self, rho: np.ndarray, scale: float = 1.0) -> np.ndarray:
        """Soft membership in [0, 1] of the blob scaled by `scale`, from rho()."""
        slope = _F32(float(self.semi.min()) * scale / self.edge_mm)
        return np.clip(_F32(0.5) - (rho - _F32(scale)) * slope, 0.0, 1.0)

    def _outer(self, scale: float) -> _Ellipsoid:
        """An ellipsoid (edge 1 mm) whose positive part contains every point of the blob scaled by `scale`."""
        stretch = 1.0 + float(np.abs(self.coeffs).sum())
        return _Ellipsoid(self.centre, self.axes, self.semi * scale * stretch + 1.5 * self.edge_mm, 1.0, _AIR)

    def bounds(self, scale: float = 1.0) -> tuple[np.ndarray, np.ndarray]:
        return self._outer(scale).bounds()

    def envelope(self, scale: float = 1.0) -> tuple[np.ndarray, np.ndarray, float]:
        """Quadratic (Q, L, k) that is > 0 on every point the blob scaled by `scale` can reach."""
        return self._outer(scale).quadratic()


def _blob_volume_ml(blob: _Blob, step_mm: float = 1.0) -> float:
    """Volume (ml) of {rho <= 1}, counted on a lattice of step_mm."""
    low, high = blob.bounds()
    grids = np.meshgrid(
        *[np.arange(lo, hi, step_mm, dtype=_F32) for lo, hi in zip(low, high, strict=True)], indexing="ij", sparse=False
    )
    return float(np.count_nonzero(blob.rho(*grids) <= 1.0)) * step_mm**3 / 1000.0


def _random_blob(
    rng: np.random.Generator,
    centre: np.ndarray,
    semi: np.ndarray,
    irregularity: float,
    edge_mm: float,
    axes: np.ndarray | None = None,
) -> _Blob:
    """Blob with random orientation (unless given) and random perturbation of total amplitude
    `irregularity` (sum of |coefficients|, higher degrees weaker)."""
    if axes is None:
        axes = _rotation(*rng.uniform(-math.pi, math.pi, 3))
    weights = np.array([1.0] * 3 + [0.6] * 6 + [0.35] * 10)
    coeffs = rng.standard_normal(_N_MONOMIALS) * weights
    coeffs *= irregularity / max(np.abs(coeffs).sum(), 1e-9)
    return _Blob(np.asarray(centre, float), axes, np.asarray(semi, float), coeffs, edge_mm)


# --------------------------------------------------------------------------------------------------
# Case anatomy
# --------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _LesionSpec:
    grade_group: int
    kind: str
    zone: str
    blob: _Blob
    tissue: _Tissue


@dataclass
class _Anatomy:
    """All random anatomy of one case, in the body frame (origin = gland centre; axes u, v, w ~ LPS
    rotated by `rotation`)."""

    centre_lps: np.ndarray
    rotation: np.ndarray  # body axes in LPS (columns)
    anterior_skin_v: float  # body-frame v (mm, + posterior) of the anterior skin
    background: list[_Ellipsoid]  # painted in order before the gland
    capsule_scale: float
    gland_volume_ml: float
    gland: _Blob
    tz: _Blob
    pz_tissue: _Tissue
    tz_tissue: _Tissue
    afms: _Ellipsoid
    urethra: _Ellipsoid
    nodules: list[tuple[_Blob, _Tissue]]
    lesions: list[_LesionSpec] = field(default_factory=list)

    def to_lps(self, points: np.ndarray) -> np.ndarray:
        """Body-frame points [N, 3] -> LPS mm [N, 3]."""
        return points @ self.rotation.T + self.centre_lps


def _jitter(tissue: _Tissue, rng: np.random.Generator, t2_sd: float, adc_sd: float) -> _Tissue:
    """The tissue with its T2 and ADC varied by Gaussians of SD t2_sd (ms) and adc_sd (um^2/s)."""
    return dataclasses.replace(
        tissue,
        t2_ms=max(20.0, tissue.t2_ms + t2_sd * rng.standard_normal()),
        adc=max(100.0, tissue.adc + adc_sd * rng.standard_normal()),
    )


def _ellipsoid(centre, semi, edge_mm: float, tissue: _Tissue, axes: np.ndarray | None = None) -> _Ellipsoid:
    return _Ellipsoid(
        np.asarray(centre, float), np.eye(3) if axes is None else axes, np.asarray(semi, float), edge_mm, tissue
    )


def _bone(centre, semi, axes: np.ndarray | None = None, cortex_mm: float = 2.5) -> list[_Ellipsoid]:
    """A bone: dark cortex shell around fatty marrow."""
    inner = np.maximum(np.asarray(semi, float) - cortex_mm, 1.0)
    return [_ellipsoid(centre, semi, 1.0, _CORTEX, axes), _ellipsoid(centre, inner, 1.0, _MARROW, axes)]


def _build_anatomy(rng: np.random.Generator, age: float) -> _Anatomy:
    """Sample the pelvis, prostate and background BPH nodules of one case (lesions are added later)."""
    deg = math.pi / 180.0
    rotation = _rotation(rng.normal(0, 5) * deg, rng.normal(0, 3) * deg, rng.normal(0, 3) * deg)
    centre_lps = np.array([rng.uniform(-20, 40), rng.uniform(-10, 30), rng.uniform(-60, 20)])

    # gland size and shape: volume in ml, aspect LR : AP : SI
    volume = float(np.clip(math.exp(rng.normal(math.log(40.0) + 0.02 * (age - 63.0), 0.3)), 25.0, 80.0))
    aspect = np.array([rng.normal(1.25, 0.08), rng.normal(0.85, 0.06), rng.normal(1.0, 0.08)])
    gland_axes = _rotation(rng.normal(-8, 5) * deg, 0.0, 0.0)  # base tilted anteriorly
    gland = _random_blob(rng, np.zeros(3), aspect * 20.0, rng.uniform(0.12, 0.22), 1.2, gland_axes)
    # wider base / narrower apex and a flatter posterior surface
    coeffs = gland.coeffs.copy()
    coeffs[2] += 0.07  # + nw: larger towards the base
    coeffs[1] -= 0.04  # - nv: smaller posteriorly
    scale = (volume / _blob_volume_ml(_Blob(gland.centre, gland.axes, gland.semi, coeffs, gland.edge_mm))) ** (1 / 3)
    gland = _Blob(gland.centre, gland.axes, gland.semi * scale, coeffs, gland.edge_mm)
    a_u, a_v, a_w = gland.semi.tolist()
    reach = 1.0 + float(np.abs(coeffs).sum())

    tz_fraction = float(
        np.clip(0.3 + 0.25 * (volume - 25.0) / 55.0 + 0.006 * (age - 63.0) + rng.normal(0, 0.05), 0.22, 0.72)
    )
    tz_scale = tz_fraction ** (1.0 / 3.0)
    tz_centre = gland_axes @ np.array([0.0, -a_v * (0.1 + 0.25 * tz_fraction), 0.15 * a_w])
    tz = _random_blob(
        rng,
        tz_centre,
        np.array([a_u * 1.0, a_v * 0.95, a_w * 0.9]) * tz_scale,
        rng.uniform(0.05, 0.12),
        1.0,
        gland_axes,
    )

    pz_tissue = _jitter(_Tissue(1.0, 165.0, 1800.0, texture=0.12), rng, 12.0, 70.0)
    tz_tissue = _jitter(_Tissue(0.95, 85.0, 1330.0, texture=0.16), rng, 7.0, 60.0)

    # pelvis
    half_width = rng.uniform(150, 195)
    half_depth = rng.uniform(95, 125)
    body_v = rng.normal(5, 5)
    fat_mm = rng.uniform(12, 40)
    posterior_inner = body_v + half_depth - fat_mm
    anterior_inner = body_v - half_depth + fat_mm
    background: list[_Ellipsoid] = [_ellipsoid([0, body_v, 0], [half_width, half_depth, 3000], 1.5, _FAT)]
    # small vessels (flow voids and veins) in the fat; organs painted later cover them
    for _ in range(int(rng.integers(18, 30))):
        angle, radial = rng.uniform(0, 2 * math.pi), math.sqrt(rng.uniform(0.05, 0.9))
        centre = [
            half_width * radial * math.cos(angle),
            body_v + half_depth * radial * math.sin(angle),
            rng.uniform(-40, 40),
        ]
        radius = rng.uniform(0.8, 2.5)
        axes = _rotation(rng.normal(0, 0.3), rng.normal(0, 0.3), 0.0)
        background.append(
            _ellipsoid(
                centre, [radius, radius, rng.uniform(20, 60)], 0.7, _ARTERY if rng.random() < 0.5 else _VEIN, axes
            )
        )
    for side in (-1.0, 1.0):
        glut = _rotation(about_z=-side * rng.uniform(20, 35) * deg)
        background.append(
            _ellipsoid(
                [side * rng.uniform(85, 100), posterior_inner - rng.uniform(12, 20), -10],
                [rng.uniform(40, 55), rng.uniform(18, 26), 150],
                1.5,
                _MUSCLE,
                glut,
            )
        )
        lateral = a_u + rng.uniform(24, 32)
        obturator = _rotation(about_z=side * rng.uniform(8, 18) * deg)
        background += _bone([side * (lateral + 17), 10, 0], [8, 36, 45], obturator, 2.0)
        background.append(_ellipsoid([side * lateral, 2, 0], [rng.uniform(8, 11), 38, 45], 1.2, _MUSCLE, obturator))
        background += _bone([side * (a_u + rng.uniform(58, 68)), -8, 14], [24, 24, 24], None, 2.0)  # femur
        background += _bone([side * (a_u + 28), a_v + 32, -30], [12, 18, 22], None, 2.0)  # ischium
        background.append(_ellipsoid([side * (a_u + 45), -(a_v + 30), -12], [16, 16, 45], 1.5, _MUSCLE))
        background.append(_ellipsoid([side * (a_u + 50), -(a_v + 42), 0], [4.5, 4.5, 150], 1.0, _ARTERY))
        background.append(_ellipsoid([side * (a_u + 39), -(a_v + 42), 0], [5.5, 5.5, 150], 1.0, _VEIN))
        background.append(_ellipsoid([side * 38, anterior_inner + 9, 75], [30, 7, 60], 1.2, _MUSCLE))  # rectus
        pubis = _rotation(about_z=side * 20 * deg)
        background += _bone([side * 12, -(a_v + rng.uniform(22, 30)), 0.5 * a_w + 8], [10, 13, 25], pubis, 1.5)
        background += _bone([side * 42, -(a_v + 20), 26], [30, 9, 9], pubis, 1.5)
        levator = _rotation(about_z=-side * rng.uniform(15, 25) * deg)
        background.append(_ellipsoid([side * (a_u * 0.9 + 6), a_v * 0.6 + 6, -6], [3.5, 26, 30], 1.0, _MUSCLE, levator))
    background.append(_ellipsoid([0, -a_v * 0.2, -(a_w + 26)], [12, 10, 12], 1.5, _BULB))
    # lymph nodes along the pelvic side walls and in the mesorectum: low ADC, bright on high-b
    for _ in range(int(rng.integers(2, 7))):
        side = 1.0 if rng.random() < 0.5 else -1.0
        centre = [side * rng.uniform(a_u + 5, a_u + 22), rng.uniform(-a_v, 2 * a_v + 20), rng.uniform(-a_w, 2 * a_w)]
        semi = rng.uniform(2.0, 5.0) * np.array([1.0, rng.uniform(0.6, 1.0), rng.uniform(1.0, 1.6)])
        background.append(_ellipsoid(centre, semi, 0.8, _LYMPH_NODE, _rotation(about_z=rng.uniform(0, math.pi))))

    # periprostatic venous plexus, then bladder, seminal vesicles and rectum
    background.append(
        _ellipsoid([0, -3, 0], [a_u * reach + 5, a_v * reach + 4, a_w * reach + 2], 2.0, _PLEXUS, gland_axes)
    )
    bladder_semi = np.array([rng.uniform(30, 55), rng.uniform(25, 40), rng.uniform(20, 40)])
    bladder_centre = [0, -0.3 * a_v - rng.uniform(2, 10), 0.8 * a_w + 0.85 * bladder_semi[2]]
    background.append(_ellipsoid(bladder_centre, bladder_semi + 3.0, 1.0, _MUSCLE))
    background.append(_ellipsoid(bladder_centre, bladder_semi, 1.0, _URINE))
    for side in (-1.0, 1.0):
        sv_axes = _rotation(about_y=side * 20 * deg, about_z=side * rng.uniform(20, 35) * deg)
        background.append(
            _ellipsoid(
                [side * rng.uniform(14, 20), a_v * 0.55, a_w * 0.8 + 5],
                [rng.uniform(13, 19), rng.uniform(4, 6.5), 7],
                1.2,
                _SEMINAL,
                sv_axes,
            )
        )
        background.append(_ellipsoid([side * a_u * 0.72, a_v * 0.8, 0], [2.5, 2.5, a_w * 1.3], 1.0, _VEIN))
    rectum_semi = np.array([rng.uniform(10, 18), rng.uniform(6, 12), 80.0])
    wall = rng.uniform(4.0, 6.0)
    rectum_centre = [rng.normal(0, 3), a_v * reach + 3.0 + wall + rectum_semi[1], 0]
    rectum_axes = _rotation(about_x=-rng.uniform(10, 25) * deg)
    lumen = _Tissue(rng.uniform(0.02, 0.5), 60.0, rng.uniform(700, 1500))
    background.append(_ellipsoid(rectum_centre, rectum_semi + wall, 1.0, _MUSCLE, rectum_axes))
    background.append(_ellipsoid(rectum_centre, rectum_semi + 1.0, 0.8, _MUCOSA, rectum_axes))
    background.append(_ellipsoid(rectum_centre, rectum_semi, 1.0, lumen, rectum_axes))

    afms = _ellipsoid(
        gland_axes @ np.array([0, -a_v * 0.9, 0.1 * a_w]), [a_u * 0.7, a_v * 0.35, a_w * 0.8], 1.5, _AFMS, gland_axes
    )
    urethra = _ellipsoid(gland_axes @ np.array([0, -0.15 * a_v, 0]), [2.2, 2.2, a_w * 1.2], 0.8, _URETHRA, gland_axes)

    # unlabelled BPH nodules in the TZ: more with larger TZ
    nodules = []
    for _ in range(int(rng.poisson(1.0 + 8.0 * (tz_fraction - 0.22)))):
        offset = rng.uniform(-0.7, 0.7, 3) * tz.semi
        diameter = rng.uniform(3.0, 12.0)
        stromal = rng.random() < 0.5
        tissue = (
            _Tissue(0.95, rng.normal(70, 6), rng.normal(1200, 80), texture=0.05)
            if stromal
            else _Tissue(1.0, rng.normal(170, 20), rng.normal(1650, 100), texture=0.12)
        )
        semi = diameter / 2 * rng.uniform(0.75, 1.0, 3)
        nodules.append((_random_blob(rng, tz.centre + gland_axes @ offset, semi, 0.05, 0.6), tissue))

    return _Anatomy(
        centre_lps=centre_lps,
        rotation=rotation,
        anterior_skin_v=body_v - half_depth,
        background=background,
        capsule_scale=1.03,
        gland_volume_ml=volume,
        gland=gland,
        tz=tz,
        pz_tissue=pz_tissue,
        tz_tissue=tz_tissue,
        afms=afms,
        urethra=urethra,
        nodules=nodules,
    )


def _zone_of(anatomy: _Anatomy, points: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(gland rho, TZ membership) at body-frame points [N, 3]."""
    u, v, w = (points[:, i].astype(_F32) for i in range(3))
    gland_rho = anatomy.gland.rho(u, v, w)
    tz = anatomy.tz.membership(anatomy.tz.rho(u, v, w))
    return gland_rho, tz


def _add_lesions(rng: np.random.Generator, anatomy: _Anatomy) -> None:
    """Sample 0-3 lesions (kind, grade, zone, shape, tissue) and place them in the gland."""
    n_lesions = int(rng.choice(4, p=[0.28, 0.42, 0.22, 0.08]))
    semi = anatomy.gland.semi
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
        tissue = _Tissue(
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
                blob = _random_blob(rng, point, shape, irregularity, edge)
                # rescale so that the unclipped lesion's largest extent is the sampled diameter
                factor = diameter / _largest_extent(blob, _blob_points(blob))
                blob = _Blob(blob.centre, blob.axes, blob.semi * factor, blob.coeffs, blob.edge_mm)
                anatomy.lesions.append(_LesionSpec(grade, kind, zone, blob, tissue))
                placed.append((point, diameter))
                break


# --------------------------------------------------------------------------------------------------
# Rendering
# --------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Block:
    """A box of a lattice: fine-index slices (z, y, x), aligned to whole voxels."""

    z: slice
    y: slice
    x: slice

    @property
    def slices(self) -> tuple[slice, slice, slice]:
        return self.z, self.y, self.x

    def empty(self) -> bool:
        return self.z.start >= self.z.stop or self.y.start >= self.y.stop or self.x.start >= self.x.stop

    def relative_to(self, outer: _Block) -> tuple[slice, slice, slice]:
        """This block's slices within the array of an enclosing block."""
        return tuple(slice(a.start - b.start, a.stop - b.start) for a, b in zip(self.slices, outer.slices, strict=True))


class _Lattice:
    """Voxel sub-sample points of a grid, mapped affinely into the body frame.

    Fine array axes are [Z * sz, Y * sy, X * sx]; index coordinates (voxel units) of the sub-samples
    are spread evenly inside each voxel. `shift_lps` displaces what the grid sees (misregistration).
    """

    def __init__(self, grid: Grid, sub: tuple[int, int, int], anatomy: _Anatomy, shift_lps: np.ndarray | None = None):
        self.sub = sub  # (sx, sy, sz)
        self.fine: list[np.ndarray] = []
        for n, s in zip(grid.size_xyz, sub, strict=True):
            offsets = (np.arange(s) + 0.5) / s - 0.5
            self.fine.append((np.arange(n)[:, None] + offsets[None, :]).ravel())
        shift = np.zeros(3) if shift_lps is None else shift_lps
        # body = A @ index + b
        self.matrix = anatomy.rotation.T @ grid.direction_matrix @ np.diag(grid.spacing_xyz)
        self.offset = anatomy.rotation.T @ (np.asarray(grid.origin) + shift - anatomy.centre_lps)
        self.shape = tuple(len(self.fine[i]) for i in (2, 1, 0))

    def block(self, low: np.ndarray, high: np.ndarray) -> _Block:
        """Voxel-aligned box of the lattice that contains the body-frame box [low, high]."""
        corners = np.array(
            [
                [low[0] if i & 1 else high[0], low[1] if i & 2 else high[1], low[2] if i & 4 else high[2]]
                for i in range(8)
            ]
        )
        index = np.linalg.solve(self.matrix, (corners - self.offset).T)
        bounds = []
        for axis in range(3):
            s = self.sub[axis]
            n = len(self.fine[axis]) // s
            start = int(np.clip(math.floor(index[axis].min() + 0.5), 0, n))
            stop = int(np.clip(math.ceil(index[axis].max() + 0.5), 0, n))
            bounds.append(slice(start * s, stop * s))
        return _Block(bounds[2], bounds[1], bounds[0])

    def crop(self, block: _Block, mask: np.ndarray) -> _Block:
        """Smallest voxel-aligned sub-block of `block` holding all True points of `mask` (block-shaped)."""
        bounds = []
        for axis, sub in ((0, self.sub[2]), (1, self.sub[1]), (2, self.sub[0])):
            hits = np.flatnonzero(mask.any(axis=tuple(a for a in range(3) if a != axis)))
            start = block.slices[axis].start
            if len(hits) == 0:
                return _Block(slice(0, 0), slice(0, 0), slice(0, 0))
            low = start + hits[0] - (start + hits[0]) % sub
            high = start + hits[-1] + 1
            bounds.append(slice(low, high + (-high) % sub))
        return _Block(*bounds)

    def blob_block(self, blob: _Blob, scale: float = 1.0) -> _Block:
        """Voxel-aligned block holding every point a blob (scaled by `scale`) can reach."""
        block = self.block(*blob.bounds(scale))
        if block.empty():
            return block
        return self.crop(block, self.quadratic(block, *blob.envelope(scale)) > 0.0)

    def whole(self) -> _Block:
        return _Block(slice(0, self.shape[0]), slice(0, self.shape[1]), slice(0, self.shape[2]))

    def coordinates(self, block: _Block) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Body-frame coordinates (u, v, w), each float32 of the block's shape."""
        x = self.fine[0][block.x]
        y = self.fine[1][block.y]
        z = self.fine[2][block.z]
        out = []
        for row in range(3):
            a = self.matrix[row]
            plane = (a[0] * x[None, :] + a[1] * y[:, None] + self.offset[row]).astype(_F32)
            out.append(plane[None] + (a[2] * z).astype(_F32)[:, None, None])
        return out[0], out[1], out[2]

    def quadratic(self, block: _Block, q: np.ndarray, lin: np.ndarray, const: float) -> np.ndarray:
        """p^T Q p + lin.p + const at the block's points (float32), p the body-frame position.

        Evaluated as a quadratic in the index coordinates: an [Y, X] plane, a [Z] line and one [Z, Y, X]
        product, which is much cheaper than forming the three coordinates.
        """
        a, b = self.matrix, self.offset
        m = a.T @ q @ a
        g = 2.0 * a.T @ q @ b + a.T @ lin
        h = float(b @ q @ b + lin @ b + const)
        x = self.fine[0][block.x]
        y = self.fine[1][block.y]
        z = self.fine[2][block.z]
        plane = (
            (m[0, 0] * x * x)[None, :]
            + (m[1, 1] * y * y + g[1] * y + h)[:, None]
            + (2.0 * m[0, 1] * y)[:, None] * x[None, :]
            + (g[0] * x)[None, :]
        )
        cross = (2.0 * m[0, 2] * x)[None, :] + (2.0 * m[1, 2] * y)[:, None]
        line = m[2, 2] * z * z + g[2] * z
        out = z.astype(_F32)[:, None, None] * cross.astype(_F32)[None]
        out += plane.astype(_F32)[None]
        out += line.astype(_F32)[:, None, None]
        return out


class _Canvas:
    """Signal channels on a lattice, painted structure by structure (later ones cover earlier ones:
    value <- value + m * (tissue value - value))."""

    def __init__(self, lattice: _Lattice, channels: Callable[[_Tissue], dict[str, float]]):
        self.lattice = lattice
        self.channels = channels
        self.arrays = {name: np.zeros(lattice.shape, _F32) for name in channels(_AIR)}
        self._cache: dict[_Tissue, dict[str, float]] = {}
        self._blank = True

    def paint(self, block: _Block, membership: np.ndarray, tissue: _Tissue) -> None:
        values = self._cache.setdefault(tissue, self.channels(tissue))
        if self._blank and block == self.lattice.whole():  # first coat over air: value = m * tissue value
            for name, array in self.arrays.items():
                np.multiply(membership, _F32(values[name]), out=array)
            self._blank = False
            return
        self._blank = False
        scratch = np.empty_like(membership)
        for name, array in self.arrays.items():
            view = array[block.slices]
            np.subtract(_F32(values[name]), view, out=scratch)
            scratch *= membership
            view += scratch

    def paint_ellipsoid(self, ellipsoid: _Ellipsoid) -> None:
        block = self.lattice.block(*ellipsoid.bounds())
        if block.empty():
            return
        membership = self.lattice.quadratic(block, *ellipsoid.quadratic())
        tight = self.lattice.crop(block, membership > 0.0)
        if tight.empty():
            return
        membership = membership[tight.relative_to(block)]
        np.clip(membership, 0.0, 1.0, out=membership)
        self.paint(tight, membership, ellipsoid.tissue)

    def voxel_means(self) -> dict[str, np.ndarray]:
        """Channels averaged over the sub-samples of each voxel, [Z, Y, X]."""
        sx, sy, sz = self.lattice.sub
        out = {}
        for name, array in self.arrays.items():
            total = None
            for k in range(sz):
                for j in range(sy):
                    for i in range(sx):
                        part = array[k::sz, j::sy, i::sx]
                        total = part.copy() if total is None else np.add(total, part, out=total)
            total *= _F32(1.0 / (sx * sy * sz))
            out[name] = total
        return out


@dataclass
class _Labels:
    """Ground truth on a grid: zones (0/1/2) and lesion instances (0, 1..n), uint8 [Z, Y, X]."""

    zones: np.ndarray
    instances: np.ndarray


def _render(
    anatomy: _Anatomy, lattice: _Lattice, channels: Callable[[_Tissue], dict[str, float]], with_labels: bool
) -> tuple[dict[str, np.ndarray], _Labels | None]:
    """Paint the anatomy on a lattice; returns voxel-mean channels and (optionally) the labels.

    Labels need a lattice without in-plane sub-sampling and with an odd number of sub-slices: zones are
    read at the voxel centre, lesion masks where the lesion covers >= half of the voxel.
    """
    canvas = _Canvas(lattice, channels)
    for ellipsoid in anatomy.background:
        canvas.paint_ellipsoid(ellipsoid)

    gland = anatomy.gland
    block = lattice.blob_block(gland, anatomy.capsule_scale)
    sz = lattice.sub[2]
    labels = None
    if with_labels:
        voxels = (lattice.shape[0] // sz, lattice.shape[1], lattice.shape[2])
        labels = _Labels(np.zeros(voxels, np.uint8), np.zeros(voxels, np.uint8))
    if block.empty():
        return canvas.voxel_means(), labels
    u, v, w = lattice.coordinates(block)
    gland_rho = gland.rho(u, v, w)
    canvas.paint(block, gland.membership(gland_rho, anatomy.capsule_scale), _CAPSULE)
    gland_m = gland.membership(gland_rho)
    canvas.paint(block, gland_m, anatomy.pz_tissue)
    afms_raw = np.clip(lattice.quadratic(block, *anatomy.afms.quadratic()), 0.0, 1.0)
    canvas.paint(block, afms_raw * gland_m, _AFMS)
    tz_raw = anatomy.tz.membership(anatomy.tz.rho(u, v, w))
    canvas.paint(block, tz_raw * gland_m, anatomy.tz_tissue)
    if labels is not None:  # zones at the voxel centres (the middle sub-slice)
        centre = slice(sz // 2, None, sz)
        central = (tz_raw[centre] >= 0.5) | (afms_raw[centre] >= 0.5)
        zone_block = np.where(gland_m[centre] >= 0.5, np.where(central, 2, 1), 0).astype(np.uint8)
        labels.zones[block.z.start // sz : block.z.stop // sz, block.y, block.x] = zone_block
    canvas.paint(block, np.clip(lattice.quadratic(block, *anatomy.urethra.quadratic()), 0.0, 1.0) * gland_m, _URETHRA)

    def clipped(blob: _Blob) -> tuple[_Block, np.ndarray] | None:
        sub_block = lattice.blob_block(blob)
        if sub_block.empty():
            return None
        su, sv, sw = lattice.coordinates(sub_block)
        m = blob.membership(blob.rho(su, sv, sw)) * gland.membership(gland.rho(su, sv, sw))
        return sub_block, m

    for blob, tissue in anatomy.nodules:
        painted = clipped(blob)
        if painted is not None:
            canvas.paint(painted[0], painted[1], tissue)
    for lesion_id, lesion in enumerate(anatomy.lesions, start=1):
        painted = clipped(lesion.blob)
        if painted is None:
            continue
        sub_block, m = painted
        canvas.paint(sub_block, m, lesion.tissue)
        if labels is not None:
            coverage = m.reshape(m.shape[0] // sz, sz, *m.shape[1:]).mean(axis=1)
            target = labels.instances[sub_block.z.start // sz : sub_block.z.stop // sz, sub_block.y, sub_block.x]
            inside = coverage >= 0.5
            if not inside.any():  # tiny lesion between slice centres: keep its best-covered voxel
                inside = coverage >= coverage.max() * 0.999
                inside &= coverage > 0.05
            target[inside] = lesion_id
    return canvas.voxel_means(), labels


def _blob_points(blob: _Blob, clip: _Blob | None = None) -> np.ndarray:
    """Body-frame points [N, 3] of a 0.5 mm lattice where the blob's membership (times that of `clip`)
    is >= 0.5; the best point if none is."""
    low, high = blob.bounds()
    step = _LESION_SAMPLING_MM
    axes = [np.arange(lo, hi + step, step, dtype=np.float64) for lo, hi in zip(low, high, strict=True)]
    points = np.stack([a.ravel() for a in np.meshgrid(*axes, indexing="ij")], axis=1)
    u, v, w = (points[:, i].astype(_F32) for i in range(3))
    m = blob.membership(blob.rho(u, v, w))
    if clip is not None:
        m *= clip.membership(clip.rho(u, v, w))
    inside = points[m >= 0.5]
    return inside if len(inside) else points[[int(np.argmax(m))]]


def _largest_extent(blob: _Blob, points: np.ndarray) -> float:
    """Largest extent (mm) of body-frame points [N, 3] along the blob's local axes."""
    projected = (points - blob.centre) @ blob.axes
    return float((projected.max(axis=0) - projected.min(axis=0)).max() + _LESION_SAMPLING_MM)


def _lesion_record(anatomy: _Anatomy, lesion_id: int, lesion: _LesionSpec) -> PhantomLesion:
    """Centre (LPS), largest diameter and volume of a lesion, measured on a 0.5 mm lattice of the
    analytic shape clipped to the gland (membership >= 0.5)."""
    inside = _blob_points(lesion.blob, anatomy.gland)
    centre = anatomy.to_lps(inside.mean(axis=0)[None])[0]
    volume_ml = len(inside) * _LESION_SAMPLING_MM**3 / 1000.0
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


# --------------------------------------------------------------------------------------------------
# Acquisition
# --------------------------------------------------------------------------------------------------


def _upsample2(array: np.ndarray, axis: int, length: int) -> np.ndarray:
    """Linear x2 upsampling along one axis (cell-centred samples), cropped to `length`."""
    a = np.moveaxis(array, axis, 0)
    previous = np.concatenate([a[:1], a[:-1]])
    following = np.concatenate([a[1:], a[-1:]])
    out = np.empty((2 * a.shape[0], *a.shape[1:]), a.dtype)
    out[0::2] = _F32(0.75) * a + _F32(0.25) * previous
    out[1::2] = _F32(0.75) * a + _F32(0.25) * following
    return np.moveaxis(out[:length], 0, axis)


def _texture(
    rng: np.random.Generator, shape: tuple[int, int, int], sigma_voxels: tuple[float, float, float]
) -> np.ndarray:
    """Smooth zero-mean unit-SD random field [Z, Y, X] (tissue microstructure), float32.

    Filtered white noise at half the in-plane resolution, upsampled linearly; sigma in voxels of `shape`.
    """
    coarse = rng.standard_normal((shape[0], (shape[1] + 1) // 2, (shape[2] + 1) // 2), dtype=_F32)
    coarse = ndimage.gaussian_filter(coarse, (sigma_voxels[0], sigma_voxels[1] / 2, sigma_voxels[2] / 2))
    coarse /= max(float(coarse.std()), 1e-6)
    return _upsample2(_upsample2(coarse, 1, shape[1]), 2, shape[2])


def _bias_field(rng: np.random.Generator, anatomy: _Anatomy, grid: Grid, strength: float) -> np.ndarray:
    """Smooth multiplicative coil-sensitivity field exp(quadratic polynomial of position) [Z, Y, X]."""
    lattice = _Lattice(grid, (1, 1, 1), anatomy)
    scale = 1.0 / 100.0  # polynomial in units of 10 cm
    q = rng.normal(0, 0.5, (3, 3))
    q = (q + q.T) / 2 * strength * scale**2
    q[2, :] *= 0.3
    q[:, 2] *= 0.3
    lin = rng.normal(0, 0.6, 3) * strength * scale
    poly = lattice.quadratic(lattice.whole(), q, lin, 0.0)
    return np.exp(poly - _F32(poly.mean()))


def _rician(rng: np.random.Generator, signal: np.ndarray, sigma: float) -> np.ndarray:
    """Magnitude of the signal plus complex Gaussian noise of SD sigma per channel."""
    real = rng.standard_normal(signal.shape, dtype=_F32)
    real *= _F32(sigma)
    real += signal
    imag = rng.standard_normal(signal.shape, dtype=_F32)
    imag *= _F32(sigma)
    return np.hypot(real, imag)


def _acquisition_planes(rng: np.random.Generator, site: SiteProfile) -> tuple[np.ndarray, np.ndarray]:
    """Direction matrices (columns = image axes in LPS) of the T2w and the DWI grids.

    Oblique axial: tilt of 3-20 degrees about left-right (slice normal towards posterior-superior, like
    ProstateX), a small tilt about anterior-posterior and a small in-plane rotation.
    """
    deg = math.pi / 180.0
    t2 = _rotation(-rng.uniform(3, 20) * deg, rng.normal(0, 3) * deg, rng.normal(0, 2) * deg)
    offset = site.dwi_tilt_offset_deg * deg * (1.0 if rng.random() < 0.5 else -1.0)
    dwi = t2 @ _rotation(offset, 0.0, 0.0)
    return t2, dwi


def _t2w_channels(site: SiteProfile) -> Callable[[_Tissue], dict[str, float]]:
    gain = _T2_REFERENCE_GAIN * site.t2_gain

    def channels(tissue: _Tissue) -> dict[str, float]:
        return {"t2w": gain * tissue.pd * math.exp(-site.t2_te_ms / tissue.t2_ms), "texture": tissue.texture}

    return channels


def _dwi_channels(site: SiteProfile) -> Callable[[_Tissue], dict[str, float]]:
    gain = _DWI_REFERENCE_GAIN * site.dwi_gain
    b_lo, b_hi = site.adc_b_values

    def channels(tissue: _Tissue) -> dict[str, float]:
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


def _add_fat_leak(
    rng: np.random.Generator, anatomy: _Anatomy, lattice: _Lattice, site: SiteProfile, channels: dict[str, np.ndarray]
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
    fat_adc = _FAT.adc * 1e-6
    channels["b_lo"] += leak * _F32(math.exp(-site.adc_b_values[0] * fat_adc))
    channels["b_hi"] += leak * _F32(math.exp(-site.adc_b_values[1] * fat_adc))
    if "hbv" in channels:
        channels["hbv"] += leak * _F32(math.exp(-site.hbv_b_value * fat_adc))


def _dwi_images(
    rng: np.random.Generator, site: SiteProfile, channels: dict[str, np.ndarray], bias: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Noisy ADC (um^2/s) and high-b arrays [Z, Y, X] from the noise-free DWI channels."""
    b_lo, b_hi = site.adc_b_values
    gain = _DWI_REFERENCE_GAIN * site.dwi_gain
    pz_s0 = gain * math.exp(-site.dwi_te_ms / _PZ_T2_MS)
    sigma = pz_s0 * math.exp(-b_lo * _PZ_ADC * 1e-6) / site.dwi_snr
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
    tiny = _F32(1e-3 * sigma)
    adc = np.log(np.maximum(signals["b_lo"], tiny) / np.maximum(signals["b_hi"], tiny)) / _F32((b_hi - b_lo) * 1e-6)
    adc *= _F32(site.adc_calibration)
    background = ndimage.gaussian_filter(signals["b_lo"], (0.0, 1.0, 1.0)) < 2.5 * sigma
    if site.hbv_acquired:
        hbv = signals["hbv"]
    else:
        hbv = signals["b_lo"] * np.exp(-(site.hbv_b_value - b_lo) * 1e-6 * np.clip(adc, 0.0, _ADC_MAX))
        hbv[background] = 0.0
    adc[background] = 0.0
    np.clip(adc, 0.0, _ADC_MAX, out=adc)
    return adc.astype(_F32), hbv.astype(_F32)


# --------------------------------------------------------------------------------------------------
# Public API
# --------------------------------------------------------------------------------------------------


def _site(site: str | SiteProfile) -> SiteProfile:
    if isinstance(site, SiteProfile):
        return site
    if site not in SITES:
        raise ValueError(f"unknown phantom site {site!r}; known sites: {', '.join(sorted(SITES))}")
    return SITES[site]


def case_id_for(site: str, index: int) -> str:
    """Case (= patient) id of a phantom case, e.g. "A0003"."""
    return f"{site}{index:04d}"


def study_id_for(index: int) -> str:
    """PI-CAI style numeric study id of a phantom case, e.g. "1000003"."""
    return str(1_000_000 + index)


def generate_case(seed: int, site: str | SiteProfile = "A", index: int = 0) -> PhantomCase:
    """Generate one synthetic bi-parametric MRI study; a pure function of (seed, site, index).

    `site` is a name of SITES or a custom SiteProfile (the random stream is keyed by its site_id, so a
    profile made with dataclasses.replace(SITES["A"], ...) gives the same anatomy and noise as site A).

    Returns T2w (arbitrary units), ADC (um^2/s) and high-b (arbitrary units) float32 images, each on its
    own oblique grid, and the uint8 ground-truth masks on the T2w grid. Raises ValueError for an unknown
    site or a negative seed/index.
    """
    profile = _site(site)
    if seed < 0 or index < 0:
        raise ValueError(f"seed and index must be >= 0 (got seed={seed}, index={index})")
    rng = np.random.default_rng([seed, index, profile.site_id])

    age = float(rng.uniform(48, 78))
    anatomy = _build_anatomy(rng, age)
    _add_lesions(rng, anatomy)

    t2_direction, dwi_direction = _acquisition_planes(rng, profile)
    fov_centre = anatomy.to_lps(
        np.array([[rng.normal(0, 3), rng.normal(0, 3), 0.2 * anatomy.gland.semi[2] + rng.normal(0, 3)]])
    )[0]
    coverage = 2.1 * anatomy.gland.semi[2] + 20.0
    n_slices = int(np.clip(math.ceil(coverage / profile.t2_slice_mm) + rng.integers(0, 2), *profile.t2_slices))
    t2_grid = Grid(
        (n_slices, profile.t2_matrix, profile.t2_matrix),
        (profile.t2_slice_mm, profile.t2_inplane_mm, profile.t2_inplane_mm),
        (0.0, 0.0, 0.0),
        t2_direction,
    ).centred_on(fov_centre)
    dwi_slices = int(round(n_slices * profile.t2_slice_mm / profile.dwi_slice_mm))
    dwi_grid = Grid(
        (dwi_slices, profile.dwi_matrix[1], profile.dwi_matrix[0]),
        (profile.dwi_slice_mm, profile.dwi_inplane_mm, profile.dwi_inplane_mm),
        (0.0, 0.0, 0.0),
        dwi_direction,
    ).centred_on(fov_centre)
    shift_dir = np.array([rng.normal(0, 0.35), 1.0 if rng.random() < 0.5 else -1.0, rng.normal(0, 0.35)])
    shift = dwi_direction @ (shift_dir / np.linalg.norm(shift_dir)) * profile.misregistration_mm * rng.uniform(0.5, 1.5)

    # T2w
    t2_channels, labels = _render(
        anatomy, _Lattice(t2_grid, (1, 1, _SUBSLICES), anatomy), _t2w_channels(profile), with_labels=True
    )
    assert labels is not None
    t2_sigma_vox = (0.3, 1.6, 1.6)
    t2w = t2_channels["t2w"] * (1.0 + t2_channels["texture"] * _texture(rng, labels.zones.shape, t2_sigma_vox))
    t2w *= _bias_field(rng, anatomy, t2_grid, profile.bias_field)
    pz_t2w = _T2_REFERENCE_GAIN * profile.t2_gain * math.exp(-profile.t2_te_ms / _PZ_T2_MS)
    t2w = _rician(rng, t2w, pz_t2w / profile.t2_snr)

    # DWI: ADC and high-b
    dwi_channels, _ = _render(
        anatomy, _Lattice(dwi_grid, (2, 2, _SUBSLICES), anatomy, shift), _dwi_channels(profile), with_labels=False
    )
    _add_fat_leak(rng, anatomy, _Lattice(dwi_grid, (1, 1, 1), anatomy, shift), profile, dwi_channels)
    adc, hbv = _dwi_images(rng, profile, dwi_channels, _bias_field(rng, anatomy, dwi_grid, profile.bias_field))

    # lesions outside the imaged slab (rare) are dropped and the others renumbered 1..n
    present = [i for i in range(1, len(anatomy.lesions) + 1) if np.any(labels.instances == i)]
    relabel = np.zeros(len(anatomy.lesions) + 1, np.uint8)
    relabel[present] = np.arange(1, len(present) + 1)
    labels.instances = relabel[labels.instances]
    lesions = [
        _lesion_record(anatomy, new_id, anatomy.lesions[old_id - 1]) for new_id, old_id in enumerate(present, start=1)
    ]
    cspca = np.zeros_like(labels.instances)
    for lesion in lesions:
        if lesion.clinically_significant:
            cspca[labels.instances == lesion.lesion_id] = lesion.grade_group

    prostate_volume = anatomy.gland_volume_ml
    any_cancer = any(lesion.kind == "cancer" for lesion in lesions)
    any_cspca = any(lesion.clinically_significant for lesion in lesions)
    psa = math.exp(rng.normal(math.log(0.07 * prostate_volume + 1.5 * any_cspca + 0.3 * any_cancer + 0.5), 0.3))
    mri_date = datetime.date(2016, 1, 1) + datetime.timedelta(days=int(rng.integers(0, 5 * 365)))

    case_id = case_id_for(profile.name, index)
    return PhantomCase(
        case_id=case_id,
        patient_id=case_id,
        study_id=study_id_for(index),
        site=profile.name,
        seed=seed,
        t2w=t2_grid.image_from_array(t2w.astype(_F32)),
        adc=dwi_grid.image_from_array(adc),
        hbv=dwi_grid.image_from_array(hbv),
        lesion_instances=t2_grid.image_from_array(labels.instances),
        cspca_mask=t2_grid.image_from_array(cspca),
        zones=t2_grid.image_from_array(labels.zones),
        lesions=lesions,
        b_value=profile.hbv_b_value,
        prostate_volume_ml=round(prostate_volume, 2),
        patient_age=int(age),
        psa=round(psa, 2),
        mri_date=mri_date.isoformat(),
    )


# --------------------------------------------------------------------------------------------------
# Writing (PI-CAI public layout)
# --------------------------------------------------------------------------------------------------

_GLEASON = {0: "0+0", 1: "3+3", 2: "3+4", 3: "4+3", 4: "4+4", 5: "4+5"}
MARKSHEET_COLUMNS = [
    "patient_id",
    "study_id",
    "mri_date",
    "patient_age",
    "psa",
    "psad",
    "prostate_volume",
    "histopath_type",
    "lesion_GS",
    "lesion_ISUP",
    "case_ISUP",
    "case_csPCa",
    "center",
]
LESION_COLUMNS = [
    "patient_id",
    "study_id",
    "lesion_id",
    "grade_group",
    "kind",
    "zone",
    "center_x_mm",
    "center_y_mm",
    "center_z_mm",
    "diameter_mm",
    "volume_ml",
]


def _csv_text(columns: list[str], rows: list[dict[str, object]]) -> str:
    from io import StringIO

    buffer = StringIO()
    writer = csv.DictWriter(buffer, fieldnames=columns, lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    return buffer.getvalue()


def write_case(case: PhantomCase, out_dir: Path) -> None:
    """Write one case's images and masks in the PI-CAI layout under out_dir (atomic per file):
    images/<pid>/<pid>_<sid>_{t2w,adc,hbv}.mha, labels/, lesions/ and zones/<pid>_<sid>.nii.gz."""
    out_dir = Path(out_dir)
    stem = f"{case.patient_id}_{case.study_id}"
    image_dir = out_dir / "images" / case.patient_id
    for folder in (image_dir, out_dir / "labels", out_dir / "lesions", out_dir / "zones"):
        folder.mkdir(parents=True, exist_ok=True)
    for name, image in (("t2w", case.t2w), ("adc", case.adc), ("hbv", case.hbv)):
        write_image_atomic(image, image_dir / f"{stem}_{name}.mha", compress=False)  # float noise: incompressible
    write_image_atomic(case.cspca_mask, out_dir / "labels" / f"{stem}.nii.gz")
    write_image_atomic(case.lesion_instances, out_dir / "lesions" / f"{stem}.nii.gz")
    write_image_atomic(case.zones, out_dir / "zones" / f"{stem}.nii.gz")


def _marksheet_row(case: PhantomCase, rng: np.random.Generator) -> dict[str, object]:
    grades = [lesion.grade_group for lesion in case.lesions]
    case_isup = max(grades, default=0)
    if grades:
        histopath = str(rng.choice(["MRBx", "SysBx+MRBx"]))
    elif rng.random() < 0.4:  # negative systematic biopsy
        histopath, grades = "SysBx", [0]
    else:  # no biopsy (negative follow-up): no histopathology fields, as in PI-CAI
        histopath = ""
    return {
        "patient_id": case.patient_id,
        "study_id": case.study_id,
        "mri_date": case.mri_date,
        "patient_age": case.patient_age,
        "psa": case.psa,
        "psad": round(case.psa / case.prostate_volume_ml, 3) if case.prostate_volume_ml > 0 else "",
        "prostate_volume": case.prostate_volume_ml,
        "histopath_type": histopath,
        "lesion_GS": ",".join(_GLEASON[g] for g in grades),
        "lesion_ISUP": ",".join(str(g) for g in grades),
        "case_ISUP": case_isup,
        "case_csPCa": "YES" if case_isup >= 2 else "NO",
        "center": case.site,
    }


def _lesion_rows(case: PhantomCase) -> list[dict[str, object]]:
    return [
        {
            "patient_id": case.patient_id,
            "study_id": case.study_id,
            "lesion_id": lesion.lesion_id,
            "grade_group": lesion.grade_group,
            "kind": lesion.kind,
            "zone": lesion.zone,
            "center_x_mm": round(lesion.center_lps_mm[0], 3),
            "center_y_mm": round(lesion.center_lps_mm[1], 3),
            "center_z_mm": round(lesion.center_lps_mm[2], 3),
            "diameter_mm": lesion.diameter_mm,
            "volume_ml": lesion.volume_ml,
        }
        for lesion in case.lesions
    ]


def write_cohort(
    out_dir: Path | str,
    n_cases: int,
    site: str | SiteProfile = "A",
    seed: int = 0,
    progress: Callable[[int, int], None] | None = None,
) -> list[str]:
    """Generate and write cases 0..n_cases-1 of (seed, site) in the PI-CAI layout plus marksheet.csv,
    lesions.csv and cohort.json (written last). progress(done, total) is called after each case.
    Returns the case ids."""
    profile = _site(site)
    if n_cases < 1:
        raise ValueError(f"n_cases must be >= 1 (got {n_cases})")
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    marksheet: list[dict[str, object]] = []
    lesion_rows: list[dict[str, object]] = []
    case_ids: list[str] = []
    for index in range(n_cases):
        case = generate_case(seed, site, index)
        write_case(case, out_dir)
        # clinical fields that need no image: their own generator, so the images do not depend on them
        marksheet.append(_marksheet_row(case, np.random.default_rng([seed, index, profile.site_id, 1])))
        lesion_rows += _lesion_rows(case)
        case_ids.append(case.case_id)
        if progress is not None:
            progress(index + 1, n_cases)
    write_text_atomic(out_dir / "marksheet.csv", _csv_text(MARKSHEET_COLUMNS, marksheet))
    write_text_atomic(out_dir / "lesions.csv", _csv_text(LESION_COLUMNS, lesion_rows))
    cohort = {
        "generator": "LesionAILib.phantom",
        "version": GENERATOR_VERSION,
        "site": profile.name,
        "site_description": profile.description,
        "seed": seed,
        "n_cases": n_cases,
        "case_ids": case_ids,
        "synthetic": True,
    }
    write_json_atomic(out_dir / "cohort.json", cohort)
    return case_ids

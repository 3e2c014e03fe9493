"""Acquisition profiles of the phantom sites: grids, contrast, b-values, noise, calibration, bias, shift.

A :class:`SiteProfile` changes the grids (matrix, spacing, slice thickness, FOV, DWI plane), the T2w
contrast (TE) and intensity scale, the DWI TE, b-values and scale, the noise levels, the ADC
calibration (a few % to 12 %), the bias-field strength and the DWI misregistration. Site D is the
training site most different from the reference site A. Site E is a test site outside the range of
A-D on almost every parameter (coarser grids, thicker slices, a tilted DWI plane, other b-values,
ADC calibration above every training site, strong bias field, large DWI shift); its parameters are
fixed by issue 14 so that no one tunes them to the model.
"""

from __future__ import annotations

from dataclasses import dataclass


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


_SITE_DESCRIPTIONS = {
    "A": "A: 3T vendor-1 reference (ProstateX-like: T2 0.5 mm / 3 mm, DWI 2 mm, b50-800, computed b1400)",
    "B": "B: 3T vendor-2, smaller T2 FOV, shorter TE, DWI 1.8 mm b100-1000, computed b1500, ADC +4 %",
    "C": "C: 1.5T vendor-1, noisier, TE 110, DWI 2 mm b0-1000, computed b2000, ADC -5 %",
    "D": "D: 3T vendor-3 without endorectal coil, most unlike A: long TE 130, 3.6 mm slices, "
    "DWI 2.5 mm in a separately planned plane, acquired b1000, ADC -10 %, strong bias field, "
    "large DWI shift",
    "E": "E: held-out test site outside A-D: coarse T2 0.7 mm / 4.5 mm, TE 150, DWI 3 mm 64 x 64 tilted 12 deg, "
    "b50-600, acquired b1000, ADC +12 %, bias field 0.7, 6 mm DWI shift",
}

# One column per site, in the order of _SITE_DESCRIPTIONS, so the sites compare side by side;
# fields and units as in SiteProfile.
_SITE_TABLE: dict[str, tuple[object, ...]] = {
    #                       A                B                C                D                E
    "site_id":             (1,               2,               3,               4,               5),
    "t2_matrix":           (384,             320,             352,             320,             256),
    "t2_inplane_mm":       (0.5,             0.5,             0.5,             0.5625,          0.7),
    "t2_slice_mm":         (3.0,             3.0,             3.0,             3.6,             4.5),
    "t2_slices":           ((19, 24),        (19, 24),        (19, 24),        (16, 20),        (14, 18)),
    "t2_te_ms":            (104.0,           96.0,            110.0,           130.0,           150.0),
    "t2_gain":             (1.0,             2.4,             0.6,             4.0,             0.3),
    "t2_snr":              (30.0,            34.0,            20.0,            16.0,            10.0),
    "dwi_matrix":          ((84, 128),       (100, 100),      (96, 96),        (86, 86),        (64, 64)),
    "dwi_inplane_mm":      (2.0,             1.8,             2.0,             2.5,             3.0),
    "dwi_slice_mm":        (3.0,             3.0,             3.0,             3.6,             4.5),
    "dwi_tilt_offset_deg": (0.0,             0.0,             0.0,             6.0,             12.0),
    "dwi_te_ms":           (63.0,            70.0,            75.0,            85.0,            95.0),
    "dwi_gain":            (1.0,             3.0,             0.3,             10.0,            20.0),
    "dwi_snr":             (45.0,            45.0,            28.0,            22.0,            14.0),
    "adc_b_values":        ((50.0, 800.0),   (100.0, 1000.0), (0.0, 1000.0),   (0.0, 800.0),    (50.0, 600.0)),
    "hbv_b_value":         (1400.0,          1500.0,          2000.0,          1000.0,          1000.0),
    "hbv_acquired":        (False,           False,           False,           True,            True),
    "adc_calibration":     (1.0,             1.04,            0.95,            0.90,            1.12),
    "bias_field":          (0.15,            0.2,             0.3,             0.5,             0.7),
    "misregistration_mm":  (1.0,             1.5,             2.5,             4.0,             6.0),
}


def _site_profiles() -> dict[str, SiteProfile]:
    """The columns of _SITE_TABLE as SiteProfiles, keyed by site name."""
    columns = zip(*_SITE_TABLE.values(), strict=True)
    return {
        name: SiteProfile(name=name, description=description, **dict(zip(_SITE_TABLE, column, strict=True)))
        for (name, description), column in zip(_SITE_DESCRIPTIONS.items(), columns, strict=True)
    }


SITES: dict[str, SiteProfile] = _site_profiles()


def site_profile(site: str | SiteProfile) -> SiteProfile:
    """The profile itself, or the profile of a site name in SITES; ValueError for an unknown name."""
    if isinstance(site, SiteProfile):
        return site
    if site not in SITES:
        raise ValueError(f"unknown phantom site {site!r}; known sites: {', '.join(sorted(SITES))}")
    return SITES[site]

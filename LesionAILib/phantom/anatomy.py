"""Random normal anatomy of one phantom case: body frame, pelvis, pelvic organs, prostate zones, BPH nodules.

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
  glandular).

Lesions are sampled into this anatomy by :mod:`LesionAILib.phantom.lesions`. Every function draws from
the case's random generator in a fixed order, so the order of the calls in :func:`build_anatomy` is part
of the phantom's definition.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from LesionAILib.phantom.shapes import Blob, Ellipsoid, blob_volume_ml, ellipsoid, random_blob, rotation
from LesionAILib.phantom.tissues import (
    AFMS,
    ARTERY,
    BULB,
    CORTEX,
    FAT,
    LYMPH_NODE,
    MARROW,
    MUCOSA,
    MUSCLE,
    NORMAL_PZ,
    NORMAL_TZ,
    PLEXUS,
    SEMINAL,
    URETHRA,
    URINE,
    VEIN,
    Tissue,
    jitter,
)

_DEG = math.pi / 180.0


@dataclass
class Anatomy:
    """All random normal anatomy of one case, in the body frame (origin = gland centre; axes u, v, w ~ LPS
    rotated by `rotation`)."""

    centre_lps: np.ndarray
    rotation: np.ndarray  # body axes in LPS (columns)
    anterior_skin_v: float  # body-frame v (mm, + posterior) of the anterior skin
    background: list[Ellipsoid]  # painted in order before the gland
    capsule_scale: float
    gland_volume_ml: float
    gland: Blob
    tz: Blob
    pz_tissue: Tissue
    tz_tissue: Tissue
    afms: Ellipsoid
    urethra: Ellipsoid
    nodules: list[tuple[Blob, Tissue]]

    def to_lps(self, points: np.ndarray) -> np.ndarray:
        """Body-frame points [N, 3] -> LPS mm [N, 3]."""
        return points @ self.rotation.T + self.centre_lps


@dataclass(frozen=True)
class _BodyOutline:
    """Elliptic cross-section of the body (mm, body frame): half width (u), half depth (v), centre v and
    the thickness of the subcutaneous fat."""

    half_width: float
    half_depth: float
    centre_v: float
    fat_mm: float

    @property
    def anterior_skin_v(self) -> float:
        return self.centre_v - self.half_depth

    @property
    def posterior_inner_v(self) -> float:
        """v of the inner (muscle-side) border of the posterior subcutaneous fat."""
        return self.centre_v + self.half_depth - self.fat_mm

    @property
    def anterior_inner_v(self) -> float:
        """v of the inner border of the anterior subcutaneous fat."""
        return self.centre_v - self.half_depth + self.fat_mm


def _bone(centre, semi, axes: np.ndarray | None = None, cortex_mm: float = 2.5) -> list[Ellipsoid]:
    """A bone: dark cortex shell around fatty marrow."""
    inner = np.maximum(np.asarray(semi, float) - cortex_mm, 1.0)
    return [ellipsoid(centre, semi, 1.0, CORTEX, axes), ellipsoid(centre, inner, 1.0, MARROW, axes)]


def _body_frame(rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """(rotation of the body axes in LPS, gland centre in LPS mm): the patient's position in the scanner."""
    frame_rotation = rotation(rng.normal(0, 5) * _DEG, rng.normal(0, 3) * _DEG, rng.normal(0, 3) * _DEG)
    centre_lps = np.array([rng.uniform(-20, 40), rng.uniform(-10, 30), rng.uniform(-60, 20)])
    return frame_rotation, centre_lps


def _gland(rng: np.random.Generator, age: float) -> tuple[Blob, float]:
    """(prostate blob, its volume in ml): 25-80 ml growing with age, aspect LR : AP : SI ~ 1.25 : 0.85 : 1."""
    volume = float(np.clip(math.exp(rng.normal(math.log(40.0) + 0.02 * (age - 63.0), 0.3)), 25.0, 80.0))
    aspect = np.array([rng.normal(1.25, 0.08), rng.normal(0.85, 0.06), rng.normal(1.0, 0.08)])
    gland_axes = rotation(rng.normal(-8, 5) * _DEG, 0.0, 0.0)  # base tilted anteriorly
    gland = random_blob(rng, np.zeros(3), aspect * 20.0, rng.uniform(0.12, 0.22), 1.2, gland_axes)
    # wider base / narrower apex and a flatter posterior surface
    coeffs = gland.coeffs.copy()
    coeffs[2] += 0.07  # + nw: larger towards the base
    coeffs[1] -= 0.04  # - nv: smaller posteriorly
    scale = (volume / blob_volume_ml(Blob(gland.centre, gland.axes, gland.semi, coeffs, gland.edge_mm))) ** (1 / 3)
    return Blob(gland.centre, gland.axes, gland.semi * scale, coeffs, gland.edge_mm), volume


def _reach(gland: Blob) -> float:
    """Largest radius modulation of the gland: its surface stays within reach * semi-axes."""
    return 1.0 + float(np.abs(gland.coeffs).sum())


def _transition_zone(rng: np.random.Generator, gland: Blob, volume: float, age: float) -> tuple[Blob, float]:
    """(TZ blob, TZ volume fraction of the gland): 22-72 %, larger in larger and older glands."""
    a_u, a_v, a_w = gland.semi.tolist()
    tz_fraction = float(
        np.clip(0.3 + 0.25 * (volume - 25.0) / 55.0 + 0.006 * (age - 63.0) + rng.normal(0, 0.05), 0.22, 0.72)
    )
    tz_scale = tz_fraction ** (1.0 / 3.0)
    tz_centre = gland.axes @ np.array([0.0, -a_v * (0.1 + 0.25 * tz_fraction), 0.15 * a_w])
    tz = random_blob(
        rng,
        tz_centre,
        np.array([a_u * 1.0, a_v * 0.95, a_w * 0.9]) * tz_scale,
        rng.uniform(0.05, 0.12),
        1.0,
        gland.axes,
    )
    return tz, tz_fraction


def _body_outline(rng: np.random.Generator) -> _BodyOutline:
    half_width = rng.uniform(150, 195)
    half_depth = rng.uniform(95, 125)
    centre_v = rng.normal(5, 5)
    return _BodyOutline(half_width, half_depth, centre_v, rng.uniform(12, 40))


def _body_fat(rng: np.random.Generator, body: _BodyOutline) -> list[Ellipsoid]:
    """The fat-filled body outline and the small vessels (flow voids and veins) in the fat; organs
    painted later cover them."""
    structures = [ellipsoid([0, body.centre_v, 0], [body.half_width, body.half_depth, 3000], 1.5, FAT)]
    for _ in range(int(rng.integers(18, 30))):
        angle, radial = rng.uniform(0, 2 * math.pi), math.sqrt(rng.uniform(0.05, 0.9))
        centre = [
            body.half_width * radial * math.cos(angle),
            body.centre_v + body.half_depth * radial * math.sin(angle),
            rng.uniform(-40, 40),
        ]
        radius = rng.uniform(0.8, 2.5)
        axes = rotation(rng.normal(0, 0.3), rng.normal(0, 0.3), 0.0)
        structures.append(
            ellipsoid(centre, [radius, radius, rng.uniform(20, 60)], 0.7, ARTERY if rng.random() < 0.5 else VEIN, axes)
        )
    return structures


def _pelvic_side_wall(rng: np.random.Generator, side: float, body: _BodyOutline, gland: Blob) -> list[Ellipsoid]:
    """Muscles, bones and femoral vessels of one side (side -1 right, +1 left), in painting order."""
    a_u, a_v, a_w = gland.semi.tolist()
    glut = rotation(about_z=-side * rng.uniform(20, 35) * _DEG)
    structures = [
        ellipsoid(
            [side * rng.uniform(85, 100), body.posterior_inner_v - rng.uniform(12, 20), -10],
            [rng.uniform(40, 55), rng.uniform(18, 26), 150],
            1.5,
            MUSCLE,
            glut,
        )
    ]
    lateral = a_u + rng.uniform(24, 32)
    obturator = rotation(about_z=side * rng.uniform(8, 18) * _DEG)
    structures += _bone([side * (lateral + 17), 10, 0], [8, 36, 45], obturator, 2.0)  # acetabulum
    structures.append(ellipsoid([side * lateral, 2, 0], [rng.uniform(8, 11), 38, 45], 1.2, MUSCLE, obturator))
    structures += _bone([side * (a_u + rng.uniform(58, 68)), -8, 14], [24, 24, 24], None, 2.0)  # femur
    structures += _bone([side * (a_u + 28), a_v + 32, -30], [12, 18, 22], None, 2.0)  # ischium
    structures.append(ellipsoid([side * (a_u + 45), -(a_v + 30), -12], [16, 16, 45], 1.5, MUSCLE))
    structures.append(ellipsoid([side * (a_u + 50), -(a_v + 42), 0], [4.5, 4.5, 150], 1.0, ARTERY))
    structures.append(ellipsoid([side * (a_u + 39), -(a_v + 42), 0], [5.5, 5.5, 150], 1.0, VEIN))
    structures.append(ellipsoid([side * 38, body.anterior_inner_v + 9, 75], [30, 7, 60], 1.2, MUSCLE))  # rectus
    pubis = rotation(about_z=side * 20 * _DEG)
    structures += _bone([side * 12, -(a_v + rng.uniform(22, 30)), 0.5 * a_w + 8], [10, 13, 25], pubis, 1.5)
    structures += _bone([side * 42, -(a_v + 20), 26], [30, 9, 9], pubis, 1.5)
    levator = rotation(about_z=-side * rng.uniform(15, 25) * _DEG)
    structures.append(ellipsoid([side * (a_u * 0.9 + 6), a_v * 0.6 + 6, -6], [3.5, 26, 30], 1.0, MUSCLE, levator))
    return structures


def _lymph_nodes(rng: np.random.Generator, gland: Blob) -> list[Ellipsoid]:
    """2-6 lymph nodes along the pelvic side walls and in the mesorectum: low ADC, bright on high-b."""
    a_u, a_v, a_w = gland.semi.tolist()
    nodes = []
    for _ in range(int(rng.integers(2, 7))):
        side = 1.0 if rng.random() < 0.5 else -1.0
        centre = [side * rng.uniform(a_u + 5, a_u + 22), rng.uniform(-a_v, 2 * a_v + 20), rng.uniform(-a_w, 2 * a_w)]
        semi = rng.uniform(2.0, 5.0) * np.array([1.0, rng.uniform(0.6, 1.0), rng.uniform(1.0, 1.6)])
        nodes.append(ellipsoid(centre, semi, 0.8, LYMPH_NODE, rotation(about_z=rng.uniform(0, math.pi))))
    return nodes


def _bladder(rng: np.random.Generator, gland: Blob) -> list[Ellipsoid]:
    """Muscular bladder wall and urine, above the gland."""
    _, a_v, a_w = gland.semi.tolist()
    bladder_semi = np.array([rng.uniform(30, 55), rng.uniform(25, 40), rng.uniform(20, 40)])
    bladder_centre = [0, -0.3 * a_v - rng.uniform(2, 10), 0.8 * a_w + 0.85 * bladder_semi[2]]
    wall = ellipsoid(bladder_centre, bladder_semi + 3.0, 1.0, MUSCLE)
    return [wall, ellipsoid(bladder_centre, bladder_semi, 1.0, URINE)]


def _seminal_vesicles_and_bundles(rng: np.random.Generator, gland: Blob) -> list[Ellipsoid]:
    """Per side a seminal vesicle above the base and the neurovascular bundle beside the gland."""
    a_u, a_v, a_w = gland.semi.tolist()
    structures = []
    for side in (-1.0, 1.0):
        sv_axes = rotation(about_y=side * 20 * _DEG, about_z=side * rng.uniform(20, 35) * _DEG)
        structures.append(
            ellipsoid(
                [side * rng.uniform(14, 20), a_v * 0.55, a_w * 0.8 + 5],
                [rng.uniform(13, 19), rng.uniform(4, 6.5), 7],
                1.2,
                SEMINAL,
                sv_axes,
            )
        )
        structures.append(ellipsoid([side * a_u * 0.72, a_v * 0.8, 0], [2.5, 2.5, a_w * 1.3], 1.0, VEIN))
    return structures


def _rectum(rng: np.random.Generator, gland: Blob) -> list[Ellipsoid]:
    """Rectal wall, mucosa and a gas/stool lumen of random signal, behind the gland."""
    _, a_v, _ = gland.semi.tolist()
    rectum_semi = np.array([rng.uniform(10, 18), rng.uniform(6, 12), 80.0])
    wall = rng.uniform(4.0, 6.0)
    rectum_centre = [rng.normal(0, 3), a_v * _reach(gland) + 3.0 + wall + rectum_semi[1], 0]
    rectum_axes = rotation(about_x=-rng.uniform(10, 25) * _DEG)
    lumen = Tissue(rng.uniform(0.02, 0.5), 60.0, rng.uniform(700, 1500))
    return [
        ellipsoid(rectum_centre, rectum_semi + wall, 1.0, MUSCLE, rectum_axes),
        ellipsoid(rectum_centre, rectum_semi + 1.0, 0.8, MUCOSA, rectum_axes),
        ellipsoid(rectum_centre, rectum_semi, 1.0, lumen, rectum_axes),
    ]


def _bph_nodules(rng: np.random.Generator, gland: Blob, tz: Blob, tz_fraction: float) -> list[tuple[Blob, Tissue]]:
    """Unlabelled BPH nodules in the TZ, dark stromal or bright glandular: more with a larger TZ."""
    nodules = []
    for _ in range(int(rng.poisson(1.0 + 8.0 * (tz_fraction - 0.22)))):
        offset = rng.uniform(-0.7, 0.7, 3) * tz.semi
        diameter = rng.uniform(3.0, 12.0)
        stromal = rng.random() < 0.5
        tissue = (
            Tissue(0.95, rng.normal(70, 6), rng.normal(1200, 80), texture=0.05)
            if stromal
            else Tissue(1.0, rng.normal(170, 20), rng.normal(1650, 100), texture=0.12)
        )
        semi = diameter / 2 * rng.uniform(0.75, 1.0, 3)
        nodules.append((random_blob(rng, tz.centre + gland.axes @ offset, semi, 0.05, 0.6), tissue))
    return nodules


def build_anatomy(rng: np.random.Generator, age: float) -> Anatomy:
    """Sample the pelvis, prostate and background BPH nodules of one case (lesions are sampled after)."""
    frame_rotation, centre_lps = _body_frame(rng)
    gland, volume = _gland(rng, age)
    tz, tz_fraction = _transition_zone(rng, gland, volume, age)
    pz_tissue = jitter(NORMAL_PZ, rng, 12.0, 70.0)
    tz_tissue = jitter(NORMAL_TZ, rng, 7.0, 60.0)

    body = _body_outline(rng)
    background = _body_fat(rng, body)
    for side in (-1.0, 1.0):
        background += _pelvic_side_wall(rng, side, body, gland)
    a_u, a_v, a_w = gland.semi.tolist()
    background.append(ellipsoid([0, -a_v * 0.2, -(a_w + 26)], [12, 10, 12], 1.5, BULB))  # penile bulb
    background += _lymph_nodes(rng, gland)
    reach = _reach(gland)  # the periprostatic venous plexus wraps the whole gland
    background.append(
        ellipsoid([0, -3, 0], [a_u * reach + 5, a_v * reach + 4, a_w * reach + 2], 2.0, PLEXUS, gland.axes)
    )
    background += _bladder(rng, gland)
    background += _seminal_vesicles_and_bundles(rng, gland)
    background += _rectum(rng, gland)
    nodules = _bph_nodules(rng, gland, tz, tz_fraction)

    gland_axes = gland.axes
    afms = ellipsoid(
        gland_axes @ np.array([0, -a_v * 0.9, 0.1 * a_w]), [a_u * 0.7, a_v * 0.35, a_w * 0.8], 1.5, AFMS, gland_axes
    )
    urethra = ellipsoid(gland_axes @ np.array([0, -0.15 * a_v, 0]), [2.2, 2.2, a_w * 1.2], 0.8, URETHRA, gland_axes)
    return Anatomy(
        centre_lps=centre_lps,
        rotation=frame_rotation,
        anterior_skin_v=body.anterior_skin_v,
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

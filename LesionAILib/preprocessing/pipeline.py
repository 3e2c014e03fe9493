"""Remove geometric and intensity variability between the sequences of a case.

The pipeline, one visible function (:func:`preprocess`):

1. **Target grid** (:func:`target_grid`): the T2 frame's direction cosines, a configurable
   spacing and matrix (default 3.0 × 0.5 × 0.5 mm, 20 × 256 × 256, Z, Y, X), centred on the T2
   volume centre or on a given LPS point.
2. **Resampling** of every role into that grid in physical space, in one pass from the source
   series (images: trilinear by default or cubic B-spline, :attr:`PreprocessConfig.interpolation`;
   label maps: nearest) — SimpleITK on a CPU, torch on CUDA; both agree to 1e-3 (linear) and to
   float32 rounding (B-spline). On a CPU a series whose lattice the grid lies on (the T2 under its
   snapped grid, when the grid spacing is a multiple of the T2's) is copied, not interpolated:
   every interpolator returns its samples there (:func:`~LesionAILib.preprocessing.resampling.lattice_steps`).
3. **Intensity normalisation** per role (:class:`IntensityConfig`): T2 and high-b robust z-score
   (clip to percentiles — 0.5/99.5 for T2, 0.5/99.9 for high-b — then standardise); ADC on its
   physical scale (µm²/s × 10⁻³, so normal peripheral zone ≈ 1.6–2.0), because ADC is quantitative
   and its absolute value carries meaning.

The inverse path, :func:`to_t2_grid`, brings a map from the target grid back into the original T2
geometry — how heatmaps reach the reader's screen.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field

import numpy as np
import SimpleITK as sitk
import torch

from LesionAILib.devices import resolve_device
from LesionAILib.errors import ConfigError
from LesionAILib.geometry import Grid, aligned_grid
from LesionAILib.preprocessing.percentiles import percentiles
from LesionAILib.preprocessing.resampling import (
    resample_image_with_fov,
    resample_sitk_image,
    resample_sitk_into,
    resample_torch,
)
from LesionAILib.studies.case import Case
from LesionAILib.studies.roles import ROLES

NORMALISATION_METHODS = ("robust_zscore", "scale")
# How images are interpolated; label maps are always nearest. Trilinear is the default: what the
# bundled model was trained with, and 10× cheaper on a CPU than SimpleITK's cubic B-spline
# (docs/decisions/0004).
IMAGE_INTERPOLATIONS = ("linear", "bspline")
# Percentile estimates use at most this many voxels (a fixed, deterministic stride through the
# volume); the mean and standard deviation use every in-field voxel.
_MAX_STATISTIC_SAMPLES = 300_000


@dataclass(frozen=True)
class IntensityConfig:
    """How one role's intensities are normalised.

    ``robust_zscore``: clip to the [``low``, ``high``] percentiles of the in-field voxels, then
    subtract the mean and divide by the standard deviation of the clipped values.
    ``scale``: ``value * scale + offset``, then clip to ``clip`` (for quantitative maps).
    """

    method: str = "robust_zscore"
    low: float = 1.0
    high: float = 99.0
    scale: float = 1.0
    offset: float = 0.0
    clip: tuple[float, float] | None = None

    def __post_init__(self):
        if self.method not in NORMALISATION_METHODS:
            raise ConfigError(f"unknown normalisation {self.method!r}; use one of {', '.join(NORMALISATION_METHODS)}")
        if not 0.0 <= self.low < self.high <= 100.0:
            raise ConfigError(f"percentiles must satisfy 0 ≤ low < high ≤ 100, got {self.low}, {self.high}")


# Clip percentiles: lesions are the darkest T2 and the brightest high-b structures and can be
# ~1 % of the grid, so the clip must not cut them: T2 keeps its darkest 0.5 %, high-b its top 0.1 %.
DEFAULT_INTENSITY = {
    "t2w": IntensityConfig("robust_zscore", 0.5, 99.5),
    "adc": IntensityConfig("scale", scale=1e-3, clip=(0.0, 4.0)),  # µm²/s → 10⁻³ mm²/s
    "hbv": IntensityConfig("robust_zscore", 0.5, 99.9),
}


@dataclass(frozen=True)
class PreprocessConfig:
    """Target grid and normalisation. Stored in every model file, so a model preprocesses as it was trained.

    Attributes:
        roles: channel order of the output tensor.
        shape: target matrix (Z, Y, X) in voxels.
        spacing: target spacing (Z, Y, X) in mm.
        intensity: per role normalisation.
        interpolation: images ``"linear"`` (trilinear) or ``"bspline"`` (cubic B-spline); labels nearest.
    """

    roles: tuple[str, ...] = ROLES
    shape: tuple[int, int, int] = (20, 256, 256)
    spacing: tuple[float, float, float] = (3.0, 0.5, 0.5)
    intensity: Mapping[str, IntensityConfig] = field(default_factory=lambda: dict(DEFAULT_INTENSITY))
    interpolation: str = "linear"

    def __post_init__(self):
        object.__setattr__(self, "roles", tuple(self.roles))
        object.__setattr__(self, "shape", tuple(int(v) for v in self.shape))
        object.__setattr__(self, "spacing", tuple(float(v) for v in self.spacing))
        unknown = [r for r in self.roles if r not in ROLES]
        if unknown:
            raise ConfigError(f"unknown role(s) {unknown}; roles are {', '.join(ROLES)}")
        if len(self.shape) != 3 or min(self.shape) < 1:
            raise ConfigError(f"shape must be three positive sizes (Z, Y, X), got {self.shape}")
        if len(self.spacing) != 3 or min(self.spacing) <= 0:
            raise ConfigError(f"spacing must be three positive mm values (Z, Y, X), got {self.spacing}")
        missing = [r for r in self.roles if r not in self.intensity]
        if missing:
            raise ConfigError(f"no intensity normalisation configured for {missing}")
        if self.interpolation not in IMAGE_INTERPOLATIONS:
            raise ConfigError(
                f"unknown interpolation {self.interpolation!r}; use one of {', '.join(IMAGE_INTERPOLATIONS)}"
            )

    def to_dict(self) -> dict:
        return {
            "roles": list(self.roles),
            "shape": list(self.shape),
            "spacing": list(self.spacing),
            "intensity": {role: asdict(cfg) for role, cfg in self.intensity.items()},
            "interpolation": self.interpolation,
        }

    @classmethod
    def from_dict(cls, data: Mapping) -> PreprocessConfig:
        intensity = {
            role: IntensityConfig(**{**cfg, "clip": tuple(cfg["clip"]) if cfg.get("clip") else None})
            for role, cfg in data.get("intensity", {}).items()
        } or dict(DEFAULT_INTENSITY)
        return cls(
            roles=tuple(data.get("roles", ROLES)),
            shape=tuple(data.get("shape", (20, 256, 256))),
            spacing=tuple(data.get("spacing", (3.0, 0.5, 0.5))),
            intensity=intensity,
            interpolation=str(data.get("interpolation", "linear")),
        )


@dataclass
class Preprocessed:
    """A case in the target grid, ready for the networks.

    Attributes:
        image: [C, Z, Y, X] float32 tensor (channels in ``roles`` order) on the chosen device.
        fov: [C, Z, Y, X] bool, True where the channel's source series covers the voxel.
        grid: the target grid (LPS mm).
        t2_grid: the original T2 series' grid (for the inverse path).
        roles: channel order.
        normalisation: per role, the parameters actually applied (percentile values, mean, std).
        lesion_mask: optional [Z, Y, X] int64 label map (nearest), when the case has one.
    """

    image: torch.Tensor
    fov: torch.Tensor
    grid: Grid
    t2_grid: Grid
    roles: tuple[str, ...]
    normalisation: dict[str, dict[str, float]]
    lesion_mask: torch.Tensor | None = None

    def channel(self, role: str) -> torch.Tensor:
        return self.image[self.roles.index(role)]


def target_grid(t2_grid: Grid, config: PreprocessConfig, center_lps: Sequence[float] | None = None) -> Grid:
    """The target grid: T2 frame, ``config`` spacing and matrix, centred on T2 or ``center_lps`` (mm).

    The centre is snapped (by less than half a T2 voxel) onto the T2 voxel lattice, so with the
    default spacing the T2 is not interpolated between its slices (see :func:`aligned_grid`).
    """
    return aligned_grid(t2_grid, config.shape, config.spacing, center_lps, snap=True)


def _percentiles(volume, inside, low: float, high: float) -> tuple[float, float] | None:
    """The ``low`` and ``high`` percentiles of ``volume`` inside ``inside`` (None if < 16 voxels).

    Estimated on an evenly strided subsample of at most ``_MAX_STATISTIC_SAMPLES`` voxels; on numpy
    with :func:`~LesionAILib.preprocessing.percentiles.percentiles` (``np.percentile``'s numbers,
    only the tails partitioned).
    """
    step = max(1, int(np.prod(volume.shape)) // _MAX_STATISTIC_SAMPLES)
    values = volume.reshape(-1)[::step][inside.reshape(-1)[::step]]
    if values.shape[0] < 16:
        return None
    if isinstance(values, np.ndarray):
        bounds = percentiles(values, [low, high])
    else:
        bounds = torch.quantile(values, torch.tensor([low / 100, high / 100], device=values.device)).tolist()
    return float(bounds[0]), float(bounds[1])


def _zero_outside(out, inside, outside: np.ndarray | None = None):
    """``out`` with 0 wherever ``inside`` is False (NaN there included); in place on numpy.

    ``outside`` is ``~inside`` when the caller has it already (numpy only).
    """
    if isinstance(out, np.ndarray):
        np.copyto(out, 0.0, where=~inside if outside is None else outside)
        return out
    return torch.where(inside, out, torch.zeros((), dtype=out.dtype, device=out.device))


def _sum_of_squares(volume) -> float:
    """Σ volume² as a Python float; on numpy one BLAS dot product per slice (no temporary volume)."""
    if not isinstance(volume, np.ndarray):
        return float((volume * volume).sum())
    rows = volume.reshape(volume.shape[0], -1) if volume.ndim > 1 else volume.reshape(1, -1)
    return sum(float(np.dot(row, row)) for row in rows)


def normalise(
    volume, inside, config: IntensityConfig, out: np.ndarray | None = None
) -> tuple[np.ndarray | torch.Tensor, dict]:
    """Normalise one channel.

    Args:
        volume: [Z, Y, X] float32, a numpy array (CPU path) or a torch tensor (any device); the
            same arithmetic runs on both, so CPU and GPU give the same numbers. Values outside
            ``inside`` do not enter the result (they may be NaN).
        inside: [Z, Y, X] bool of the same kind, the voxels the series covers (statistics region).
        config: the role's normalisation.
        out: numpy only: the [Z, Y, X] float32 array to write into (may be ``volume``; default a new one),
            so the result lands in its final place without a copy.

    Returns:
        the normalised volume (0 outside ``inside``) and the parameters applied.
    """
    on_numpy = isinstance(volume, np.ndarray)
    if on_numpy and out is None:
        out = np.empty_like(volume, dtype=np.float32)
    if config.method == "scale":
        if on_numpy:
            np.multiply(volume, config.scale, out=out)
            out += config.offset
        else:
            out = volume * config.scale + config.offset
        if config.clip is not None:
            out = np.clip(out, *config.clip, out=out) if on_numpy else out.clip(*config.clip)
        return _zero_outside(out, inside), {"scale": config.scale, "offset": config.offset}
    bounds = _percentiles(volume, inside, config.low, config.high)
    if bounds is None:
        if on_numpy:
            out.fill(0.0)
        return out if on_numpy else torch.zeros_like(volume), {"low": 0.0, "high": 0.0, "mean": 0.0, "std": 1.0}
    low, high = bounds
    outside = ~inside if on_numpy else None
    out = _zero_outside(np.clip(volume, low, high, out=out) if on_numpy else volume.clip(low, high), inside, outside)
    count = max(float(np.count_nonzero(inside) if on_numpy else inside.sum()), 2.0)
    mean = float(out.sum()) / count
    out -= mean
    if on_numpy:  # (clip − mean) · inside, as on torch; copyto is cheaper than a float multiply
        _zero_outside(out, inside, outside)
    else:
        out *= inside
    std = max((_sum_of_squares(out) / count) ** 0.5, 1e-6 * max(abs(high), 1.0))
    out /= std
    return out, {"low": low, "high": high, "mean": mean, "std": std}


def preprocess(
    case: Case,
    config: PreprocessConfig | None = None,
    center_lps: Sequence[float] | None = None,
    device: str | torch.device = "auto",
    backend: str = "auto",
) -> Preprocessed:
    """Resample every role of ``case`` into the target grid and normalise it.

    Args:
        case: the study (native grids).
        config: target grid, normalisation and interpolation (default: 20 × 256 × 256 at
            3.0 × 0.5 × 0.5 mm, trilinear).
        center_lps: centre of the target grid in LPS mm; default the T2 volume centre.
        device: ``"auto"`` (CUDA when available), ``"cpu"``, ``"cuda"``.
        backend: resampler, ``"auto"`` (SimpleITK on CPU, torch on CUDA), ``"torch"`` or ``"sitk"``.
    """
    config = config or PreprocessConfig()
    device = resolve_device(device)
    t2_grid = case.grid("t2w")
    grid = target_grid(t2_grid, config, center_lps)
    # On a CPU the elementwise work runs in numpy (single-threaded, predictable when other
    # processes load the cores); on CUDA the same arithmetic runs on torch tensors.
    on_cpu = device.type == "cpu"
    channels = len(config.roles)
    image = np.empty((channels, *grid.shape), np.float32) if on_cpu else None
    fov = np.empty((channels, *grid.shape), bool) if on_cpu else None
    gpu_channels, gpu_fov, parameters = [], [], {}
    for index, role in enumerate(config.roles):
        if on_cpu and backend in ("auto", "sitk"):
            # one SimpleITK pass (NaN marks "outside", ITK's inside rule) read in place, or, where the
            # grid lies on the series' lattice (the T2 under its aligned grid), the samples copied
            # into the output slot: every interpolator returns them there
            values, _keep = resample_sitk_into(case.image(role), grid, config.interpolation, image[index])
            inside = np.equal(values, values, out=fov[index])  # False exactly at NaN
            parameters[role] = normalise(values, inside, config.intensity[role], out=image[index])[1]
            continue
        resampled, inside = resample_image_with_fov(case.image(role), grid, config.interpolation, device, backend)
        if on_cpu:
            fov[index] = inside.numpy()
            parameters[role] = normalise(resampled.numpy(), fov[index], config.intensity[role], out=image[index])[1]
            continue
        normalised, parameters[role] = normalise(resampled, inside, config.intensity[role])
        gpu_channels.append(normalised)
        gpu_fov.append(inside)
    mask = None
    if case.lesion_mask is not None:
        mask = resample_image_with_fov(case.lesion_mask, grid, "nearest", device, backend)[0].round().to(torch.int64)
    return Preprocessed(
        image=torch.from_numpy(image) if on_cpu else torch.stack(gpu_channels),
        fov=torch.from_numpy(fov) if on_cpu else torch.stack(gpu_fov),
        grid=grid,
        t2_grid=t2_grid,
        roles=tuple(config.roles),
        normalisation=parameters,
        lesion_mask=mask,
    )


def to_t2_grid(
    volume: torch.Tensor | np.ndarray,
    source: Grid,
    t2_grid: Grid,
    mode: str = "linear",
    backend: str = "auto",
) -> sitk.Image:
    """Bring a map on the target grid back into the original T2 geometry.

    Args:
        volume: [Z, Y, X] map on ``source`` (tensor on any device, or numpy).
        source: the grid ``volume`` lives on (the target grid of :func:`preprocess`).
        t2_grid: the original T2 series' grid.
        mode: ``"linear"`` for heatmaps, ``"nearest"`` for label/detection maps.

    Returns:
        a float32 SimpleITK image with exactly the T2 series' size, spacing, origin and direction;
        0 where the target grid does not reach.
    """
    tensor = torch.as_tensor(volume)
    if backend == "auto":
        backend = "sitk" if tensor.device.type == "cpu" else "torch"
    if backend == "torch":
        array = resample_torch(tensor.to(torch.float32), source, t2_grid, mode).cpu().numpy()
        return t2_grid.image_from_array(array.astype(np.float32, copy=False))
    # SimpleITK writes its float32 output straight onto the T2 geometry: no array round trip
    on_source = source.image_from_array(np.asarray(tensor.detach().cpu().numpy(), dtype=np.float32))
    return resample_sitk_image(on_source, t2_grid, mode)

"""The gland folder written by ``lesionai gland`` and read by the Slicer panel: mask, volume, PSA density, warnings.

No torch here: the reader runs in the Slicer process. Format :data:`GLAND_FORMAT_VERSION`:

================  =================================================================================
file              content
================  =================================================================================
``gland.nii.gz``  uint8 mask (1 = gland) in the T2 series' exact geometry
``gland.json``    ``format`` ("lesionai-gland"), ``format_version``, ``volume_ml``, ``psa_ng_ml``,
                  ``psa_density_ng_ml2`` (PSA / volume, ng/ml per ml; null without PSA or gland),
                  ``centroid_lps_mm``, ``centroid_ras_mm``, ``warnings``, ``model`` {``name``,
                  ``version``, ``sha256``}, ``windows``, ``device``, ``timings_s``, ``t2`` {``source``,
                  ``grid``}, ``files``; written last, so a folder that has it is complete
``gland.png``     the gland outline over T2 slices through the gland (``figure=True``)
================  =================================================================================
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import SimpleITK as sitk

from LesionAILib.atomic_io import write_image_atomic, write_json_atomic
from LesionAILib.errors import ConfigError, LesionAIError
from LesionAILib.geometry import Grid

if TYPE_CHECKING:
    from LesionAILib.gland.segmentation import GlandSegmentation

GLAND_FORMAT = "lesionai-gland"
GLAND_FORMAT_VERSION = 1
GLAND_MASK_FILE = "gland.nii.gz"
GLAND_SUMMARY_FILE = "gland.json"
GLAND_FIGURE_FILE = "gland.png"
GLAND_SEGMENT_NAME = "Prostate gland"
GLAND_COLOR = (0.95, 0.78, 0.25)  # warm yellow: apart from the cool candidate outlines and the heatmap


@dataclass
class StoredGland:
    """A gland folder read back. ``mask`` is uint8 in the T2 geometry (LPS mm, float32 precision of NIfTI)."""

    folder: Path
    mask: sitk.Image
    volume_ml: float
    psa_ng_ml: float | None
    psa_density_ng_ml2: float | None
    centroid_lps_mm: tuple[float, float, float] | None
    warnings: list[str] = field(default_factory=list)
    model_name: str = ""
    model_version: str = ""
    model_sha256: str = ""


def psa_density(psa_ng_ml: float | None, volume_ml: float) -> float | None:
    """PSA density in ng/ml per ml of gland (PSA / gland volume); ``None`` without PSA or without a gland.

    A negative or non-finite PSA is a :class:`ConfigError`.
    """
    if psa_ng_ml is None:
        return None
    if not math.isfinite(psa_ng_ml) or psa_ng_ml < 0:
        raise ConfigError(f"PSA must be a non-negative number in ng/ml, got {psa_ng_ml}")
    return float(psa_ng_ml) / volume_ml if volume_ml > 0 else None


def _points(value) -> list[float] | None:
    return None if value is None else [float(v) for v in value]


def write_gland_folder(
    gland: GlandSegmentation,
    t2: sitk.Image,
    out_dir: str | Path,
    psa_ng_ml: float | None = None,
    source: str = "",
    figure: bool = True,
    title: str = "",
) -> list[Path]:
    """Write the mask, the PNG and ``gland.json`` (last) into ``out_dir`` atomically; returns the paths."""
    density = psa_density(psa_ng_ml, gland.volume_ml)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    written = [write_image_atomic(gland.mask, out / GLAND_MASK_FILE)]
    if figure:
        from LesionAILib.gland.figures import gland_figure

        mask = sitk.GetArrayFromImage(gland.mask)
        subtitle = f"{gland.volume_ml:.1f} ml" + ("" if density is None else f", PSA density {density:.3f} ng/ml²")
        written.append(
            gland_figure(sitk.GetArrayFromImage(t2), mask, out / GLAND_FIGURE_FILE, title or source, subtitle)
        )
    summary = {
        "format": GLAND_FORMAT,
        "format_version": GLAND_FORMAT_VERSION,
        "volume_ml": round(float(gland.volume_ml), 4),
        "psa_ng_ml": None if psa_ng_ml is None else float(psa_ng_ml),
        "psa_density_ng_ml2": None if density is None else round(density, 5),
        "centroid_lps_mm": _points(gland.centroid_lps_mm),
        "centroid_ras_mm": _points(gland.centroid_ras_mm),
        "warnings": list(gland.warnings),
        "model": {"name": gland.model.name, "version": gland.model.version, "sha256": gland.model.sha256},
        "windows": gland.windows,
        "device": gland.device,
        "timings_s": {stage: round(seconds, 4) for stage, seconds in gland.timings.items()},
        "t2": {"source": source, "grid": Grid.from_image(t2).to_dict()},
        "files": [path.name for path in written],
    }
    written.append(write_json_atomic(out / GLAND_SUMMARY_FILE, summary))
    return written


def read_gland_folder(folder: str | Path) -> StoredGland:
    """Read a folder written by :func:`write_gland_folder` (``lesionai gland --out``) or the gland of an
    ``analyze --gland`` result folder (``gland.nii.gz`` and ``result.json``'s ``gland``); one-line errors naming it."""
    folder = Path(folder)
    path = folder / GLAND_SUMMARY_FILE
    if not path.is_file() and (folder / "result.json").is_file() and (folder / GLAND_MASK_FILE).is_file():
        return _read_analysis_gland(folder)
    if not path.is_file():
        raise LesionAIError("not a LesionAI gland folder (no gland.json)", folder, "run `lesionai gland` first")
    try:
        summary = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise LesionAIError(f"gland.json cannot be read ({type(error).__name__})", folder) from None
    if not isinstance(summary, dict) or summary.get("format") != GLAND_FORMAT:
        raise LesionAIError("gland.json is not a LesionAI gland summary", folder)
    if summary.get("format_version") != GLAND_FORMAT_VERSION:
        raise LesionAIError(
            f"gland folder of format version {summary.get('format_version')}; this LesionAI reads "
            f"version {GLAND_FORMAT_VERSION}",
            folder,
            "run `lesionai gland` again with this LesionAI",
        )
    try:
        mask = sitk.ReadImage(str(folder / GLAND_MASK_FILE))
    except RuntimeError:
        raise LesionAIError(f"{GLAND_MASK_FILE} is missing or damaged", folder) from None
    try:
        model = summary["model"]
        centroid = summary.get("centroid_lps_mm")
        return StoredGland(
            folder=folder,
            mask=mask,
            volume_ml=float(summary["volume_ml"]),
            psa_ng_ml=None if summary.get("psa_ng_ml") is None else float(summary["psa_ng_ml"]),
            psa_density_ng_ml2=None
            if summary.get("psa_density_ng_ml2") is None
            else float(summary["psa_density_ng_ml2"]),
            centroid_lps_mm=None if centroid is None else tuple(float(v) for v in centroid),
            warnings=[str(line) for line in summary.get("warnings", [])],
            model_name=str(model["name"]),
            model_version=str(model["version"]),
            model_sha256=str(model["sha256"]),
        )
    except (KeyError, TypeError, ValueError) as error:
        raise LesionAIError(f"gland.json lacks {error}; the folder is damaged", folder) from None


def _read_analysis_gland(folder: Path) -> StoredGland:
    """The gland of a result folder of ``lesionai analyze --gland`` (no PSA there)."""
    try:
        entry = json.loads((folder / "result.json").read_text(encoding="utf-8"))["gland"]
        mask = sitk.ReadImage(str(folder / GLAND_MASK_FILE))
        centroid = entry.get("centroid_lps_mm")
        return StoredGland(
            folder=folder,
            mask=mask,
            volume_ml=float(entry["volume_ml"]),
            psa_ng_ml=None,
            psa_density_ng_ml2=None,
            centroid_lps_mm=None if centroid is None else tuple(float(v) for v in centroid),
            warnings=[str(line) for line in entry.get("warnings", [])],
            model_name=str(entry["model"]),
            model_sha256=str(entry["model_sha256"]),
        )
    except (OSError, RuntimeError, UnicodeDecodeError, json.JSONDecodeError, KeyError, TypeError, ValueError):
        raise LesionAIError("the result folder's gland (result.json, gland.nii.gz) cannot be read", folder) from None


def mask_on_grid(mask: sitk.Image, reference: Grid, what: str = "gland mask") -> np.ndarray:
    """``mask`` as a ``[Z, Y, X]`` bool array on ``reference``; refused unless it lies on that grid (¼ voxel)."""
    if not Grid.from_image(mask).same_as(reference, 0.25 * min(reference.spacing)):
        raise LesionAIError(f"the {what} is not on the T2 grid", hint="segment the gland on this T2 again")
    return sitk.GetArrayFromImage(mask) > 0

"""The result folder of one analysed case: one writer and one reader, shared by ``lesionai analyze`` and Slicer.

``write_result(result, case, out_dir, model)`` writes (all atomically, every map in the T2 series'
exact geometry, so they load in 3D Slicer on top of the T2); ``read_result(out_dir)`` reads it back.
Format version :data:`RESULT_FORMAT_VERSION`:

=================================  ==============================================================
file                               content
=================================  ==============================================================
``result.json``                    ``format`` ("lesionai-result"), ``format_version``, ``case_id``,
                                   ``case_score``, ``model`` {``name``, ``notice``, ``sha256``,
                                   ``created``, ``demo``}, ``classifier`` {``name``, ``notice``} or
                                   null, ``device``, ``timings_s``, ``model_grid``,
                                   ``preprocessing`` {``interpolation`` of the images:
                                   "linear"/"bspline", ``labels``: "nearest"}, ``warnings``,
                                   ``coordinates``, ``case`` (sources), ``files``
``heatmap.nrrd`` / ``.nii.gz``     combined localization map (float32, 0–1)
``heatmap_<role>.nii.gz``          per-sequence maps
``detection_map.nrrd`` / ``.nii.gz``  PI-CAI detection map (each candidate region = its probability)
``candidates.nii.gz``              candidate label map (uint8, voxel value = candidate id)
``candidates.json``                the candidates (:meth:`Candidate.to_dict`, full precision)
``candidates.csv``                 the candidate table (:data:`CANDIDATE_FIELDS`: columns, decimals)
``overview.png``, ``candidate_<id>.png``  T2 slices with the heatmap and outlines (``figures=True``)
``gland.nii.gz``                   the prostate gland mask (uint8) when the analysis was confined to it
                                   (``analyze --gland``; ``result.json`` ``gland``: volume, margin, model)
``abnormality.nii.gz``, ...        the abnormality map by synthesis and its candidates and panels
                                   (``analyze --abnormality``; :mod:`LesionAILib.synthesis.outputs`)
=================================  ==============================================================

The reader takes the ``.nrrd`` maps (NRRD keeps the geometry in double precision, NIfTI in float32,
so the candidate map gets the heatmap's exact geometry once they agree to 10⁻⁴) and refuses a folder
of another format version with a one-line error naming the folder.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import SimpleITK as sitk

from LesionAILib.atomic_io import write_image_atomic, write_json_atomic, write_text_atomic
from LesionAILib.errors import LesionAIError
from LesionAILib.geometry import Grid
from LesionAILib.inference.candidates import CANDIDATE_FIELDS, Candidate
from LesionAILib.studies.roles import ROLES

if TYPE_CHECKING:  # the reader runs in the Slicer process, which must not load torch
    from LesionAILib.inference.analyzer import Result
    from LesionAILib.models.modelfile import ModelMetadata
    from LesionAILib.studies.case import Case

RESULT_FORMAT = "lesionai-result"
RESULT_FORMAT_VERSION = 1
RESULT_FILE = "result.json"
HEATMAP_FILE = "heatmap.nrrd"
DETECTION_MAP_FILE = "detection_map.nrrd"
CANDIDATE_MAP_FILE = "candidates.nii.gz"
CANDIDATES_FILE = "candidates.json"
CANDIDATE_TABLE_FILE = "candidates.csv"
GLAND_MASK_FILE = "gland.nii.gz"
ABNORMALITY_MAP_FILE = "abnormality.nii.gz"  # written by LesionAILib.synthesis.outputs
# the columns of the terminal table: what the Slicer panel shows, minus the model (printed above it)
_TERMINAL_FIELDS = tuple(f for f in CANDIDATE_FIELDS if f.scene_name and f.type is not str)


@dataclass
class StoredResult:
    """An analysis read back from its folder. Images are in the T2 series' geometry (LPS mm).

    Attributes:
        folder: the result folder; format_version: of its ``result.json``.
        case_score: highest candidate probability (0–1).
        model_name, model_notice: the model that produced the scores (name as shown to people) and its notice.
        model_sha256: the model file's content hash (which exact weights and metadata).
        demo_model: the model was trained on synthetic data only (its metadata says so): not for clinical use.
        heatmap: combined localization map; detection_map: PI-CAI detection map; candidate_map: label map.
        candidates: the candidates, highest probability first.
        sequence_heatmaps: per-sequence localization maps by role (``"t2w"``, ``"adc"``, ``"hbv"``), where written.
        t2_series_uid: SeriesInstanceUID of the DICOM T2 series analysed (``""`` when the T2 was an image file).
        abnormality: the abnormality map by synthesis (combined robust z) when written (``analyze --abnormality``).
    """

    folder: Path
    format_version: int
    case_id: str
    case_score: float
    model_name: str
    model_notice: str
    model_sha256: str
    demo_model: bool
    heatmap: sitk.Image
    detection_map: sitk.Image
    candidate_map: sitk.Image
    candidates: list[Candidate]
    device: str = ""
    timings: dict[str, float] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)
    sequence_heatmaps: dict[str, sitk.Image] = field(default_factory=dict)
    t2_series_uid: str = ""
    abnormality: sitk.Image | None = None


def candidates_csv(candidates: Sequence[Candidate]) -> str:
    """The candidate table as CSV text (columns and decimals of :data:`CANDIDATE_FIELDS`)."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(spec.name for spec in CANDIDATE_FIELDS)
    for candidate in candidates:
        writer.writerow(spec.format(spec.value(candidate)) for spec in CANDIDATE_FIELDS)
    return buffer.getvalue()


def candidate_table(candidates: Sequence[Candidate]) -> str:
    """A fixed-width text table for the terminal (the panel's numeric columns, RAS mm)."""
    cells = [[spec.format(spec.value(c)) for spec in _TERMINAL_FIELDS] for c in candidates]
    headers = [spec.scene_name for spec in _TERMINAL_FIELDS]
    widths = [max(len(text) for text in column) for column in zip(headers, *cells, strict=True)]
    lines = [" ".join(text.rjust(width) for text, width in zip(row, widths, strict=True)) for row in [headers, *cells]]
    if not candidates:
        lines.append("  (no candidates)")
    return "\n".join(lines)


def write_result(
    result: Result, case: Case, out_dir: str | Path, model: ModelMetadata, figures: bool = True
) -> list[Path]:
    """Write every output of one analysed case into ``out_dir`` (see module docstring); returns the paths written.

    Args:
        result: the analysis of ``case``; model: the metadata of the model that produced it.
        figures: also draw the PNGs (seconds; the Slicer panel shows the maps itself).
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    written = [
        write_image_atomic(result.heatmap, out / HEATMAP_FILE),
        write_image_atomic(result.heatmap, out / "heatmap.nii.gz"),
        write_image_atomic(result.detection_map, out / DETECTION_MAP_FILE),
        write_image_atomic(result.detection_map, out / "detection_map.nii.gz"),
        write_image_atomic(result.candidate_map, out / CANDIDATE_MAP_FILE),
    ]
    for role, image in result.sequence_heatmaps.items():
        written.append(write_image_atomic(image, out / f"heatmap_{role}.nii.gz"))
    if result.gland is not None:
        written.append(write_image_atomic(result.gland.mask, out / GLAND_MASK_FILE))
    written.append(write_text_atomic(out / CANDIDATE_TABLE_FILE, candidates_csv(result.candidates)))
    written.append(write_json_atomic(out / CANDIDATES_FILE, [c.to_dict() for c in result.candidates]))
    if figures:
        written += _figures(result, case, out)
    classifier = {"name": result.classifier_name, "notice": result.classifier_notice}
    summary = {
        "format": RESULT_FORMAT,
        "format_version": RESULT_FORMAT_VERSION,
        "case_id": result.case_id,
        "case_score": float(result.case_score),
        "model": {
            "name": result.model_name,
            "notice": result.model_notice,
            "sha256": model.sha256,
            "created": model.created,
            "demo": bool(model.synthetic_training_data),
        },
        "classifier": classifier if result.classifier_name else None,
        "device": result.device,
        "timings_s": {stage: round(seconds, 4) for stage, seconds in result.timings.items()},
        "model_grid": result.model_grid,
        "preprocessing": {"interpolation": result.interpolation, "labels": "nearest"},
        "warnings": list(result.warnings),
        "gland": None if result.gland is None else result.gland.to_dict(),
        "coordinates": "center_lps_mm: DICOM/ITK patient LPS; center_ras_mm: 3D Slicer RAS",
        "case": case.metadata(),
        "files": [path.name for path in written],
    }
    # result.json last: a folder that has it is complete
    written.append(write_json_atomic(out / RESULT_FILE, summary))
    return written


def _figures(result: Result, case: Case, out: Path) -> list[Path]:
    from LesionAILib.rendering import candidate_figures

    t2_grid = Grid.from_image(case.t2w)
    slices = [
        int(np.clip(round(t2_grid.lps_to_index(c.center_lps_mm)[0]), 0, t2_grid.shape[0] - 1))
        for c in result.candidates
    ]
    return candidate_figures(
        sitk.GetArrayFromImage(case.t2w).astype(np.float32),
        sitk.GetArrayFromImage(result.heatmap),
        sitk.GetArrayFromImage(result.candidate_map),
        result.candidates,
        slices,
        out,
        title=f"{result.case_id} — case score {result.case_score:.2f} — {result.model_name}",
        notice=result.model_notice,
    )


def read_result(folder: str | Path) -> StoredResult:
    """Read a folder written by :func:`write_result` (``lesionai analyze --out``).

    Raises:
        LesionAIError: one line naming the folder: not a result folder, another format version,
            or a missing or damaged file.
    """
    folder = Path(folder)
    summary = _read_json(folder, RESULT_FILE, "not a LesionAI result folder (no result.json)")
    version = summary.get("format_version") if isinstance(summary, dict) else None
    if not isinstance(summary, dict) or summary.get("format") != RESULT_FORMAT or version != RESULT_FORMAT_VERSION:
        found = "no format version" if version is None else f"format version {version}"
        raise LesionAIError(
            f"result folder of {found}; this LesionAI reads result format version {RESULT_FORMAT_VERSION}",
            folder,
            "analyze the study again with this LesionAI",
        )
    maps = {name: _read_image(folder, name) for name in (HEATMAP_FILE, DETECTION_MAP_FILE, CANDIDATE_MAP_FILE)}
    heatmap = maps[HEATMAP_FILE]
    for name, image in maps.items():
        if image.GetSize() != heatmap.GetSize() or not np.allclose(_geometry(image), _geometry(heatmap), atol=1e-4):
            raise LesionAIError(f"{name} is not on the heatmap's grid; the folder is damaged", folder)
        image.CopyInformation(heatmap)  # NIfTI keeps the geometry in float32: take the heatmap's exact one
    sequence_maps = {}
    for role in ROLES:
        if (folder / f"heatmap_{role}.nii.gz").is_file():
            image = _read_image(folder, f"heatmap_{role}.nii.gz")
            if image.GetSize() != heatmap.GetSize():
                damaged = f"heatmap_{role}.nii.gz is not on the heatmap's grid; the folder is damaged"
                raise LesionAIError(damaged, folder)
            image.CopyInformation(heatmap)
            sequence_maps[role] = image
    try:
        model = summary["model"]
        candidates = [Candidate.from_dict(item) for item in _read_json(folder, CANDIDATES_FILE)]
        return StoredResult(
            folder=folder,
            format_version=int(version),
            case_id=str(summary["case_id"]),
            case_score=float(summary["case_score"]),
            model_name=str(model["name"]),
            model_notice=str(model["notice"]),
            model_sha256=str(model.get("sha256", "")),
            demo_model=bool(model["demo"]),
            heatmap=maps[HEATMAP_FILE],
            detection_map=maps[DETECTION_MAP_FILE],
            candidate_map=maps[CANDIDATE_MAP_FILE],
            candidates=candidates,
            device=str(summary.get("device", "")),
            timings=dict(summary.get("timings_s", {})),
            warnings=list(summary.get("warnings", [])),
            sequence_heatmaps=sequence_maps,
            t2_series_uid=str(summary.get("case", {}).get("roles", {}).get("t2w", {}).get("series_uid") or ""),
            abnormality=_optional_map(folder, ABNORMALITY_MAP_FILE, heatmap),
        )
    except (KeyError, TypeError, ValueError) as error:
        raise LesionAIError(f"result.json or candidates.json lacks {error}; the folder is damaged", folder) from None


def _optional_map(folder: Path, name: str, heatmap: sitk.Image) -> sitk.Image | None:
    """A map beside the heatmap when the folder has it, given the heatmap's exact geometry; ``None`` otherwise."""
    if not (folder / name).is_file():
        return None
    image = _read_image(folder, name)
    if image.GetSize() != heatmap.GetSize() or not np.allclose(_geometry(image), _geometry(heatmap), atol=1e-4):
        raise LesionAIError(f"{name} is not on the heatmap's grid; the folder is damaged", folder)
    image.CopyInformation(heatmap)
    return image


def _geometry(image: sitk.Image) -> np.ndarray:
    """Spacing, origin (mm, LPS) and direction cosines of ``image`` as one vector."""
    return np.concatenate([image.GetSpacing(), image.GetOrigin(), image.GetDirection()])


def _read_json(folder: Path, name: str, missing: str | None = None):
    path = folder / name
    if not path.is_file():
        raise LesionAIError(missing or f"the result is incomplete: {name} is missing", folder)
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise LesionAIError(f"{name} cannot be read ({type(error).__name__})", folder) from None


def _read_image(folder: Path, name: str) -> sitk.Image:
    path = folder / name
    if not path.is_file():
        raise LesionAIError(f"the result is incomplete: {name} is missing", folder)
    try:
        return sitk.ReadImage(str(path))
    except RuntimeError:
        raise LesionAIError(f"{name} cannot be read (damaged or truncated)", folder) from None

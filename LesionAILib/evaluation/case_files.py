"""Evaluation from files: pair each label with its detection map, read both on one grid, score them.

Two layouts of the prediction folder are read (one per folder, never mixed):

* **flat** — ``PRED/<case>.nii.gz`` (or ``.nii``, ``.mha``, ``.mhd``, ``.nrrd``): one detection map
  per case, named like its label;
* **analysis results** — ``PRED/<case>/detection_map.nrrd``: the per-case result folders that
  ``lesionai analyze A B ... --out PRED`` writes (:mod:`LesionAILib.inference.results`; the ``.nrrd``
  map, as its reader takes, since NRRD keeps the geometry in double precision); the case id is the
  folder name. Subfolders without a detection map (e.g. plots) are ignored.

Labels are ``LABELS/<case>.nii.gz`` (any of the same formats), as in PI-CAI's
``csPCa_lesion_delineations`` and the ``labels/`` folder of ``lesionai phantom``.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import SimpleITK as sitk

from LesionAILib.atomic_io import write_json_atomic
from LesionAILib.errors import LesionAIError
from LesionAILib.evaluation.inputs import CheckedCase, binary_label, checked_detection_map
from LesionAILib.evaluation.metrics import EvaluationResult, Progress, evaluate_cases
from LesionAILib.evaluation.plots import write_plots
from LesionAILib.geometry import Grid
from LesionAILib.inference.results import DETECTION_MAP_FILE, RESULT_FILE
from LesionAILib.studies.files import image_suffix, read_image_file

LAYOUTS = f"<case>.nii.gz files, or the <case>/ result folders of lesionai analyze (<case>/{DETECTION_MAP_FILE})"


@dataclass(frozen=True)
class CaseFiles:
    """A label and its detection map (``None`` when missing and ``allow_missing`` was given)."""

    case_id: str
    detection_map: Path | None
    label: Path


@dataclass(frozen=True)
class DetectionMaps:
    """The detection maps of a prediction folder, by case id, and the layout they were found in."""

    folder: Path
    by_case: dict[str, Path]
    in_result_folders: bool

    def missing_text(self, case_id: str) -> str:
        """Where the detection map of ``case_id`` was looked for, for error messages."""
        if self.in_result_folders:
            return f"label has no result folder {case_id}/ with a {DETECTION_MAP_FILE} in {self.folder}"
        return f"label has no detection map of the same name in {self.folder}"


def _images_by_stem(folder: Path, role: str) -> dict[str, Path]:
    if not folder.is_dir():
        raise LesionAIError(f"{role} folder does not exist", folder)
    found: dict[str, Path] = {}
    for path in sorted(folder.iterdir()):
        suffix = image_suffix(path)
        if suffix is None or path.name.startswith(".") or not path.is_file():
            continue
        stem = path.name[: -len(suffix)]
        if stem in found:
            raise LesionAIError(f"two {role} files for case {stem}: also {found[stem].name}", path, "keep one")
        found[stem] = path
    return found


def _result_folders(pred_dir: Path) -> dict[str, Path]:
    """Folder name → detection map, for every subfolder holding one (others, e.g. plots, are ignored)."""
    folders = (folder for folder in sorted(pred_dir.iterdir()) if folder.is_dir() and not folder.name.startswith("."))
    return {folder.name: folder / DETECTION_MAP_FILE for folder in folders if (folder / DETECTION_MAP_FILE).is_file()}


def find_detection_maps(pred_dir: str | Path) -> DetectionMaps:
    """The detection maps in ``pred_dir``, flat or in result folders (module docstring).

    Refused, each in one line naming the folder: a folder holding both layouts, a folder holding
    neither, and one case's result folder given in place of the folder of cases.
    """
    pred_dir = Path(pred_dir)
    if (pred_dir / RESULT_FILE).is_file() and (pred_dir / DETECTION_MAP_FILE).is_file():
        raise LesionAIError(
            "is the result folder of one analysed case, not a folder of cases",
            pred_dir,
            "analyse several studies into one --out folder (one subfolder each) and give that folder",
        )
    files = _images_by_stem(pred_dir, "detection map")
    folders = _result_folders(pred_dir)
    if files and folders:
        raise LesionAIError(
            f"holds both detection map files ({next(iter(files.values())).name}, ...) and analysis result folders "
            f"({next(iter(folders))}/, ...); cannot tell which to score",
            pred_dir,
            f"keep one layout: {LAYOUTS}",
        )
    if not files and not folders:
        raise LesionAIError(f"no detection maps found; expected {LAYOUTS}", pred_dir)
    return DetectionMaps(pred_dir, files or folders, in_result_folders=bool(folders))


def _unlabelled_text(detection_maps: DetectionMaps, case_id: str, label_dir: Path) -> tuple[str, str]:
    """Message and hint for a detection map whose case has no label."""
    if not detection_maps.in_result_folders:
        return (
            f"detection map has no label of the same name in {label_dir}",
            "add the label, or move the detection map out of the folder",
        )
    hint = f"add {case_id}.nii.gz to the labels, or move the folder out"
    try:
        analysed = json.loads((detection_maps.folder / case_id / RESULT_FILE).read_text())["case_id"]
    except (OSError, ValueError, KeyError, TypeError):
        analysed = case_id
    if analysed != case_id:  # a folder renamed, or one study analysed into a folder of its own name
        hint += f"; its result.json names case {analysed}: rename the folder to that if it is the label's name"
    return f"result folder {case_id}/ has no label {case_id}.nii.gz (or .nii, .mha, .nrrd) in {label_dir}", hint


def pair_case_files(pred_dir: str | Path, label_dir: str | Path, allow_missing: bool = False) -> list[CaseFiles]:
    """Pair each label ``<case>.*`` with its detection map, in either layout of the module docstring.

    A detection map without a label is an error (it cannot be scored). A label without a detection
    map is an error too, unless ``allow_missing``: then it is scored as an empty detection map
    (its lesions count as missed, the case score is 0). Cases come in label-file order.
    """
    pred_dir, label_dir = Path(pred_dir), Path(label_dir)
    detection_maps = find_detection_maps(pred_dir)
    predictions = detection_maps.by_case
    labels = _images_by_stem(label_dir, "label")
    unlabelled = [case_id for case_id in predictions if case_id not in labels]
    if unlabelled:
        more = f" (and {len(unlabelled) - 1} more)" if len(unlabelled) > 1 else ""
        message, hint = _unlabelled_text(detection_maps, unlabelled[0], label_dir)
        raise LesionAIError(message + more, predictions[unlabelled[0]], hint)
    missing = [case_id for case_id in labels if case_id not in predictions]
    if missing and not allow_missing:
        more = f" (and {len(missing) - 1} more)" if len(missing) > 1 else ""
        raise LesionAIError(
            detection_maps.missing_text(missing[0]) + more,
            labels[missing[0]],
            "add it, or pass allow_missing=True (--allow-missing) to score missing detection maps as empty",
        )
    if not labels:
        raise LesionAIError("no label files (.nii.gz, .nii, .mha, .nrrd) found", label_dir)
    return [CaseFiles(case_id, predictions.get(case_id), path) for case_id, path in labels.items()]


def _describe(grid: Grid) -> str:
    spacing = ", ".join(f"{s:g}" for s in grid.spacing)
    origin = ", ".join(f"{o:.3f}" for o in grid.origin)
    return f"shape {grid.shape}, spacing ({spacing}) mm, origin ({origin})"


def read_case(case: CaseFiles, tolerance_mm: float) -> CheckedCase:
    """Read and check one case's label and detection map; an absent map reads as all zeros.

    The detection map must lie on the label's grid (size, and spacing, origin and direction
    within ``tolerance_mm`` at the grid corners); nothing is resampled.
    """
    label_image = read_image_file(case.label, "label")
    label = binary_label(sitk.GetArrayViewFromImage(label_image), str(case.label))
    if case.detection_map is None:
        return CheckedCase(case.case_id, np.zeros(label.shape, dtype=np.float32), label, str(case.label))
    detection_image = read_image_file(case.detection_map, "detection map")
    label_grid, detection_grid = Grid.from_image(label_image), Grid.from_image(detection_image)
    if not detection_grid.same_as(label_grid, tolerance_mm):
        raise LesionAIError(
            f"detection map grid ({_describe(detection_grid)}) differs from its label {case.label} "
            f"({_describe(label_grid)})",
            case.detection_map,
            "write detection maps on the label grid; nothing is resampled here",
        )
    detection_map = checked_detection_map(sitk.GetArrayFromImage(detection_image), str(case.detection_map))
    return CheckedCase(case.case_id, detection_map, label, str(case.detection_map))


def evaluate_folders(
    pred_dir: str | Path,
    label_dir: str | Path,
    out_json: str | Path | None = None,
    plots_dir: str | Path | None = None,
    sites: Mapping[str, str] | str | Path | None = None,
    bootstrap: int = 1000,
    allow_missing: bool = False,
    *,
    seed: int = 0,
    min_overlap: float = 0.10,
    tolerance_mm: float = 1e-3,
    progress: Progress | None = None,
) -> EvaluationResult:
    """Evaluate the detection maps of a prediction folder against a folder of labels.

    The prediction folder holds ``<case>.nii.gz`` files or ``lesionai analyze`` result folders
    ``<case>/detection_map.nii.gz`` (module docstring); formats may differ between the two folders.
    Each detection map must lie on its label's grid (see :func:`read_case`); a mismatch is an
    error naming both files, never a silent resample. Cases are read one at a time.

    Args:
        pred_dir: detection maps (values in [0, 1], one constant value per candidate blob).
        label_dir: labels (lesion where > 0).
        out_json: where to write ``result.to_dict()`` (atomically), if given.
        plots_dir: where to write ``froc.png`` and ``roc.png``, if given.
        sites: case → site, or a CSV file (``case_id,site`` or a PI-CAI marksheet).
        bootstrap: case resamples for the 95% intervals (0: none).
        allow_missing: score a label without detection map as an empty map (a warning in the
            result says which), instead of refusing.
        seed, min_overlap, progress: as in :func:`LesionAILib.evaluation.metrics.evaluate_arrays`.

    Example::

        # lesionai analyze cohort/images/* --out PRED, then:
        result = evaluate_folders("PRED", "cohort/labels", out_json="metrics.json", bootstrap=200)
    """
    pairs = pair_case_files(pred_dir, label_dir, allow_missing)
    missing = [pair.case_id for pair in pairs if pair.detection_map is None]
    warnings = []
    if missing:
        shown = ", ".join(missing[:10]) + (f" and {len(missing) - 10} more" if len(missing) > 10 else "")
        warnings.append(f"{len(missing)} case(s) without detection map scored as empty (lesions missed): {shown}")
    result = evaluate_cases(
        (read_case(pair, tolerance_mm) for pair in pairs),
        [pair.case_id for pair in pairs],
        sites,
        bootstrap,
        seed=seed,
        min_overlap=min_overlap,
        progress=progress,
        warnings=warnings,
        sources={"predictions": str(pred_dir), "labels": str(label_dir)},
    )
    if out_json is not None:
        write_json_atomic(out_json, result.to_dict())
    if plots_dir is not None:
        write_plots(result, plots_dir)
    return result

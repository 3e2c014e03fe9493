"""Write a result folder's DICOM objects (SEG, Parametric Map, SR) into one folder, atomically.

The folder gets :data:`SEGMENTATION_FILE` (when there is a candidate or a gland to segment),
:data:`PARAMETRIC_MAP_FILE`, :data:`REPORT_FILE` and :data:`MANIFEST_FILE` (what was written from
what). It is built in a temporary folder beside it and renamed into place, so a folder of that
name is always complete; an earlier LesionAI DICOM output there is replaced, any other non-empty
folder is refused. The gland (``gland.nii.gz`` in the result folder, on the T2 grid) becomes a
segment and a finding when present.
"""

from __future__ import annotations

import json
import warnings
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import SimpleITK as sitk
from pydicom.uid import UID

from LesionAILib.atomic_io import atomic_folder
from LesionAILib.dicom_out.parametric_map import heatmap_parametric_map
from LesionAILib.dicom_out.report import measurement_report
from LesionAILib.dicom_out.segmentation import candidate_segmentation
from LesionAILib.dicom_out.sources import SourceSeries, source_series_of_study
from LesionAILib.errors import DicomOutputError
from LesionAILib.geometry import Grid
from LesionAILib.inference.results import GLAND_MASK_FILE, StoredResult, read_result

SEGMENTATION_FILE = "candidates_seg.dcm"
PARAMETRIC_MAP_FILE = "heatmap_pm.dcm"
REPORT_FILE = "findings_sr.dcm"
MANIFEST_FILE = "lesionai-dicom.json"
MANIFEST_FORMAT = "lesionai-dicom"


@dataclass(frozen=True)
class WrittenObject:
    """One DICOM object written: its file, modality (``SEG``, ``OT`` for the map, ``SR``) and UIDs."""

    path: Path
    modality: str
    sop_class_uid: str
    sop_instance_uid: str
    series_instance_uid: str

    @property
    def sop_class(self) -> str:
        """The SOP class as people name it (``Segmentation Storage``, ``Parametric Map Storage``, …)."""
        return UID(self.sop_class_uid).name


def read_gland(stored: StoredResult) -> sitk.Image | None:
    """The result folder's gland mask (on the heatmap's exact grid), or ``None`` when it has none."""
    path = stored.folder / GLAND_MASK_FILE
    if not path.is_file():
        return None
    try:
        gland = sitk.ReadImage(str(path))
    except RuntimeError:
        raise DicomOutputError(f"{GLAND_MASK_FILE} cannot be read (damaged or truncated)", stored.folder) from None
    if not Grid.from_image(gland).same_as(Grid.from_image(stored.heatmap), 1e-3):
        raise DicomOutputError(f"{GLAND_MASK_FILE} is not on the heatmap's grid; the folder is damaged", stored.folder)
    gland.CopyInformation(stored.heatmap)  # NIfTI keeps the geometry in float32: take the heatmap's exact one
    return gland


def write_dicom_results(stored: StoredResult, source: SourceSeries, out_dir: str | Path) -> list[WrittenObject]:
    """Write the SEG, Parametric Map and SR of ``stored`` on the T2 series ``source`` into ``out_dir``.

    Raises:
        DicomOutputError: ``source`` is not the series the result lies on (one line naming the slice), the
            gland mask is damaged, or ``out_dir`` holds other files.
    """
    out = Path(out_dir)
    check_output_folder(out)
    source.check_on_grid(Grid.from_image(stored.heatmap), f"the result {stored.folder}")
    gland = read_gland(stored)
    with warnings.catch_warnings():
        # highdicom's remarks on the source's own attributes (a one-component patient name) are not ours to fix
        warnings.simplefilter("ignore", UserWarning)
        segmentation, segments = candidate_segmentation(stored, source, gland)
        parametric_map = heatmap_parametric_map(stored, source)
        report = measurement_report(stored, source, segmentation, segments)
    objects = [(SEGMENTATION_FILE, segmentation), (PARAMETRIC_MAP_FILE, parametric_map), (REPORT_FILE, report)]
    written = []
    with atomic_folder(out) as temporary:
        for name, dataset in objects:
            if dataset is None:
                continue
            dataset.save_as(temporary / name, enforce_file_format=True)
            written.append(
                WrittenObject(
                    out / name,
                    str(dataset.Modality),
                    str(dataset.SOPClassUID),
                    str(dataset.SOPInstanceUID),
                    str(dataset.SeriesInstanceUID),
                )
            )
        manifest = {
            "format": MANIFEST_FORMAT,
            "result": str(stored.folder),
            "case_id": stored.case_id,
            "source_t2": {"series_uid": source.series_uid, "series": source.label, "instances": len(source.paths)},
            "objects": [
                {
                    "file": obj.path.name,
                    "modality": obj.modality,
                    "sop_class_uid": obj.sop_class_uid,
                    "sop_instance_uid": obj.sop_instance_uid,
                    "series_instance_uid": obj.series_instance_uid,
                }
                for obj in written
            ],
        }
        (temporary / MANIFEST_FILE).write_text(json.dumps(manifest, indent=2) + "\n", encoding="utf-8")
    return written


def export_result(
    result_folder: str | Path,
    study: str | Path,
    out_dir: str | Path,
    overrides: Mapping[str, str | int] | None = None,
) -> list[WrittenObject]:
    """The DICOM objects of a result folder (``lesionai analyze --out``) of the DICOM study ``study``.

    The T2 is the series the result records it was analysed from; for a result analysed from image files, the
    study's T2 by the role rules (``overrides`` as for ``lesionai inspect``), which must then lie on the
    result's grid exactly.
    """
    check_output_folder(out_dir)  # before reading the study
    stored = read_result(result_folder)
    source = source_series_of_study(study, stored.t2_series_uid, overrides)
    return write_dicom_results(stored, source, out_dir)


def check_output_folder(out: str | Path) -> None:
    """Refuse (one line) an ``out`` that exists and is neither empty nor an earlier LesionAI DICOM output."""
    out = Path(out)
    if out.exists() and not (out.is_dir() and (not any(out.iterdir()) or (out / MANIFEST_FILE).is_file())):
        raise DicomOutputError(
            "exists and is not an earlier LesionAI DICOM output; nothing was written", out, "give a new or empty folder"
        )

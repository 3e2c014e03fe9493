"""The T2 series DICOM results reference: its files in the T2 image's slice order, checked against the result's grid.

DICOM results (SEG, Parametric Map, SR) must reference the source T2 instances and share their
frame of reference, so they exist only for a T2 read from a DICOM series. A T2 given as an image
file (NIfTI, MHA, NRRD) is refused with one line. Every source slice is checked to lie exactly where
the result's grid puts slice ``k`` (LPS mm): frames can never land on the wrong slice.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pydicom

from LesionAILib.errors import DicomOutputError
from LesionAILib.geometry import Grid
from LesionAILib.studies.case import Case
from LesionAILib.studies.dicom_series import DicomSeries, scan_folder
from LesionAILib.studies.dicom_study import inspect_study, series_of_files
from LesionAILib.studies.dicom_volume import check_series
from LesionAILib.studies.picai import looks_like_picai

POSITION_TOLERANCE_MM = 0.01  # NRRD keeps the result's geometry in double precision: far below a voxel
DIRECTION_TOLERANCE = 1e-4
_NOT_DICOM_HINT = "DICOM results reference the source T2 instances: analyze the DICOM study folder"


@dataclass
class SourceSeries:
    """The T2 series of a result, as DICOM.

    Attributes:
        datasets: one pydicom dataset per T2 slice (headers only, no pixel data), in the T2 image's
            slice order: ``datasets[k]`` is slice ``k`` of the ``[Z, Y, X]`` arrays.
        paths: their files, in the same order.
        label: the series as people name it (``series 4 (t2_tse_tra)``).
    """

    datasets: list[pydicom.Dataset]
    paths: list[Path]
    label: str

    @property
    def series_uid(self) -> str:
        return str(self.datasets[0].SeriesInstanceUID)

    @property
    def frame_of_reference_uid(self) -> str:
        return str(self.datasets[0].FrameOfReferenceUID)

    @property
    def sop_instance_uids(self) -> list[str]:
        return [str(d.SOPInstanceUID) for d in self.datasets]

    def check_on_grid(self, grid: Grid, what: str) -> None:
        """Refuse unless slice ``k`` of ``grid`` (``what``: the result) is this series' ``datasets[k]``, exactly.

        Compares the matrix, pixel spacing, direction cosines and every slice's ImagePositionPatient
        with the grid's voxel ``(k, 0, 0)`` (LPS mm).
        """
        first = self.datasets[0]
        if (len(self.datasets), int(first.Rows), int(first.Columns)) != tuple(grid.shape):
            raise DicomOutputError(
                f"{what} has {grid.shape[0]} × {grid.shape[1]} × {grid.shape[2]} voxels (Z, Y, X) where the T2 "
                f"{self.label} has {len(self.datasets)} slices of {first.Rows} × {first.Columns}; "
                "it was not analysed from this series",
                self.paths[0].parent,
            )
        pixel_spacing = [float(v) for v in first.PixelSpacing]  # between rows (Y), between columns (X)
        direction = grid.direction_matrix
        orientation = np.asarray(first.ImageOrientationPatient, dtype=float)  # row (X) then column (Y) cosines
        if not (
            np.allclose(pixel_spacing, grid.spacing[1:], atol=1e-4)
            and np.allclose(orientation, np.concatenate([direction[:, 0], direction[:, 1]]), atol=DIRECTION_TOLERANCE)
        ):
            raise DicomOutputError(
                f"{what} has another pixel spacing or orientation than the T2 {self.label}; "
                "it was not analysed from this series",
                self.paths[0].parent,
            )
        expected = grid.index_to_lps(np.array([[k, 0, 0] for k in range(grid.shape[0])], dtype=float))
        actual = np.array([[float(v) for v in d.ImagePositionPatient] for d in self.datasets])
        error = np.linalg.norm(actual - expected, axis=1)
        if np.any(error > POSITION_TOLERANCE_MM):
            k = int(np.flatnonzero(error > POSITION_TOLERANCE_MM)[0])
            raise DicomOutputError(
                f"slice {k} of {what} lies {error[k]:.2f} mm from {self.paths[k].name} of the T2 {self.label}; "
                "it was not analysed from this series",
                self.paths[k],
            )


def source_series_of_files(paths: Sequence[str | Path]) -> SourceSeries:
    """The T2 series that exactly ``paths`` form (e.g. the files Slicer's DICOM database holds for a volume)."""
    series = series_of_files(paths)
    if series is None:
        where = Path(paths[0]).parent if paths else None
        raise DicomOutputError("none of the T2's files is a DICOM image", where, _NOT_DICOM_HINT)
    return _read_series(series)


def source_series_of_case(case: Case) -> SourceSeries:
    """The T2 series of an opened study; refused (one line) when its T2 came from an image file."""
    source = case.sources["t2w"]
    if not source.series_uid:
        raise DicomOutputError("the T2 is an image file, not a DICOM series", source.paths[0], _NOT_DICOM_HINT)
    return source_series_of_files(source.paths)


def source_series_of_study(
    study: str | Path, series_uid: str = "", overrides: Mapping[str, str | int] | None = None
) -> SourceSeries:
    """The T2 series of a DICOM study folder: the series ``series_uid`` when given, else the one the role rules
    (and ``overrides``, as for ``lesionai inspect``) choose.

    Raises:
        DicomOutputError: the study is an image file or a PI-CAI folder, or lacks the series ``series_uid``.
    """
    study = Path(study)
    if study.is_file() or looks_like_picai(study):
        raise DicomOutputError("is not a DICOM study folder", study, _NOT_DICOM_HINT)
    if not series_uid:
        return source_series_of_files(inspect_study(study, overrides).roles["t2w"].paths)
    found = next((s for s in scan_folder(study)[0] if s.uid == series_uid), None)
    if found is None:
        raise DicomOutputError(
            f"holds no series {series_uid}, the T2 the result was analysed from",
            study,
            "give the study folder the result was made from",
        )
    return _read_series(found)


def _read_series(series: DicomSeries) -> SourceSeries:
    if len(series.files) == 1 and series.files[0].frames > 1:
        raise DicomOutputError(
            f"the T2 {series.label} is one multi-frame (enhanced) file; DICOM results reference single-frame "
            "T2 series only",
            series.files[0].path,
        )
    ordered = check_series(series)
    datasets = [pydicom.dcmread(str(f.path), stop_before_pixels=True) for f in ordered]
    return SourceSeries(datasets=datasets, paths=[f.path for f in ordered], label=series.label)

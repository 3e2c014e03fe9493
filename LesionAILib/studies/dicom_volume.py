"""Check that a DICOM series forms one regular volume, and read it into a SimpleITK image.

The checks catch what SimpleITK would otherwise accept silently: missing slices (a gap along the
slice normal), duplicate positions, slices of another orientation, matrix or pixel spacing,
truncated files, invalid rescale slopes. Each problem is a one-line
:class:`~LesionAILib.errors.StudyError` naming the file or series; a usable but suspect volume
gives a :class:`~LesionAILib.errors.StudyWarning`.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import pydicom
import SimpleITK as sitk

from LesionAILib.errors import StudyError, StudyWarning
from LesionAILib.studies.dicom_series import DicomFile, DicomSeries


def _check_pixel_data_complete(path: Path) -> None:
    """Raise if an uncompressed file ends before its pixel data does (a truncated copy)."""
    try:
        dataset = pydicom.dcmread(str(path), defer_size=1024)
    except Exception as error:
        raise StudyError(
            f"DICOM file cannot be read ({type(error).__name__})", path, "replace or re-export the series"
        ) from None
    if "PixelData" not in dataset:
        raise StudyError("DICOM file has no pixel data", path, "replace or re-export the series")
    meta = getattr(dataset, "file_meta", None)
    syntax = getattr(meta, "TransferSyntaxUID", None) if meta is not None else None
    if syntax is not None and syntax.is_encapsulated:
        return  # compressed: the decoder detects damage
    element = dataset["PixelData"]
    expected = (
        int(dataset.Rows)
        * int(dataset.Columns)
        * int(dataset.get("BitsAllocated", 16))
        // 8
        * int(dataset.get("SamplesPerPixel", 1))
        * int(dataset.get("NumberOfFrames", 1) or 1)
    )
    available = path.stat().st_size - int(getattr(element, "file_tell", 0) or 0)
    if getattr(element, "file_tell", None) is not None and available < expected:
        raise StudyError(
            f"DICOM file is truncated: {available} of {expected} pixel bytes present",
            path,
            "replace the file or re-export the series from the scanner/PACS",
        )


def _sorted_slices(series: DicomSeries, files: list[DicomFile]) -> tuple[list[DicomFile], np.ndarray]:
    """Files sorted along the slice normal, with their offsets (mm) along it."""
    normal = series.normal
    offsets = np.array([float(np.dot(f.position, normal)) for f in files])
    order = np.argsort(offsets, kind="stable")
    return [files[i] for i in order], offsets[order]


def validate_volume(series: DicomSeries, files: list[DicomFile], min_slices: int = 3) -> list[DicomFile]:
    """Check that ``files`` form one regular 3D volume; return them sorted along the normal.

    Raises :class:`StudyError` for: fewer than ``min_slices`` slices (2D image or localizer),
    mixed orientations or matrix sizes, missing geometry tags, duplicate slice positions, or a
    gap along the normal (missing slices) — which SimpleITK would otherwise read with a wrong,
    uniform spacing.
    """
    where = series.folder
    _check_uniform(series, files, lambda f: (f.rows, f.columns), "matrix", lambda v: f"{v[1]} × {v[0]}")
    _check_uniform(series, files, lambda f: f.pixel_spacing, "PixelSpacing", lambda v: f"{v[0]:g} × {v[1]:g} mm")
    if len(series.orientations) > 1 and series.plane != "mixed":
        main = series.orientations[0]
        stray = next(f for f in files if f.orientation is not None and not np.allclose(f.orientation, main, atol=1e-3))
        raise StudyError(
            f"{series.label}: slice {stray.path.name} is oriented differently from the other slices; "
            "the series is not one volume",
            stray.path,
            "remove that file or re-export the series",
        )
    if len(series.orientations) > 1:
        raise StudyError(
            f"{series.label} has slices in {len(series.orientations)} different orientations "
            "(a localizer/scout?); it is not one volume",
            where,
            "choose the axial series instead",
        )
    if len(files) == 1 and files[0].frames > 1:
        return files  # one multi-frame file; SimpleITK reads its geometry from the functional groups
    if any(f.position is None or f.orientation is None for f in files):
        raise StudyError(f"{series.label} lacks ImagePositionPatient/ImageOrientationPatient", where)
    if len(files) < min_slices:
        raise StudyError(
            f"{series.label} has {len(files)} slice(s); a 3D volume with at least {min_slices} slices is needed",
            where,
            "a 2D image or localizer cannot be used; choose the axial volume series",
        )
    ordered, offsets = _sorted_slices(series, files)
    steps = np.diff(offsets)
    if np.any(steps < 1e-3):
        duplicate = ordered[int(np.argmin(steps)) + 1].path
        raise StudyError(
            f"{series.label} has two slices at the same position ({duplicate.name}); "
            "mixed b-values or echoes in one series?",
            where,
        )
    spacing = float(np.median(steps))
    gaps = np.nonzero(steps > 1.5 * spacing)[0]
    if gaps.size:
        first = int(gaps[0])
        missing = int(round(steps[first] / spacing)) - 1
        gap = (
            f"{series.label} is missing {missing} slice(s) between {ordered[first].path.name} and "
            f"{ordered[first + 1].path.name} (gap {steps[first]:.2f} mm where slices are {spacing:.2f} mm apart)"
        )
        if series.unreadable_neighbours:
            culprit = series.unreadable_neighbours[0]
            raise StudyError(
                f"{gap}; {culprit.path} in its folder cannot be read: {culprit.reason}",
                where,
                "replace that file or re-export the complete series",
            )
        raise StudyError(gap, where, "re-export the complete series; reading it would give wrong geometry")
    if np.max(np.abs(steps - spacing)) > max(0.05 * spacing, 0.01):
        raise StudyError(
            f"{series.label} has irregular slice spacing ({steps.min():.2f}–{steps.max():.2f} mm)",
            where,
            "resample it to regular slices before use",
        )
    return ordered


def _check_uniform(series: DicomSeries, files: list[DicomFile], value_of, what: str, shown) -> None:
    """Refuse a series whose slices disagree on ``what``, naming a slice that differs from the most common value."""
    values = [value_of(f) for f in files if value_of(f) is not None]
    if len(set(values)) <= 1:
        return
    common = max(set(values), key=values.count)
    odd = next(f for f in files if value_of(f) is not None and value_of(f) != common)
    raise StudyError(
        f"{series.label}: slice {odd.path.name} has {what} {shown(value_of(odd))} where "
        f"{values.count(common)} other slices have {shown(common)}; the series is not one volume",
        odd.path,
        "remove that file or re-export the series; reading it would give wrong geometry",
    )


def check_series(series: DicomSeries, b_value: float | None = None, min_slices: int = 3) -> list[DicomFile]:
    """Validate a series (or one b-value of it) as a volume and check no file is truncated.

    Reads headers only. Returns the files sorted along the slice normal; raises :class:`StudyError`.
    """
    files = series.files_for_b_value(b_value) if len(series.b_values) > 1 else list(series.files)
    ordered = validate_volume(series, files, min_slices=min_slices)
    for f in ordered:
        _check_pixel_data_complete(f.path)
    return ordered


def read_volume(series: DicomSeries, b_value: float | None = None, min_slices: int = 3) -> sitk.Image:
    """Read one series (or one b-value of a multi-b series) as a 3D SimpleITK image.

    The pixel values are the scanner's after RescaleSlope/Intercept (for an ADC map usually
    µm²/s). Geometry comes from the DICOM headers (LPS mm).
    """
    ordered = check_series(series, b_value, min_slices)
    reader = sitk.ImageSeriesReader()
    reader.SetFileNames([str(f.path) for f in ordered])
    previous = sitk.ProcessObject.GetGlobalWarningDisplay()
    sitk.ProcessObject.SetGlobalWarningDisplay(False)
    try:
        image = reader.Execute()
    except RuntimeError:
        raise StudyError(
            f"{series.label} cannot be decoded by SimpleITK/GDCM", series.folder, "re-export the series"
        ) from None
    finally:
        sitk.ProcessObject.SetGlobalWarningDisplay(previous)
    if image.GetDimension() != 3 or image.GetSize()[2] < min_slices:
        raise StudyError(
            f"{series.label} read as {image.GetSize()} voxels; a 3D volume with at least {min_slices} slices is needed",
            series.folder,
        )
    zero_slope = [f.path for f in ordered if f.rescale_slope == 0.0]
    if zero_slope:
        warnings.warn(
            StudyWarning(
                f"{series.label}: {len(zero_slope)} slice(s) have RescaleSlope 0, which is invalid; "
                "their stored values are used unscaled",
                zero_slope[0],
                "check the export: the intensities of those slices may be wrong",
            ),
            stacklevel=2,
        )
    return image

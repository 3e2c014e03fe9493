"""Discover DICOM series in a folder tree and read one series into a SimpleITK image safely.

Discovery reads headers only (pydicom, no pixel data), groups files by SeriesInstanceUID in any
nesting and with any file names, and describes every series: plane, slices, spacing, b-values,
image type. Reading checks what SimpleITK would otherwise accept silently: missing slices
(a gap along the slice normal), duplicate positions, mixed orientations or matrix sizes, and
truncated files. Each problem is a one-line :class:`~LesionAILib.errors.StudyError` naming the
file or series.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pydicom
import SimpleITK as sitk
from pydicom.errors import InvalidDicomError

from LesionAILib.errors import StudyError

# Header elements needed for discovery; reading only these keeps discovery fast.
_HEADER_TAGS = [
    "SOPClassUID",
    "Modality",
    "PatientID",
    "StudyInstanceUID",
    "StudyID",
    "AccessionNumber",
    "SeriesInstanceUID",
    "SeriesNumber",
    "SeriesDescription",
    "ProtocolName",
    "ImageType",
    "SequenceName",
    "ScanningSequence",
    "EchoTrainLength",
    "ImagePositionPatient",
    "ImageOrientationPatient",
    "PixelSpacing",
    "SliceThickness",
    "Rows",
    "Columns",
    "NumberOfFrames",
    "InstanceNumber",
    "AcquisitionTime",
    "SeriesTime",
    "FrameOfReferenceUID",
    "DiffusionBValue",
    "BitsAllocated",
    "SamplesPerPixel",
    "StudyDate",
    (0x0019, 0x100C),  # Siemens B_value
    (0x0043, 0x1039),  # GE slop_int_6..9 (first value is the b-value)
    (0x2001, 0x1003),  # Philips diffusion b-factor
]
_DIRECTORY_SOP_CLASS = "1.2.840.10008.1.3.10"  # Media Storage Directory (DICOMDIR)
_SEQUENCE_B_VALUE = re.compile(r"(?:ep_b|_b)(\d{2,4})")


@dataclass
class DicomFile:
    """Header facts of one DICOM image file."""

    path: Path
    series_uid: str
    position: np.ndarray | None  # LPS mm of the first pixel's centre
    orientation: np.ndarray | None  # row and column direction cosines (6,)
    rows: int
    columns: int
    pixel_spacing: tuple[float, float] | None
    b_value: float | None
    frames: int
    instance_number: int | None


@dataclass
class DicomSeries:
    """One series found in a study folder. Positions are LPS mm."""

    uid: str
    number: int | None
    description: str
    modality: str
    image_type: tuple[str, ...]
    sequence_name: str
    scanning_sequence: str
    echo_train_length: int | None
    patient_id: str
    study_uid: str
    study_id: str
    study_date: str
    frame_of_reference: str
    acquisition_seconds: float | None  # seconds since midnight of the earliest acquisition time
    files: list[DicomFile] = field(default_factory=list)

    @property
    def label(self) -> str:
        """Human name: ``series 4 (t2_tse_tra)``."""
        number = "?" if self.number is None else str(self.number)
        return f"series {number} ({self.description or 'no description'})"

    @property
    def folder(self) -> Path:
        """The deepest folder holding all of the series' files."""
        return Path(os.path.commonpath([str(f.path.parent) for f in self.files]))

    @property
    def b_values(self) -> tuple[float, ...]:
        return tuple(sorted({f.b_value for f in self.files if f.b_value is not None}))

    @property
    def orientations(self) -> list[np.ndarray]:
        unique: list[np.ndarray] = []
        for f in self.files:
            if f.orientation is None:
                continue
            if not any(np.allclose(f.orientation, o, atol=1e-3) for o in unique):
                unique.append(f.orientation)
        return unique

    @property
    def normal(self) -> np.ndarray | None:
        """LPS unit vector perpendicular to the slices (row × column), or None if unknown."""
        orientations = self.orientations
        if not orientations:
            return None
        row, column = orientations[0][:3], orientations[0][3:]
        normal = np.cross(row, column)
        return normal / np.linalg.norm(normal)

    @property
    def plane(self) -> str:
        """``axial``, ``coronal``, ``sagittal`` (by the dominant normal axis), ``mixed`` or ``unknown``."""
        if len(self.orientations) > 1:
            return "mixed"
        normal = self.normal
        if normal is None:
            return "unknown"
        return ("sagittal", "coronal", "axial")[int(np.argmax(np.abs(normal)))]

    @property
    def pixel_spacing(self) -> tuple[float, float] | None:
        spacings = [f.pixel_spacing for f in self.files if f.pixel_spacing is not None]
        return spacings[0] if spacings else None

    @property
    def frames(self) -> int:
        return sum(f.frames for f in self.files)

    def files_for_b_value(self, b_value: float | None) -> list[DicomFile]:
        if b_value is None:
            return list(self.files)
        return [f for f in self.files if f.b_value is not None and abs(f.b_value - b_value) < 0.5]

    def slice_count(self, b_value: float | None = None) -> int:
        """Number of distinct slice positions (for one b-value of a multi-b series)."""
        files = self.files_for_b_value(b_value) if len(self.b_values) > 1 else self.files
        normal = self.normal
        if normal is None or any(f.position is None for f in files):
            return sum(f.frames for f in files)
        offsets = np.round([float(np.dot(f.position, normal)) for f in files], 2)
        return max(len(set(offsets.tolist())), max((f.frames for f in files), default=0))


@dataclass
class SkippedFile:
    path: Path
    reason: str


def _text(dataset: pydicom.Dataset, keyword: str, default: str = "") -> str:
    value = dataset.get(keyword, default)
    return default if value is None else str(value).strip()


def _seconds_since_midnight(value: str) -> float | None:
    match = re.match(r"^(\d{2})(\d{2})(\d{2}(?:\.\d+)?)", value or "")
    if not match:
        return None
    return int(match.group(1)) * 3600 + int(match.group(2)) * 60 + float(match.group(3))


def _b_value(dataset: pydicom.Dataset) -> float | None:
    """The diffusion b-value (s/mm²) from the standard tag or a vendor's private tag."""
    if "DiffusionBValue" in dataset and dataset.DiffusionBValue not in (None, ""):
        return float(dataset.DiffusionBValue)
    for tag in ((0x0019, 0x100C), (0x2001, 0x1003)):
        if tag in dataset:
            raw = dataset[tag].value
            text = raw.decode("ascii", "ignore") if isinstance(raw, bytes) else str(raw)
            match = re.search(r"-?\d+(?:\.\d+)?", text)
            if match:
                return float(match.group(0))
    if (0x0043, 0x1039) in dataset:
        raw = dataset[(0x0043, 0x1039)].value
        text = raw.decode("ascii", "ignore") if isinstance(raw, bytes) else str(raw)
        match = re.search(r"\d+", text)
        if match:
            return float(int(match.group(0)) % 1_000_000_000)
    match = _SEQUENCE_B_VALUE.search(_text(dataset, "SequenceName"))
    return float(match.group(1)) if match else None


def _float_list(dataset: pydicom.Dataset, keyword: str) -> list[float] | None:
    value = dataset.get(keyword)
    if value is None:
        return None
    try:
        return [float(v) for v in value]
    except (TypeError, ValueError):
        return None


def scan_folder(root: Path) -> tuple[list[DicomSeries], list[SkippedFile]]:
    """Find every DICOM image series under ``root`` (any nesting, any file names).

    Returns the series sorted by series number (then UID) and the files that were skipped with
    the reason (not DICOM, no image, unreadable header).
    """
    root = Path(root)
    by_uid: dict[str, DicomSeries] = {}
    skipped: list[SkippedFile] = []
    for directory, subdirectories, names in os.walk(root):
        subdirectories.sort()
        for name in sorted(names):
            path = Path(directory) / name
            if name.startswith("."):
                continue
            try:
                dataset = pydicom.dcmread(str(path), stop_before_pixels=True, specific_tags=_HEADER_TAGS)
            except InvalidDicomError:
                skipped.append(SkippedFile(path, "not a DICOM file"))
                continue
            except Exception as error:  # a damaged header: keep going, report it
                skipped.append(SkippedFile(path, f"unreadable DICOM header ({type(error).__name__})"))
                continue
            if _text(dataset, "SOPClassUID") == _DIRECTORY_SOP_CLASS:
                skipped.append(SkippedFile(path, "DICOMDIR index, not an image"))
                continue
            uid = _text(dataset, "SeriesInstanceUID")
            if not uid or "Rows" not in dataset:
                skipped.append(SkippedFile(path, "DICOM file without an image"))
                continue
            series = by_uid.get(uid)
            if series is None:
                number = dataset.get("SeriesNumber")
                echo_train = dataset.get("EchoTrainLength")
                series = DicomSeries(
                    uid=uid,
                    number=int(number) if number not in (None, "") else None,
                    description=_text(dataset, "SeriesDescription") or _text(dataset, "ProtocolName"),
                    modality=_text(dataset, "Modality"),
                    image_type=tuple(str(v).upper() for v in (dataset.get("ImageType") or [])),
                    sequence_name=_text(dataset, "SequenceName"),
                    scanning_sequence=_text(dataset, "ScanningSequence"),
                    echo_train_length=int(echo_train) if echo_train not in (None, "") else None,
                    patient_id=_text(dataset, "PatientID"),
                    study_uid=_text(dataset, "StudyInstanceUID"),
                    study_id=_text(dataset, "StudyID") or _text(dataset, "AccessionNumber"),
                    study_date=_text(dataset, "StudyDate"),
                    frame_of_reference=_text(dataset, "FrameOfReferenceUID"),
                    acquisition_seconds=None,
                )
                by_uid[uid] = series
            seconds = _seconds_since_midnight(_text(dataset, "AcquisitionTime") or _text(dataset, "SeriesTime"))
            if seconds is not None and (series.acquisition_seconds is None or seconds < series.acquisition_seconds):
                series.acquisition_seconds = seconds
            position = _float_list(dataset, "ImagePositionPatient")
            orientation = _float_list(dataset, "ImageOrientationPatient")
            spacing = _float_list(dataset, "PixelSpacing")
            instance = dataset.get("InstanceNumber")
            series.files.append(
                DicomFile(
                    path=path,
                    series_uid=uid,
                    position=np.asarray(position) if position and len(position) == 3 else None,
                    orientation=np.asarray(orientation) if orientation and len(orientation) == 6 else None,
                    rows=int(dataset.get("Rows", 0) or 0),
                    columns=int(dataset.get("Columns", 0) or 0),
                    pixel_spacing=(spacing[0], spacing[1]) if spacing and len(spacing) == 2 else None,
                    b_value=_b_value(dataset),
                    frames=int(dataset.get("NumberOfFrames", 1) or 1),
                    instance_number=int(instance) if instance not in (None, "") else None,
                )
            )
    series_list = sorted(by_uid.values(), key=lambda s: (s.number is None, s.number or 0, s.uid))
    return series_list, skipped


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
    if len({(f.rows, f.columns) for f in files}) > 1:
        raise StudyError(f"{series.label} mixes matrix sizes; it is not one volume", where)
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
        raise StudyError(
            f"{series.label} is missing {missing} slice(s) between {ordered[first].path.name} and "
            f"{ordered[first + 1].path.name} (gap {steps[first]:.2f} mm where slices are {spacing:.2f} mm apart)",
            where,
            "re-export the complete series; reading it would give wrong geometry",
        )
    if np.max(np.abs(steps - spacing)) > max(0.05 * spacing, 0.01):
        raise StudyError(
            f"{series.label} has irregular slice spacing ({steps.min():.2f}–{steps.max():.2f} mm)",
            where,
            "resample it to regular slices before use",
        )
    return ordered


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
    return image

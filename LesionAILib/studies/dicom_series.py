"""Discover DICOM series in a folder tree from their headers, and describe each series.

Discovery reads headers only (pydicom, no pixel data), groups files by SeriesInstanceUID in any
nesting and with any file names, and describes every series: plane, slices, spacing, b-values,
image type. Files that cannot be read are kept with the reason, and attached to the series in
whose folder they lie (the likely cause when that series then lacks a slice). Checking and reading
a series as a volume is :mod:`LesionAILib.studies.dicom_volume`.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pydicom
from pydicom.errors import InvalidDicomError

from LesionAILib.studies.roles import SeriesDescriptor, plane_of_normal

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
    "RescaleSlope",
    (0x0019, 0x100C),  # Siemens B_value
    (0x0043, 0x1039),  # GE slop_int_6..9 (first value is the b-value)
    (0x2001, 0x1003),  # Philips diffusion b-factor
]
_DIRECTORY_SOP_CLASS = "1.2.840.10008.1.3.10"  # Media Storage Directory (DICOMDIR)
_SEQUENCE_B_VALUE = re.compile(r"(?:ep_b|_b)(\d{2,4})")
MAIN_ORIENTATION_SHARE = 0.8  # a series with this share of slices in one orientation is one volume gone wrong


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
    rescale_slope: float | None = None


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
    # files in the series' folder that could not be read as its slices (empty, truncated header,
    # not DICOM, no image): when the series then lacks a slice, they are the likely cause
    unreadable_neighbours: list[SkippedFile] = field(default_factory=list)

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
        """The distinct slice orientations (row and column cosines), the most frequent first."""
        unique: list[np.ndarray] = []
        counts: list[int] = []
        for f in self.files:
            if f.orientation is None:
                continue
            for index, orientation in enumerate(unique):
                if np.allclose(f.orientation, orientation, atol=1e-3):
                    counts[index] += 1
                    break
            else:
                unique.append(f.orientation)
                counts.append(1)
        order = sorted(range(len(unique)), key=lambda i: -counts[i])
        return [unique[i] for i in order]

    def _share_of_main_orientation(self) -> float:
        orientations = self.orientations
        with_orientation = [f for f in self.files if f.orientation is not None]
        if not orientations:
            return 0.0
        main = orientations[0]
        return sum(np.allclose(f.orientation, main, atol=1e-3) for f in with_orientation) / len(with_orientation)

    @property
    def normal(self) -> np.ndarray | None:
        """LPS unit vector perpendicular to the (most frequent) slice orientation, or None if unknown."""
        orientations = self.orientations
        if not orientations:
            return None
        row, column = orientations[0][:3], orientations[0][3:]
        normal = np.cross(row, column)
        return normal / np.linalg.norm(normal)

    @property
    def plane(self) -> str:
        """``axial``, ``coronal``, ``sagittal`` (by the dominant normal axis), ``mixed`` or ``unknown``.

        A volume with a few stray slices (≥ 80 % in one orientation) keeps the plane of its main
        orientation, so it is chosen for its role and then refused naming the stray slice, rather
        than ignored as if it were a localizer.
        """
        if len(self.orientations) > 1 and self._share_of_main_orientation() < MAIN_ORIENTATION_SHARE:
            return "mixed"
        normal = self.normal
        if normal is None:
            return "unknown"
        return plane_of_normal(normal)

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

    def descriptor(self) -> SeriesDescriptor:
        """The facts the role rules read (:mod:`LesionAILib.studies.roles`), keyed by the SeriesInstanceUID."""
        return SeriesDescriptor(
            key=self.uid,
            number=self.number,
            description=self.description,
            sequence_name=self.sequence_name,
            scanning_sequence=self.scanning_sequence,
            echo_train_length=self.echo_train_length,
            image_type=self.image_type,
            b_values=self.b_values,
            plane=self.plane,
            in_plane_mm=self.pixel_spacing,
            slices=self.slice_count(),
            acquisition_seconds=self.acquisition_seconds,
            uid=self.uid,
        )


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


def _image_header(path: Path) -> pydicom.Dataset | str:
    """The discovery header of an image file, or why the file is not one (the reason to report)."""
    if path.stat().st_size == 0:
        return "empty file (0 bytes)"
    try:
        dataset = pydicom.dcmread(str(path), stop_before_pixels=True, specific_tags=_HEADER_TAGS)
    except InvalidDicomError:
        return "not a DICOM file"
    except Exception as error:  # a damaged header: keep going, report it
        return f"unreadable DICOM header ({type(error).__name__})"
    incomplete = not _text(dataset, "SeriesInstanceUID") or "Rows" not in dataset
    if incomplete and _ends_before_pixel_data(path):
        return "unreadable DICOM header (the file ends inside it: truncated)"
    if _text(dataset, "SOPClassUID") == _DIRECTORY_SOP_CLASS:
        return "DICOMDIR index, not an image"
    if not _text(dataset, "SeriesInstanceUID"):
        return "DICOM file without SeriesInstanceUID"
    if "Rows" not in dataset:
        return "DICOM file without Rows (no image)"
    return dataset


def _new_series(dataset: pydicom.Dataset) -> DicomSeries:
    number = dataset.get("SeriesNumber")
    echo_train = dataset.get("EchoTrainLength")
    return DicomSeries(
        uid=_text(dataset, "SeriesInstanceUID"),
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


def _dicom_file(path: Path, dataset: pydicom.Dataset) -> DicomFile:
    position = _float_list(dataset, "ImagePositionPatient")
    orientation = _float_list(dataset, "ImageOrientationPatient")
    spacing = _float_list(dataset, "PixelSpacing")
    instance = dataset.get("InstanceNumber")
    return DicomFile(
        path=path,
        series_uid=_text(dataset, "SeriesInstanceUID"),
        position=np.asarray(position) if position and len(position) == 3 else None,
        orientation=np.asarray(orientation) if orientation and len(orientation) == 6 else None,
        rows=int(dataset.get("Rows", 0) or 0),
        columns=int(dataset.get("Columns", 0) or 0),
        pixel_spacing=(spacing[0], spacing[1]) if spacing and len(spacing) == 2 else None,
        b_value=_b_value(dataset),
        frames=int(dataset.get("NumberOfFrames", 1) or 1),
        instance_number=int(instance) if instance not in (None, "") else None,
        rescale_slope=_optional_float(dataset.get("RescaleSlope")),
    )


def scan_folder(root: Path) -> tuple[list[DicomSeries], list[SkippedFile]]:
    """Find every DICOM image series under ``root`` (any nesting, any file names).

    Returns the series sorted by series number (then UID) and the files that were skipped with
    the reason (empty, not DICOM, truncated or unreadable header, no image); each series also
    lists the skipped files of its own folders (``unreadable_neighbours``).
    """
    by_uid: dict[str, DicomSeries] = {}
    skipped: list[SkippedFile] = []
    for directory, subdirectories, names in os.walk(Path(root)):
        subdirectories.sort()
        for name in sorted(n for n in names if not n.startswith(".")):
            path = Path(directory) / name
            header = _image_header(path)
            if isinstance(header, str):
                skipped.append(SkippedFile(path, header))
                continue
            uid = _text(header, "SeriesInstanceUID")
            series = by_uid.get(uid) or by_uid.setdefault(uid, _new_series(header))
            seconds = _seconds_since_midnight(_text(header, "AcquisitionTime") or _text(header, "SeriesTime"))
            if seconds is not None and (series.acquisition_seconds is None or seconds < series.acquisition_seconds):
                series.acquisition_seconds = seconds
            series.files.append(_dicom_file(path, header))
    series_list = sorted(by_uid.values(), key=lambda s: (s.number is None, s.number or 0, s.uid))
    for series in series_list:
        folders = {f.path.parent for f in series.files}
        series.unreadable_neighbours = [s for s in skipped if s.path.parent in folders]
    return series_list, skipped


def _ends_before_pixel_data(path: Path) -> bool:
    """True if a file stops before any pixel data (a copy cut short), read in full only for such suspects."""
    try:
        return "PixelData" not in pydicom.dcmread(str(path), force=True, defer_size=1024)
    except Exception:
        return True


def _optional_float(value) -> float | None:
    try:
        return None if value in (None, "") else float(value)
    except (TypeError, ValueError):
        return None

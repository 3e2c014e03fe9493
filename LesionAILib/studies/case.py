"""The :class:`Case`: one study's T2, ADC and high-b images with where each came from, and the checks every case passes.

Every way in (DICOM folder, image files, PI-CAI folder, Slicer volume nodes) ends in
:func:`make_case`, so every case has its ADC in µm²/s and sequences that overlap the T2 volume.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import SimpleITK as sitk

from LesionAILib.errors import StudyError
from LesionAILib.geometry import Grid
from LesionAILib.studies.dicom_series import SkippedFile
from LesionAILib.studies.roles import ROLE_NAMES, ROLES

MIN_SLICES = 3  # fewer slices is a 2D image or a localizer, not a volume


@dataclass
class SeriesSource:
    """Where one role's image came from."""

    role: str
    reason: str
    paths: list[str]
    series_number: int | None = None
    series_description: str = ""
    series_uid: str = ""
    b_value: float | None = None

    def to_dict(self) -> dict:
        return {
            "series_number": self.series_number,
            "series_description": self.series_description,
            "series_uid": self.series_uid,
            "b_value": self.b_value,
            "reason": self.reason,
            "source": self.paths[0] if len(self.paths) == 1 else str(Path(self.paths[0]).parent),
            "files": len(self.paths),
        }


@dataclass
class SeriesReport:
    """What discovery saw in one series and what it was taken for."""

    number: int | None
    description: str
    uid: str
    plane: str
    files: int
    slices: int
    in_plane_mm: tuple[float, float] | None
    b_values: tuple[float, ...]
    image_type: tuple[str, ...]
    kind: str
    role: str | None = None
    note: str = ""

    def to_dict(self) -> dict:
        return {
            "series_number": self.number,
            "series_description": self.description,
            "series_uid": self.uid,
            "plane": self.plane,
            "files": self.files,
            "slices": self.slices,
            "in_plane_mm": list(self.in_plane_mm) if self.in_plane_mm else None,
            "b_values": list(self.b_values),
            "image_type": list(self.image_type),
            "kind": self.kind,
            "role": self.role,
            "note": self.note,
        }


@dataclass
class StudyReport:
    """Result of role assignment: the choice per role and a note for every series."""

    path: str
    patient_id: str
    study_id: str
    roles: dict[str, SeriesSource]
    series: list[SeriesReport] = field(default_factory=list)
    skipped_files: list[SkippedFile] = field(default_factory=list)

    def to_dict(self) -> dict:
        return {
            "path": self.path,
            "patient_id": self.patient_id,
            "study_id": self.study_id,
            "roles": {role: source.to_dict() for role, source in self.roles.items()},
            "series": [s.to_dict() for s in self.series],
            "skipped_files": [{"path": str(s.path), "reason": s.reason} for s in self.skipped_files],
        }


@dataclass
class Case:
    """One mpMRI study: the three sequences in their native grids plus where they came from.

    Attributes:
        t2w, adc, hbv: 3D SimpleITK images, native geometry (LPS mm). ADC in µm²/s.
        patient_id, study_id: identifiers (DICOM tags, PI-CAI file names, or file stems).
        sources: per role, the series/file and the reason it was chosen.
        report: the DICOM discovery report (``None`` for file inputs).
        lesion_mask: optional label map (e.g. PI-CAI csPCa delineation) on the T2 grid.
    """

    t2w: sitk.Image
    adc: sitk.Image
    hbv: sitk.Image
    patient_id: str
    study_id: str
    sources: dict[str, SeriesSource]
    report: StudyReport | None = None
    lesion_mask: sitk.Image | None = None

    @property
    def case_id(self) -> str:
        return f"{self.patient_id}_{self.study_id}" if self.study_id else self.patient_id

    def image(self, role: str) -> sitk.Image:
        if role not in ROLES:
            raise KeyError(f"unknown role {role!r}; roles are {', '.join(ROLES)}")
        return getattr(self, role)

    def grid(self, role: str = "t2w") -> Grid:
        return Grid.from_image(self.image(role))

    @property
    def b_value(self) -> float | None:
        return self.sources["hbv"].b_value if "hbv" in self.sources else None

    def metadata(self) -> dict:
        """JSON-serialisable description (ids, per-role source, native grids)."""
        return {
            "patient_id": self.patient_id,
            "study_id": self.study_id,
            "roles": {
                role: {**self.sources[role].to_dict(), "grid": self.grid(role).to_dict()}
                for role in ROLES
                if role in self.sources
            },
        }


def _adc_in_micrometres(image: sitk.Image, source: SeriesSource) -> sitk.Image:
    """Return the ADC in µm²/s; maps stored in mm²/s (values < 0.01) are rescaled and the reason says so."""
    array = sitk.GetArrayViewFromImage(image)
    positive = array[array > 0]
    if positive.size == 0:
        raise StudyError("ADC map is empty (all values ≤ 0)", source.paths[0])
    typical = float(np.percentile(positive, 95))
    if typical < 0.01:
        source.reason += "; values were in mm²/s, rescaled ×10⁶ to µm²/s"
        return sitk.Cast(image, sitk.sitkFloat32) * 1e6
    if typical < 10:
        source.reason += "; values were in 10⁻³ mm²/s, rescaled ×1000 to µm²/s"
        return sitk.Cast(image, sitk.sitkFloat32) * 1000.0
    return image


def check_case(case: Case) -> None:
    """Refuse cases whose sequences cannot belong together (no overlap with the T2 volume).

    A lesion mask must lie on the T2 grid (within a quarter voxel); it is then given T2's exact grid.
    """
    t2 = case.grid("t2w")
    centre = t2.center_lps
    for role in ("adc", "hbv"):
        grid = case.grid(role)
        index = grid.lps_to_index(centre)
        if not grid.contains_index(index, margin=2.0):
            distance = float(np.linalg.norm(grid.center_lps - centre))
            raise StudyError(
                f"the {ROLE_NAMES[role]} image does not cover the T2 volume's centre "
                f"(centres {distance:.0f} mm apart); are they from the same study?",
                case.sources[role].paths[0],
            )
    if case.lesion_mask is not None:
        # NIfTI stores directions in float32/quaternions: accept a quarter voxel, then adopt T2's exact grid
        if not Grid.from_image(case.lesion_mask).same_as(t2, 0.25 * min(t2.spacing)):
            raise StudyError("lesion mask is not on the T2 grid", "lesion mask", "resample the mask to the T2 image")
        case.lesion_mask = t2.apply_to(sitk.Image(case.lesion_mask))


def make_case(
    images: Mapping[str, sitk.Image],
    patient_id: str,
    study_id: str,
    sources: dict[str, SeriesSource],
    report: StudyReport | None = None,
    lesion_mask: sitk.Image | None = None,
) -> Case:
    """A :class:`Case` from three SimpleITK images (any origin: files, DICOM, a Slicer scene).

    The ADC is brought to µm²/s if it is stored in mm²/s or 10⁻³ mm²/s (the source's reason says so),
    and the case is refused if the ADC or high-b image does not cover the T2 volume's centre.
    """
    images = dict(images)
    images["adc"] = _adc_in_micrometres(images["adc"], sources["adc"])
    case = Case(
        t2w=images["t2w"],
        adc=images["adc"],
        hbv=images["hbv"],
        patient_id=patient_id,
        study_id=study_id,
        sources=sources,
        report=report,
        lesion_mask=lesion_mask,
    )
    check_case(case)
    return case

"""Open a prostate mpMRI study and decide which series is T2, ADC and high-b.

Three ways in, one result (a :class:`Case`):

* :func:`open_dicom_study` — a DICOM folder tree (any nesting, any file names).
* :func:`open_files` — one image file per role (``.nii``, ``.nii.gz``, ``.mha``, ``.mhd``, ``.nrrd``).
* :func:`open_picai_case` — the PI-CAI layout, ``<patient>_<study>_{t2w,adc,hbv}.mha``.

:func:`open_case` picks the right one for a path. :func:`inspect_study` only reads headers and
reports, for every series, what it was taken for and why.

Role rules for DICOM (deterministic; explicit overrides always win):

* **t2w** — an axial (slice normal closest to the z axis), non-localizer T2-weighted series
  (description mentions T2, or a spin-echo with an echo train). Among several: TSE/FSE first,
  then the finest in-plane spacing, then the one acquired closest in time to the diffusion
  series (least motion between T2 and DWI; a repeated T2 is usually the better one), then the
  highest series number.
* **adc** — ImageType contains ADC, or the description mentions ADC/apparent diffusion; axial.
  Among several: closest in time to the chosen T2, then lowest series number.
* **hbv** — a computed high b-value series (ImageType/description CALC_BVAL, "calc"), the highest
  b first; otherwise the highest b ≥ 800 s/mm² of a multi-b DWI series.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import SimpleITK as sitk

from LesionAILib.errors import StudyError
from LesionAILib.geometry import Grid
from LesionAILib.studies.dicom_series import DicomSeries, SkippedFile, check_series, read_volume, scan_folder

ROLES = ("t2w", "adc", "hbv")
ROLE_NAMES = {"t2w": "axial T2", "adc": "ADC", "hbv": "high-b DWI"}
IMAGE_SUFFIXES = (".nii.gz", ".nii", ".mha", ".mhd", ".nrrd", ".nhdr")
MIN_HIGH_B = 800.0
MIN_SLICES = 3

# Series-description patterns (also used by the Slicer module to guess roles from volume names).
T2_PATTERN = re.compile(r"t2", re.IGNORECASE)
TSE_PATTERN = re.compile(r"tse|fse|haste|space|blade|propeller|frfse", re.IGNORECASE)
ADC_PATTERN = re.compile(r"adc|apparent", re.IGNORECASE)
CALC_PATTERN = re.compile(r"calc|comp(?:uted)?[_ ]?b|synth", re.IGNORECASE)
DWI_PATTERN = re.compile(r"diff|dwi|ep2d|resolve|trace", re.IGNORECASE)
LOCALIZER_PATTERN = re.compile(r"locali[sz]er|scout|survey|\bloc\b|_loc|loc[ _]", re.IGNORECASE)


# --------------------------------------------------------------------------- records
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


# --------------------------------------------------------------------------- classification
def _kind(series: DicomSeries) -> str:
    """What a series is, from its tags: t2, adc, dwi_calc, dwi, localizer or other."""
    text = f"{series.description} {series.sequence_name}"
    image_type = set(series.image_type)
    if "LOCALIZER" in image_type or LOCALIZER_PATTERN.search(series.description) or series.plane == "mixed":
        return "localizer"
    if "ADC" in image_type or ADC_PATTERN.search(series.description):
        return "adc"
    is_diffusion = "DIFFUSION" in image_type or "TRACEW" in image_type or bool(DWI_PATTERN.search(text))
    if is_diffusion and ("CALC_BVAL" in image_type or CALC_PATTERN.search(series.description)):
        return "dwi_calc"
    if is_diffusion or len(series.b_values) > 1:
        return "dwi"
    spin_echo_train = "SE" in series.scanning_sequence and (series.echo_train_length or 0) > 1
    if T2_PATTERN.search(series.description) or (spin_echo_train and TSE_PATTERN.search(text)):
        return "t2"
    return "other"


def _in_plane(series: DicomSeries) -> float:
    spacing = series.pixel_spacing
    return float(np.mean(spacing)) if spacing else float("inf")


def _minutes_between(a: DicomSeries, b: DicomSeries | None) -> float:
    if b is None or a.acquisition_seconds is None or b.acquisition_seconds is None:
        return float("inf")
    return abs(a.acquisition_seconds - b.acquisition_seconds) / 60.0


def _match_override(series_list: list[DicomSeries], value: str | int, role: str, root: Path) -> DicomSeries:
    text = str(value).strip()
    matches = [s for s in series_list if s.uid == text or (s.number is not None and str(s.number) == text)]
    if not matches:
        known = ", ".join(s.label for s in series_list) or "none"
        raise StudyError(f"no series {text!r} for {role} (series found: {known})", root)
    if len(matches) > 1:
        raise StudyError(f"series number {text} is ambiguous for {role}; give the SeriesInstanceUID", root)
    return matches[0]


def _axial_check(series: DicomSeries, role: str, root: Path) -> None:
    if series.plane == "mixed":
        raise StudyError(
            f"{series.label} has slices in several planes (a localizer/scout), not an axial {ROLE_NAMES[role]} volume",
            root,
            "choose the axial volume series",
        )
    if series.plane != "axial":
        raise StudyError(
            f"{series.label} is {series.plane}; LesionAI needs an axial {ROLE_NAMES[role]} series",
            root,
            "choose the axial (transverse) series",
        )


def assign_roles(
    series_list: list[DicomSeries], root: Path, overrides: Mapping[str, str | int] | None = None
) -> tuple[dict[str, tuple[DicomSeries, float | None, str]], dict[str, str]]:
    """Choose a series (and b-value) for each role.

    Returns ``(chosen, notes)``: ``chosen[role] = (series, b_value, reason)`` and ``notes[uid]``
    explaining every series that was not chosen. Raises :class:`StudyError` naming ``root``
    when a role cannot be filled.
    """
    overrides = {k: v for k, v in (overrides or {}).items() if v not in (None, "")}
    unknown = set(overrides) - set(ROLES)
    if unknown:
        raise StudyError(f"unknown role(s) {', '.join(sorted(unknown))} in overrides; roles are {', '.join(ROLES)}")
    kinds = {s.uid: _kind(s) for s in series_list}
    notes: dict[str, str] = {}
    chosen: dict[str, tuple[DicomSeries, float | None, str]] = {}
    diffusion = [s for s in series_list if kinds[s.uid] in ("adc", "dwi_calc", "dwi")]
    diffusion_reference = diffusion[0] if diffusion else None

    # ---- T2
    if "t2w" in overrides:
        t2 = _match_override(series_list, overrides["t2w"], "t2w", root)
        _axial_check(t2, "t2w", root)
        chosen["t2w"] = (t2, None, f"explicit override ({overrides['t2w']})")
    else:
        candidates = [s for s in series_list if kinds[s.uid] == "t2" and s.plane == "axial"]
        for s in series_list:
            if kinds[s.uid] == "t2" and s.plane != "axial":
                notes[s.uid] = f"not used: {s.plane} T2 (LesionAI reads the axial T2)"
        if not candidates:
            raise StudyError(
                "no axial T2 series found (" + _summary(series_list, kinds) + ")",
                root,
                "pass the T2 explicitly (--t2w FILE or --series t2w=NUMBER)",
            )

        def t2_rank(s: DicomSeries):
            tse = bool(TSE_PATTERN.search(f"{s.description} {s.sequence_name}"))
            return (not tse, round(_in_plane(s), 3), _minutes_between(s, diffusion_reference), -(s.number or 0))

        candidates.sort(key=t2_rank)
        t2 = candidates[0]
        reason = (
            f"axial T2 ('{t2.description}', sequence '{t2.sequence_name or '?'}'), "
            f"{_in_plane(t2):.2f} mm in-plane, {t2.slice_count()} slices"
        )
        if len(candidates) > 1:
            others = ", ".join(
                f"{s.label} acquired {_minutes_between(s, diffusion_reference):.1f} min from the DWI"
                for s in candidates[1:]
            )
            reason += (
                f"; chosen among {len(candidates)} axial T2 series by rule (TSE, finest in-plane spacing, "
                f"acquired closest to the DWI: {_minutes_between(t2, diffusion_reference):.1f} min, "
                f"then highest series number) over {others}"
            )
            for s in candidates[1:]:
                notes[s.uid] = f"axial T2 candidate not chosen: {t2.label} ranks first by the T2 rule"
        chosen["t2w"] = (t2, None, reason)
    t2_series = chosen["t2w"][0]

    # ---- ADC
    if "adc" in overrides:
        adc = _match_override(series_list, overrides["adc"], "adc", root)
        _axial_check(adc, "adc", root)
        chosen["adc"] = (adc, None, f"explicit override ({overrides['adc']})")
    else:
        candidates = [s for s in series_list if kinds[s.uid] == "adc" and s.plane == "axial"]
        if not candidates:
            raise StudyError(
                "no ADC series found (" + _summary(series_list, kinds) + ")",
                root,
                "pass the ADC map explicitly (--adc FILE or --series adc=NUMBER)",
            )
        candidates.sort(key=lambda s: (_minutes_between(s, t2_series), s.number or 0))
        adc = candidates[0]
        tag = "ImageType ADC" if "ADC" in adc.image_type else f"description '{adc.description}'"
        reason = f"ADC map ({tag}), axial, {adc.slice_count()} slices"
        if len(candidates) > 1:
            reason += f"; closest in time to the T2 of {len(candidates)} ADC series"
            for s in candidates[1:]:
                notes[s.uid] = f"ADC candidate not chosen: {adc.label} was acquired closer to the T2"
        chosen["adc"] = (adc, None, reason)

    # ---- high b
    if "hbv" in overrides:
        hbv = _match_override(series_list, overrides["hbv"], "hbv", root)
        _axial_check(hbv, "hbv", root)
        b = max(hbv.b_values) if hbv.b_values else None
        chosen["hbv"] = (hbv, b, f"explicit override ({overrides['hbv']})" + (f", b = {b:g} s/mm²" if b else ""))
    else:
        computed = [s for s in series_list if kinds[s.uid] == "dwi_calc" and s.plane == "axial"]
        raw = [s for s in series_list if kinds[s.uid] == "dwi" and s.plane == "axial"]
        if computed:
            computed.sort(key=lambda s: (-(max(s.b_values) if s.b_values else 0), _minutes_between(s, t2_series)))
            hbv = computed[0]
            b = max(hbv.b_values) if hbv.b_values else None
            reason = (
                "computed high b-value series ("
                + ("ImageType CALC_BVAL" if "CALC_BVAL" in hbv.image_type else f"description '{hbv.description}'")
                + ")"
                + (f", b = {b:g} s/mm²" if b else ", b-value not recorded")
            )
            for s in raw:
                notes[s.uid] = (
                    f"not used: acquired DWI (b = {', '.join(f'{v:g}' for v in s.b_values) or '?'} s/mm²); "
                    "the computed high-b series is preferred"
                )
            for s in computed[1:]:
                notes[s.uid] = f"computed DWI not chosen: {hbv.label} has the higher b-value"
            chosen["hbv"] = (hbv, b, reason)
        else:
            usable = [s for s in raw if s.b_values and max(s.b_values) >= MIN_HIGH_B]
            if not usable:
                seen = "; ".join(f"{s.label}: b = {', '.join(f'{v:g}' for v in s.b_values) or '?'}" for s in raw)
                raise StudyError(
                    f"no high b-value DWI found (need a computed high-b series or b ≥ {MIN_HIGH_B:g} s/mm²; "
                    f"{seen or 'no DWI series'})",
                    root,
                    "pass the high-b image explicitly (--hbv FILE or --series hbv=NUMBER)",
                )
            usable.sort(key=lambda s: (-max(s.b_values), _minutes_between(s, t2_series)))
            hbv = usable[0]
            b = max(hbv.b_values)
            chosen["hbv"] = (
                hbv,
                b,
                f"highest b-value (b = {b:g} s/mm²) of multi-b DWI ({', '.join(f'{v:g}' for v in hbv.b_values)}); "
                "no computed high-b series in the study",
            )
    for s in series_list:
        if s.uid in notes or any(s.uid == c[0].uid for c in chosen.values()):
            continue
        notes[s.uid] = {
            "localizer": "not used: localizer/scout",
            "t2": "not used: T2 candidate",
            "adc": "not used: ADC candidate",
            "dwi": "not used: acquired DWI",
            "dwi_calc": "not used: computed DWI",
        }.get(kinds[s.uid], "not used: not a T2, ADC or DWI series")
    return chosen, notes


def _summary(series_list: list[DicomSeries], kinds: dict[str, str]) -> str:
    if not series_list:
        return "no DICOM image series in the folder"
    return "series seen: " + "; ".join(
        f"{s.number} {s.description or '?'} [{kinds[s.uid]}, {s.plane}]" for s in series_list
    )


# --------------------------------------------------------------------------- DICOM entry points
def _scan(root: Path) -> tuple[list[DicomSeries], list[SkippedFile]]:
    root = Path(root)
    if not root.exists():
        raise StudyError("no such file or folder", root)
    if not root.is_dir():
        raise StudyError("is a file, not a study folder", root, "give single files with --t2w/--adc/--hbv")
    series_list, skipped = scan_folder(root)
    series_list = [s for s in series_list if s.modality in ("MR", "")]
    if not series_list:
        what = f"{len(skipped)} file(s), none a DICOM MR image" if skipped else "the folder is empty"
        raise StudyError(
            f"no DICOM MR series found ({what})", root, "point to the folder that holds the study's DICOM files"
        )
    return series_list, skipped


def _report(root: Path, series_list, skipped, chosen, notes) -> StudyReport:
    kinds = {s.uid: _kind(s) for s in series_list}
    roles = {
        role: SeriesSource(
            role=role,
            reason=reason,
            paths=[str(f.path) for f in (series.files_for_b_value(b) if len(series.b_values) > 1 else series.files)],
            series_number=series.number,
            series_description=series.description,
            series_uid=series.uid,
            b_value=b,
        )
        for role, (series, b, reason) in chosen.items()
    }
    role_of = {series.uid: role for role, (series, _, _) in chosen.items()}
    reports = [
        SeriesReport(
            number=s.number,
            description=s.description,
            uid=s.uid,
            plane=s.plane,
            files=len(s.files),
            slices=s.slice_count(),
            in_plane_mm=s.pixel_spacing,
            b_values=s.b_values,
            image_type=s.image_type,
            kind=kinds[s.uid],
            role=role_of.get(s.uid),
            note=roles[role_of[s.uid]].reason if s.uid in role_of else notes.get(s.uid, ""),
        )
        for s in series_list
    ]
    first = chosen["t2w"][0]
    return StudyReport(
        path=str(root),
        patient_id=first.patient_id,
        study_id=first.study_id or first.study_date,
        roles=roles,
        series=reports,
        skipped_files=skipped,
    )


def inspect_study(root: str | Path, overrides: Mapping[str, str | int] | None = None) -> StudyReport:
    """Discover a DICOM study's series and choose the roles, reading headers only.

    Args:
        root: folder holding the study (any nesting).
        overrides: optional ``{role: series number or SeriesInstanceUID}``; always wins.
    """
    root = Path(root)
    series_list, skipped = _scan(root)
    chosen, notes = assign_roles(series_list, root, overrides)
    for series, b_value, _ in chosen.values():
        check_series(series, b_value, MIN_SLICES)
    return _report(root, series_list, skipped, chosen, notes)


def open_dicom_study(root: str | Path, overrides: Mapping[str, str | int] | None = None) -> Case:
    """Open a DICOM study folder as a :class:`Case` (roles chosen as in :func:`inspect_study`)."""
    root = Path(root)
    series_list, skipped = _scan(root)
    chosen, notes = assign_roles(series_list, root, overrides)
    report = _report(root, series_list, skipped, chosen, notes)
    images = {role: read_volume(series, b, MIN_SLICES) for role, (series, b, _) in chosen.items()}
    return make_case(images, report.patient_id, report.study_id, report.roles, report)


# --------------------------------------------------------------------------- files
def _image_suffix(path: Path) -> str | None:
    name = path.name.lower()
    return next((s for s in IMAGE_SUFFIXES if name.endswith(s)), None)


def read_image_file(path: str | Path, role: str) -> sitk.Image:
    """Read one 3D image file for ``role``; a clear error for missing, unsupported or 2D files."""
    path = Path(path)
    if not path.exists():
        raise StudyError(f"{ROLE_NAMES.get(role, role)} file does not exist", path)
    if path.is_dir():
        raise StudyError(f"expected an image file for {role}, got a folder", path, "give a .nii.gz/.mha/.nrrd file")
    if _image_suffix(path) is None:
        raise StudyError(
            f"not a supported image file for {role}",
            path,
            "use .nii, .nii.gz, .mha, .mhd or .nrrd (DICOM: give the study folder)",
        )
    previous = sitk.ProcessObject.GetGlobalWarningDisplay()
    sitk.ProcessObject.SetGlobalWarningDisplay(False)
    try:
        image = sitk.ReadImage(str(path))
    except RuntimeError as error:
        detail = "data file missing" if path.suffix.lower() in (".mhd", ".nhdr") else "unreadable or damaged"
        first_line = str(error).strip().splitlines()[-1][:120] if str(error).strip() else ""
        raise StudyError(f"cannot read {role} image: {detail} ({first_line})", path) from None
    finally:
        sitk.ProcessObject.SetGlobalWarningDisplay(previous)
    if image.GetNumberOfComponentsPerPixel() != 1:
        raise StudyError(
            f"{role} image has {image.GetNumberOfComponentsPerPixel()} components; need a scalar image", path
        )
    if image.GetDimension() == 4 and image.GetSize()[3] == 1:
        image = image[:, :, :, 0]
    if image.GetDimension() != 3 or image.GetSize()[2] < MIN_SLICES:
        raise StudyError(
            f"{role} image is {image.GetDimension()}D with size {image.GetSize()}; "
            f"a 3D volume with at least {MIN_SLICES} slices is needed",
            path,
        )
    return image


def open_files(
    t2w: str | Path,
    adc: str | Path,
    hbv: str | Path,
    patient_id: str | None = None,
    study_id: str = "",
    lesion_mask: str | Path | None = None,
) -> Case:
    """Open one image file per role. Geometry is taken from the files (LPS mm)."""
    paths = {"t2w": Path(t2w), "adc": Path(adc), "hbv": Path(hbv)}
    images = {role: read_image_file(path, role) for role, path in paths.items()}
    sources = {
        role: SeriesSource(role=role, reason=f"given as the {ROLE_NAMES[role]} file", paths=[str(path)])
        for role, path in paths.items()
    }
    if patient_id is None:
        name = paths["t2w"].name
        patient_id = name[: -len(_image_suffix(paths["t2w"]) or "")]
    mask = read_image_file(lesion_mask, "label") if lesion_mask else None
    return make_case(images, patient_id, study_id, sources, None, mask)


def find_picai_cases(folder: str | Path) -> list[tuple[str, str, Path]]:
    """``(patient_id, study_id, directory)`` for every ``<patient>_<study>_t2w.mha`` under ``folder``."""
    folder = Path(folder)
    cases = []
    for t2 in sorted(folder.rglob("*_t2w.mha")):
        stem = t2.name[: -len("_t2w.mha")]
        patient, _, study = stem.rpartition("_")
        if patient:
            cases.append((patient, study, t2.parent))
    return cases


def open_picai_case(folder: str | Path, case_id: str | None = None, labels: str | Path | None = None) -> Case:
    """Open a case stored in the PI-CAI layout ``<patient>_<study>_{t2w,adc,hbv}.mha``.

    Args:
        folder: a patient folder, or an ``images/`` tree with several cases.
        case_id: ``<patient>_<study>``; needed when ``folder`` holds more than one case.
        labels: optional folder of ``<patient>_<study>.nii.gz`` lesion masks (T2 grid).
    """
    folder = Path(folder)
    cases = find_picai_cases(folder)
    if case_id is not None:
        cases = [c for c in cases if f"{c[0]}_{c[1]}" == case_id]
    if not cases:
        raise StudyError(
            "no PI-CAI case found" + (f" with id {case_id}" if case_id else ""),
            folder,
            "expected <patient>_<study>_t2w.mha, _adc.mha and _hbv.mha",
        )
    if len(cases) > 1:
        ids = ", ".join(f"{p}_{s}" for p, s, _ in cases[:5])
        raise StudyError(f"{len(cases)} PI-CAI cases found ({ids}, ...)", folder, "choose one with its case id")
    patient, study, directory = cases[0]
    stem = directory / f"{patient}_{study}"
    paths = {role: Path(f"{stem}_{role}.mha") for role in ROLES}
    for role, path in paths.items():
        if not path.exists():
            raise StudyError(f"PI-CAI case {patient}_{study} has no {ROLE_NAMES[role]} file", path)
    mask_path = None
    if labels is not None:
        candidates = [Path(labels) / f"{patient}_{study}{suffix}" for suffix in (".nii.gz", ".mha", ".nii")]
        mask_path = next((p for p in candidates if p.exists()), None)
    return open_files(paths["t2w"], paths["adc"], paths["hbv"], patient, study, mask_path)


def _looks_like_picai(folder: Path) -> bool:
    return folder.is_dir() and any(True for _ in folder.glob("*_t2w.mha"))


def open_case(
    path: str | Path | None = None,
    overrides: Mapping[str, str | int] | None = None,
    files: Mapping[str, str | Path] | None = None,
) -> Case:
    """Open a study from a DICOM folder, a PI-CAI case folder, or per-role files.

    Args:
        path: DICOM study folder or PI-CAI case folder.
        overrides: ``{role: series number or UID}`` for DICOM studies.
        files: ``{role: file}``; a file given here replaces that role of ``path`` (or, without
            ``path``, all three roles must be given).
    """
    files = {k: v for k, v in (files or {}).items() if v}
    if path is None:
        missing = [r for r in ROLES if r not in files]
        if missing:
            raise StudyError(
                f"missing {', '.join(ROLE_NAMES[r] for r in missing)}",
                hint="give a study folder or all of --t2w, --adc and --hbv",
            )
        return open_files(files["t2w"], files["adc"], files["hbv"])
    path = Path(path)
    if path.is_file():
        raise StudyError("is a single file", path, "give a study folder, or --t2w/--adc/--hbv files")
    case = open_picai_case(path) if _looks_like_picai(path) else open_dicom_study(path, overrides)
    for role, file in files.items():
        setattr(case, role, read_image_file(file, role))
        case.sources[role] = SeriesSource(role=role, reason=f"given as the {ROLE_NAMES[role]} file", paths=[str(file)])
    _check_case(case)
    return case


# --------------------------------------------------------------------------- checks
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


def _check_case(case: Case) -> None:
    """Refuse cases whose sequences cannot belong together (no overlap with the T2 volume)."""
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
    _check_case(case)
    return case

"""The series-role rules: which series of a study is the T2, the ADC map and the high-b DWI, and why.

The rules read a :class:`SeriesDescriptor` — the few facts about a series they need — so they
decide the same way wherever the series come from: DICOM headers in a study folder
(:meth:`~LesionAILib.studies.dicom_series.DicomSeries.descriptor`) or volume nodes in a Slicer
scene (``LesionAILogic.roles``). Deterministic; explicit overrides always win.

* **t2w** — an axial (slice normal closest to the z axis), non-localizer T2-weighted series
  (description mentions T2, or a spin-echo with an echo train). Among several: TSE/FSE first,
  then the finest in-plane spacing, then the one acquired closest in time to the diffusion
  series (least motion between T2 and DWI; a repeated T2 is usually the better one), then the
  highest series number.
* **adc** — ImageType contains ADC, or the description mentions ADC/apparent diffusion; axial.
  Among several: closest in time to the chosen T2, then lowest series number.
* **hbv** — a computed high b-value series (ImageType/description CALC_BVAL, "calc"; or a
  single-b series whose description names the high-b image: "hbv", "high-b", "b1400"), the
  highest b first; otherwise the highest b ≥ 800 s/mm² of a multi-b DWI series.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from LesionAILib.errors import StudyError

ROLES = ("t2w", "adc", "hbv")
ROLE_NAMES = {"t2w": "axial T2", "adc": "ADC", "hbv": "high-b DWI"}
MIN_HIGH_B = 800.0  # s/mm²; below it a diffusion image does not show restricted diffusion well enough

# Series-description patterns
T2_PATTERN = re.compile(r"t2", re.IGNORECASE)
TSE_PATTERN = re.compile(r"tse|fse|haste|space|blade|propeller|frfse", re.IGNORECASE)
ADC_PATTERN = re.compile(r"adc|apparent", re.IGNORECASE)
CALC_PATTERN = re.compile(r"calc|comp(?:uted)?[_ ]?b|synth", re.IGNORECASE)
DWI_PATTERN = re.compile(r"diff|dwi|ep2d|resolve|trace", re.IGNORECASE)
LOCALIZER_PATTERN = re.compile(r"locali[sz]er|scout|survey|\bloc\b|_loc|loc[ _]", re.IGNORECASE)
# A name for the high-b image itself: PI-CAI's "_hbv", "high-b", "b1400"
HIGH_B_NAME_PATTERN = re.compile(r"hbv|high[-_ ]?b(?![a-z])|(?<![a-z])b[-_ ]?\d{3,4}(?!\d)", re.IGNORECASE)
_B_VALUE_IN_TEXT = re.compile(r"(?<![a-z])b[-_ ]?(\d{3,4})(?!\d)", re.IGNORECASE)

_UNUSED_NOTES = {
    "localizer": "not used: localizer/scout",
    "t2": "not used: T2 candidate",
    "adc": "not used: ADC candidate",
    "dwi": "not used: acquired DWI",
    "dwi_calc": "not used: computed DWI",
}


# --------------------------------------------------------------------------- what the rules read
@dataclass(frozen=True)
class SeriesDescriptor:
    """The facts about one series that the role rules read.

    Attributes:
        key: tells this series from the others offered — its SeriesInstanceUID in a study folder, a
            volume node's ID in a Slicer scene. Overrides may name it; notes are keyed by it.
        number: SeriesNumber, or None when unknown.
        description: SeriesDescription (or ProtocolName, or a volume's name).
        sequence_name, scanning_sequence: DICOM SequenceName and ScanningSequence ("" when unknown).
        echo_train_length: DICOM EchoTrainLength, or None.
        image_type: ImageType values in upper case (ORIGINAL, DIFFUSION, ADC, CALC_BVAL, ...).
        b_values: distinct diffusion b-values, s/mm², ascending (empty: none or unknown).
        plane: ``axial``, ``coronal``, ``sagittal`` (the LPS axis the slice normal is closest to),
            ``mixed`` (slices in several orientations: a localizer) or ``unknown``.
        in_plane_mm: pixel spacing (row, column), mm, or None.
        slices: distinct slice positions (for one b-value of a multi-b series).
        acquisition_seconds: earliest acquisition time, seconds since midnight, or None.
        uid: SeriesInstanceUID ("" when unknown); overrides may name it.
    """

    key: str
    number: int | None
    description: str
    sequence_name: str = ""
    scanning_sequence: str = ""
    echo_train_length: int | None = None
    image_type: tuple[str, ...] = ()
    b_values: tuple[float, ...] = ()
    plane: str = "unknown"
    in_plane_mm: tuple[float, float] | None = None
    slices: int = 0
    acquisition_seconds: float | None = None
    uid: str = ""

    @property
    def label(self) -> str:
        """Human name: ``series 4 (t2_tse_tra)``."""
        number = "?" if self.number is None else str(self.number)
        return f"series {number} ({self.description or 'no description'})"


def plane_of_normal(normal_lps: Sequence[float]) -> str:
    """``sagittal``, ``coronal`` or ``axial``: the LPS axis a slice normal (any length) is closest to."""
    return ("sagittal", "coronal", "axial")[int(np.argmax(np.abs(np.asarray(normal_lps, dtype=float))))]


def b_values_in_text(text: str) -> tuple[float, ...]:
    """b-values (s/mm²) written in a name as ``b1400``, ``b-800`` or ``B 1000``, ascending."""
    return tuple(sorted({float(b) for b in _B_VALUE_IN_TEXT.findall(text)}))


def series_kind(series: SeriesDescriptor) -> str:
    """What a series is, from its facts: ``t2``, ``adc``, ``dwi_calc``, ``dwi``, ``localizer`` or ``other``."""
    text = f"{series.description} {series.sequence_name}"
    image_type = set(series.image_type)
    if "LOCALIZER" in image_type or LOCALIZER_PATTERN.search(series.description) or series.plane == "mixed":
        return "localizer"
    if "ADC" in image_type or ADC_PATTERN.search(series.description):
        return "adc"
    is_diffusion = "DIFFUSION" in image_type or "TRACEW" in image_type or bool(DWI_PATTERN.search(text))
    if is_diffusion and ("CALC_BVAL" in image_type or CALC_PATTERN.search(series.description)):
        return "dwi_calc"
    # a series with several b-values is acquired, whatever its name says
    if len(series.b_values) <= 1 and HIGH_B_NAME_PATTERN.search(series.description):
        return "dwi_calc"
    if is_diffusion or len(series.b_values) > 1:
        return "dwi"
    spin_echo_train = "SE" in series.scanning_sequence and (series.echo_train_length or 0) > 1
    if T2_PATTERN.search(series.description) or (spin_echo_train and TSE_PATTERN.search(text)):
        return "t2"
    return "other"


# --------------------------------------------------------------------------- what the rules decide
@dataclass(frozen=True)
class RoleChoice:
    """The series chosen for one role, the b-value read from it (high-b only) and why."""

    series: SeriesDescriptor
    b_value: float | None
    reason: str


@dataclass
class RoleDecision:
    """Result of :func:`assign_roles`.

    Attributes:
        chosen: ``{role: RoleChoice}`` for t2w, adc and hbv.
        notes: ``{key: why the series was not chosen}`` for every series not chosen.
        kinds: ``{key: series_kind}`` for every series offered.
    """

    chosen: dict[str, RoleChoice]
    notes: dict[str, str]
    kinds: dict[str, str]


class MissingRoleError(StudyError):
    """No series offered can fill ``role``; ``detail`` lists what was seen, in the rules' terms."""

    def __init__(self, role: str, headline: str, detail: str, path: str | Path | None, hint: str):
        self.role = role
        self.detail = detail
        super().__init__(f"{headline} ({detail})", path, hint)


# --------------------------------------------------------------------------- helpers of the rules
def _in_plane(series: SeriesDescriptor) -> float:
    spacing = series.in_plane_mm
    return float(np.mean(spacing)) if spacing else float("inf")


def _minutes_between(a: SeriesDescriptor, b: SeriesDescriptor | None) -> float:
    if b is None or a.acquisition_seconds is None or b.acquisition_seconds is None:
        return float("inf")
    return abs(a.acquisition_seconds - b.acquisition_seconds) / 60.0


def _minutes_text(a: SeriesDescriptor, b: SeriesDescriptor | None) -> str:
    minutes = _minutes_between(a, b)
    return f"{minutes:.1f} min" if math.isfinite(minutes) else "acquisition time not known"


def _from_the_dwi(a: SeriesDescriptor, dwi: SeriesDescriptor | None) -> str:
    minutes = _minutes_between(a, dwi)
    return f"acquired {minutes:.1f} min from the DWI" if math.isfinite(minutes) else "(acquisition time not known)"


def _b_list(series: SeriesDescriptor) -> str:
    return ", ".join(f"{v:g}" for v in series.b_values) or "?"


def _checked_overrides(overrides: Mapping[str, str | int] | None) -> dict[str, str | int]:
    given = {role: value for role, value in (overrides or {}).items() if value not in (None, "")}
    unknown = set(given) - set(ROLES)
    if unknown:
        raise StudyError(f"unknown role(s) {', '.join(sorted(unknown))} in overrides; roles are {', '.join(ROLES)}")
    return given


def _axial_check(series: SeriesDescriptor, role: str, where: str | Path | None) -> None:
    if series.plane == "mixed":
        raise StudyError(
            f"{series.label} has slices in several planes (a localizer/scout), not an axial {ROLE_NAMES[role]} volume",
            where,
            "choose the axial volume series",
        )
    if series.plane != "axial":
        raise StudyError(
            f"{series.label} is {series.plane}; LesionAI needs an axial {ROLE_NAMES[role]} series",
            where,
            "choose the axial (transverse) series",
        )


@dataclass
class _Offered:
    """The series offered to the rules (by series number), their kinds, the notes so far, and the folder errors name."""

    series: list[SeriesDescriptor]
    kinds: dict[str, str]
    notes: dict[str, str]
    where: str | Path | None

    def axial(self, kind: str) -> list[SeriesDescriptor]:
        return [s for s in self.series if self.kinds[s.key] == kind and s.plane == "axial"]

    def note(self, series: Iterable[SeriesDescriptor], note: str) -> None:
        """Say why each of ``series`` was not chosen."""
        self.notes.update(dict.fromkeys((s.key for s in series), note))

    def missing(self, role: str, headline: str, detail: str | None = None) -> MissingRoleError:
        """The error for a role nothing fills; ``detail`` defaults to every series with its kind and plane."""
        if detail is None:
            seen = "; ".join(f"{s.number} {s.description or '?'} [{self.kinds[s.key]}, {s.plane}]" for s in self.series)
            detail = f"series seen: {seen}" if seen else "no series offered"
        explicitly = {"t2w": "the T2", "adc": "the ADC map", "hbv": "the high-b image"}[role]
        hint = f"pass {explicitly} explicitly (--{role} FILE or --series {role}=NUMBER)"
        return MissingRoleError(role, headline, detail, self.where, hint)


def _overridden(offered: _Offered, role: str, value: str | int) -> RoleChoice:
    """The series an override names (by key, SeriesInstanceUID or series number), checked to be axial."""
    text = str(value).strip()
    matches = [s for s in offered.series if text in (s.key, s.uid) or (s.number is not None and str(s.number) == text)]
    if not matches:
        known = ", ".join(s.label for s in offered.series) or "none"
        raise StudyError(f"no series {text!r} for {role} (series found: {known})", offered.where)
    if len(matches) > 1:
        raise StudyError(f"series number {text} is ambiguous for {role}; give the SeriesInstanceUID", offered.where)
    series = matches[0]
    _axial_check(series, role, offered.where)
    b_value = max(series.b_values) if role == "hbv" and series.b_values else None
    return RoleChoice(series, b_value, f"explicit override ({value})" + (f", b = {b_value:g} s/mm²" if b_value else ""))


# --------------------------------------------------------------------------- one rule per role
def _choose_t2(offered: _Offered, diffusion_reference: SeriesDescriptor | None) -> RoleChoice:
    for s in offered.series:
        if offered.kinds[s.key] == "t2" and s.plane != "axial":
            offered.notes[s.key] = f"not used: {s.plane} T2 (LesionAI reads the axial T2)"
    candidates = offered.axial("t2")
    if not candidates:
        raise offered.missing("t2w", "no axial T2 series found")

    def t2_rank(s: SeriesDescriptor) -> tuple:
        tse = bool(TSE_PATTERN.search(f"{s.description} {s.sequence_name}"))
        return (not tse, round(_in_plane(s), 3), _minutes_between(s, diffusion_reference), -(s.number or 0))

    t2, *others = sorted(candidates, key=t2_rank)
    reason = (
        f"axial T2 ('{t2.description}', sequence '{t2.sequence_name or '?'}'), "
        f"{_in_plane(t2):.2f} mm in-plane, {t2.slices} slices"
    )
    if others:
        timings = ", ".join(f"{s.label} {_from_the_dwi(s, diffusion_reference)}" for s in others)
        reason += (
            f"; chosen among {len(candidates)} axial T2 series by rule (TSE, finest in-plane spacing, "
            f"acquired closest to the DWI: {_minutes_text(t2, diffusion_reference)}, "
            f"then highest series number) over {timings}"
        )
    offered.note(others, f"axial T2 candidate not chosen: {t2.label} ranks first by the T2 rule")
    return RoleChoice(t2, None, reason)


def _choose_adc(offered: _Offered, t2: SeriesDescriptor) -> RoleChoice:
    candidates = offered.axial("adc")
    if not candidates:
        raise offered.missing("adc", "no ADC series found")
    adc, *others = sorted(candidates, key=lambda s: (_minutes_between(s, t2), s.number or 0))
    tag = "ImageType ADC" if "ADC" in adc.image_type else f"description '{adc.description}'"
    reason = f"ADC map ({tag}), axial, {adc.slices} slices"
    if others:
        reason += f"; closest in time to the T2 of {len(candidates)} ADC series"
    offered.note(others, f"ADC candidate not chosen: {adc.label} was acquired closer to the T2")
    return RoleChoice(adc, None, reason)


def _choose_computed_hbv(offered: _Offered, computed: list[SeriesDescriptor], t2: SeriesDescriptor) -> RoleChoice:
    hbv, *others = sorted(computed, key=lambda s: (-(max(s.b_values) if s.b_values else 0), _minutes_between(s, t2)))
    b = max(hbv.b_values) if hbv.b_values else None
    tag = "ImageType CALC_BVAL" if "CALC_BVAL" in hbv.image_type else f"description '{hbv.description}'"
    reason = f"computed high b-value series ({tag})" + (f", b = {b:g} s/mm²" if b else ", b-value not recorded")
    for s in offered.axial("dwi"):
        offered.notes[s.key] = (
            f"not used: acquired DWI (b = {_b_list(s)} s/mm²); the computed high-b series is preferred"
        )
    offered.note(others, f"computed DWI not chosen: {hbv.label} has the higher b-value")
    return RoleChoice(hbv, b, reason)


def _choose_acquired_hbv(offered: _Offered, t2: SeriesDescriptor) -> RoleChoice:
    acquired = offered.axial("dwi")
    usable = [s for s in acquired if s.b_values and max(s.b_values) >= MIN_HIGH_B]
    if not usable:
        seen = "; ".join(f"{s.label}: b = {_b_list(s)}" for s in acquired)
        detail = f"need a computed high-b series or b ≥ {MIN_HIGH_B:g} s/mm²; {seen or 'no DWI series'}"
        raise offered.missing("hbv", "no high b-value DWI found", detail)
    hbv = min(usable, key=lambda s: (-max(s.b_values), _minutes_between(s, t2)))
    b = max(hbv.b_values)
    reason = (
        f"highest b-value (b = {b:g} s/mm²) of multi-b DWI ({_b_list(hbv)}); no computed high-b series in the study"
    )
    return RoleChoice(hbv, b, reason)


def _choose_hbv(offered: _Offered, t2: SeriesDescriptor) -> RoleChoice:
    computed = offered.axial("dwi_calc")
    return _choose_computed_hbv(offered, computed, t2) if computed else _choose_acquired_hbv(offered, t2)


def _note_unused(offered: _Offered, chosen: Mapping[str, RoleChoice]) -> None:
    """A note for every series neither chosen nor already explained."""
    chosen_keys = {choice.series.key for choice in chosen.values()}
    for s in offered.series:
        if s.key not in offered.notes and s.key not in chosen_keys:
            offered.notes[s.key] = _UNUSED_NOTES.get(offered.kinds[s.key], "not used: not a T2, ADC or DWI series")


# --------------------------------------------------------------------------- entry point
def assign_roles(
    series: Iterable[SeriesDescriptor],
    where: str | Path | None = None,
    overrides: Mapping[str, str | int] | None = None,
) -> RoleDecision:
    """Choose a series (and b-value) for each role by the rules in this module's docstring.

    Args:
        series: every series offered; the order does not matter (they are taken by series number).
        where: the study folder that errors name (``None`` outside a folder, e.g. a Slicer scene).
        overrides: ``{role: key, SeriesInstanceUID or series number}``; always wins, but must be axial.

    Raises:
        MissingRoleError: no series can fill a role (the message lists what was seen and the fix).
        StudyError: an override names no series, several series, or a non-axial one.
    """
    series_list = sorted(series, key=lambda s: (s.number is None, s.number or 0, s.key))
    overrides = _checked_overrides(overrides)
    offered = _Offered(series_list, {s.key: series_kind(s) for s in series_list}, {}, where)
    diffusion = [s for s in series_list if offered.kinds[s.key] in ("adc", "dwi_calc", "dwi")]
    chosen: dict[str, RoleChoice] = {}
    for role in (r for r in ROLES if r in overrides):
        chosen[role] = _overridden(offered, role, overrides[role])
    if "t2w" not in chosen:
        chosen["t2w"] = _choose_t2(offered, diffusion[0] if diffusion else None)
    # the ADC and high-b rules rank by acquisition time relative to the chosen T2
    if "adc" not in chosen:
        chosen["adc"] = _choose_adc(offered, chosen["t2w"].series)
    if "hbv" not in chosen:
        chosen["hbv"] = _choose_hbv(offered, chosen["t2w"].series)
    _note_unused(offered, chosen)
    return RoleDecision({role: chosen[role] for role in ROLES}, offered.notes, offered.kinds)

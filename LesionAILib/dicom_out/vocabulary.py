"""What LesionAI's DICOM objects say, once: equipment, series numbers, coded concepts, the research-use notice.

Coded concepts come from DICOM's own vocabularies (DCM, SNOMED CT, UCUM) where one exists. The ISUP
grade group has no standard concept in DICOM's tables, so it is a private code (coding scheme
``99LESIONAI``, declared in each object's Coding Scheme Identification Sequence), as PS3.16 allows.
Text in DICOM value representations without a character set is ASCII: :func:`ascii_text`.
"""

from __future__ import annotations

import unicodedata

import highdicom as hd
from highdicom.coding_schemes import CodingSchemeIdentificationItem
from pydicom.sr.codedict import codes

from LesionAILib import __version__
from LesionAILib.inference.results import StoredResult

MANUFACTURER = "LesionAI"
SOFTWARE_VERSIONS = f"LesionAILib {__version__}"
DEVICE_SERIAL_NUMBER = "none"  # software: no device serial; the attribute is required
RESEARCH_NOTICE = "research use only, not for clinical use"
# high numbers, so they do not collide with the scanner's series in the study
SEGMENTATION_SERIES_NUMBER = 9901
PARAMETRIC_MAP_SERIES_NUMBER = 9902
REPORT_SERIES_NUMBER = 9903

PRIVATE_SCHEME = "99LESIONAI"
GRADE_GROUP = hd.sr.CodedConcept("ISUPGradeGroup", PRIVATE_SCHEME, "ISUP grade group (predicted)")
PROBABILITY = codes.DCM.ProbabilityOfCancer  # of clinically significant cancer (ISUP grade group >= 2)
VOLUME = codes.SCT.Volume
MILLILITRE = hd.sr.CodedConcept("mL", "UCUM", "mL")
NO_UNITS = codes.UCUM.NoUnits
CANDIDATE_CATEGORY = codes.SCT.MorphologicallyAbnormalStructure
CANDIDATE_TYPE = codes.SCT.Lesion
GLAND_CATEGORY = codes.SCT.AnatomicalStructure
GLAND_TYPE = codes.SCT.Prostate
PROCEDURE = codes.SCT.MultiparametricMRIOfProstate
# ProstateX / PI-RADS zone names -> SNOMED CT structures (other zones: the prostate as a whole)
ZONES = {
    "PZ": codes.SCT.PeripheralZoneOfTheProstate,
    "TZ": codes.SCT.TransitionZoneOfTheProstate,
    "AS": codes.SCT.AnteriorFibromuscularStromaOfProstate,
}


def new_instance() -> dict:
    """The arguments every new highdicom image object takes alike: new series and instance UIDs, the equipment."""
    return {
        "series_instance_uid": hd.UID(),
        "sop_instance_uid": hd.UID(),
        "instance_number": 1,
        "manufacturer": MANUFACTURER,
        "manufacturer_model_name": MANUFACTURER,
        "software_versions": SOFTWARE_VERSIONS,
        "device_serial_number": DEVICE_SERIAL_NUMBER,
    }


def ascii_text(text: str, limit: int | None = None) -> str:
    """``text`` in ASCII (dashes for en/em dashes, accents dropped), cut to ``limit`` characters (LO: 64)."""
    text = text.replace("—", "-").replace("–", "-").replace("≥", ">=").replace("≤", "<=")
    text = unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode("ascii")
    return text if limit is None or len(text) <= limit else text[: limit - 3].rstrip() + "..."


def model_name(stored: StoredResult) -> str:
    """The model's own name (the result's name for people carries the model's notice after it, in parentheses)."""
    return stored.model_name.removesuffix(f" ({stored.model_notice})") if stored.model_notice else stored.model_name


def model_version(stored: StoredResult) -> str:
    """The model's version as DICOM records it: the first 16 hex digits of its file's sha256 (exact weights)."""
    return f"sha256:{stored.model_sha256[:16]}" if stored.model_sha256 else "unknown"


def notice(stored: StoredResult) -> str:
    """The research-use notice every object carries, with the model's own notice (e.g. the demo model's)."""
    model_notice = f"; {stored.model_notice}" if stored.model_notice else ""
    return ascii_text(f"LesionAI result, {RESEARCH_NOTICE}{model_notice}")


def algorithm_identification(stored: StoredResult) -> hd.AlgorithmIdentificationSequence:
    """The model as a SEG segment's Segmentation Algorithm Identification."""
    return hd.AlgorithmIdentificationSequence(
        name=ascii_text(model_name(stored), 64),
        family=codes.cid7162.ArtificialIntelligence,
        version=model_version(stored),
        source=MANUFACTURER,
    )


def coding_scheme_identification() -> CodingSchemeIdentificationItem:
    """The private coding scheme's declaration (Coding Scheme Identification Sequence item)."""
    return CodingSchemeIdentificationItem(
        designator=PRIVATE_SCHEME,
        name="LesionAI codes",
        responsible_organization=MANUFACTURER,
    )

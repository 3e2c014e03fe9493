"""Find the studies under a folder (DICOM study folders and PI-CAI cases) and the roles each would get.

:func:`find_studies` walks a folder once for DICOM headers (``scan_folder``) and once for PI-CAI
files (``*_t2w.mha``) and returns one :class:`FoundStudy` per study, with the T2/ADC/high-b series
the engine's role rules choose (:func:`~LesionAILib.studies.dicom_study.inspect_study`, headers only)
or the one-line reason it cannot be opened. Symbolic links to folders are not followed, so nothing
outside the folder is listed. A DICOM study folder is the parent of a folder holding the files of one
series (``<study>/<date>/<series>/*.dcm`` gives ``<study>/<date>``), or a folder holding the files of
several series side by side; so two copies of one study in different places are listed apart.
"""

from __future__ import annotations

import dataclasses
import os
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path

from LesionAILib.errors import LesionAIError
from LesionAILib.studies.dicom_series import scan_folder
from LesionAILib.studies.dicom_study import inspect_study
from LesionAILib.studies.picai import find_picai_cases
from LesionAILib.studies.roles import ROLES


@dataclass
class FoundStudy:
    """One study under the searched folder.

    Attributes:
        path: the study folder relative to the searched folder (POSIX separators; ``"."`` for the folder itself).
        kind: ``"dicom"`` or ``"picai"``.
        name: what a person calls it (patient id and study, or the PI-CAI case id).
        roles: ``{role: "series 4 (t2_tse_tra)"}`` or ``{role: "10000_1000000_t2w.mha"}``; empty when ``problem``.
        reasons: ``{role: why this series}`` (DICOM).
        files: ``{role: file relative to the searched folder}`` (PI-CAI; empty for DICOM).
        problem: the one-line reason the study cannot be opened ("" when it can).
    """

    path: str
    kind: str
    name: str
    roles: dict[str, str] = field(default_factory=dict)
    reasons: dict[str, str] = field(default_factory=dict)
    files: dict[str, str] = field(default_factory=dict)
    problem: str = ""

    @property
    def key(self) -> str:
        """A unique name of the study under the searched folder (the folder, plus the case id for PI-CAI)."""
        return f"{self.path}#{self.name}" if self.kind == "picai" else self.path

    def to_dict(self) -> dict:
        return {"key": self.key, **dataclasses.asdict(self)}


def _relative(path: Path, root: Path) -> str:
    return Path(os.path.relpath(path, root)).as_posix()


def _dicom_study_folders(root: Path) -> list[Path]:
    """The study folders of the DICOM files under ``root`` (see the module docstring)."""
    series_list, _ = scan_folder(root)
    series_in: dict[Path, set[str]] = defaultdict(set)  # folder -> UIDs of the series with files directly in it
    for series in series_list:
        for file in series.files:
            series_in[file.path.parent].add(series.uid)
    folders = {
        folder if len(uids) > 1 or folder == root else folder.parent for folder, uids in series_in.items()
    }
    return sorted(folders)


def _dicom_study(folder: Path, root: Path) -> FoundStudy:
    found = FoundStudy(path=_relative(folder, root), kind="dicom", name=_relative(folder, root))
    try:
        report = inspect_study(folder)
    except LesionAIError as error:
        found.problem = str(error)
        return found
    found.name = " ".join(part for part in (report.patient_id, report.study_id) if part) or found.path
    for role in ROLES:
        source = report.roles[role]
        number = "?" if source.series_number is None else source.series_number
        found.roles[role] = f"series {number} ({source.series_description or 'no description'})"
        found.reasons[role] = source.reason
    return found


def _picai_studies(root: Path) -> list[FoundStudy]:
    studies = []
    for patient, study, directory in find_picai_cases(root):
        case_id = f"{patient}_{study}"
        found = FoundStudy(path=_relative(directory, root), kind="picai", name=case_id)
        for role in ROLES:
            path = directory / f"{case_id}_{role}.mha"
            if not path.is_file():
                found.problem = f"{path}: PI-CAI case {case_id} has no {role} file"
                break
            found.roles[role] = path.name
            found.files[role] = _relative(path, root)
        if found.problem:
            found.roles, found.files = {}, {}
        studies.append(found)
    return studies


def find_studies(root: str | Path) -> list[FoundStudy]:
    """Every DICOM study and PI-CAI case under ``root``, sorted by path (see the module docstring).

    Raises :class:`LesionAIError` when ``root`` is not a folder.
    """
    root = Path(root)
    if not root.is_dir():
        raise LesionAIError("is not a folder", root, "give the folder that holds the studies")
    studies = [_dicom_study(folder, root) for folder in _dicom_study_folders(root)]
    studies += _picai_studies(root)
    return sorted(studies, key=lambda found: (found.path, found.name))

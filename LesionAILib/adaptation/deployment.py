"""The deployment dataset: a site's own cases, outlined and graded by its annotators.

The Slicer module writes here (one case at a time, atomically); fine-tuning and uncertainty
ordering read from here. Format (version 1)::

    <dataset>/
      manifest.json                  # {"format": "lesionai-deployment", "version": 1, "site": ...,
                                     #  "cases": {case_id: {"annotated": bool, "annotator", "time",
                                     #            "lesions": n, "sha256": {file: digest}}}}
      cases/<case_id>/
        t2w.nii.gz adc.nii.gz hbv.nii.gz   # the three sequences, native grids (ADC in µm²/s)
        lesions.nii.gz                     # lesion instance mask on the T2 grid (0 background, 1..n)
        annotation.json                    # {"case_id", "annotator", "time" (UTC ISO), "site",
                                           #  "lesions": [{"id", "grade_group" (0–5), "zone", "comment"}],
                                           #  "source": {role: where the image came from}}

An unannotated case (pool for active learning) has the three images and an ``annotation.json``
with ``"lesions": null`` and no mask.

Writing: a case is assembled in a hidden temporary folder beside ``cases/<case_id>`` and renamed
into place; a previous version of the case is kept as ``cases/.<case_id>.previous`` until the new
one is in place; the manifest is rewritten atomically last. A crash at any moment leaves either
the old or the new case, never a mixture. Reading: :func:`read_deployment` checks every case
(files present, checksums equal the manifest's, mask on the T2 grid, grades known) and reports
incomplete or corrupt cases instead of using them.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import SimpleITK as sitk

from LesionAILib.atomic_io import write_json_atomic
from LesionAILib.errors import LesionAIError, StudyError
from LesionAILib.geometry import Grid
from LesionAILib.studies.roles import ROLES
from LesionAILib.training.cohorts import CaseRecord, LesionRecord

FORMAT = "lesionai-deployment"
VERSION = 1


@dataclass
class LesionAnnotation:
    """One outlined lesion: its id in the mask, ISUP grade group (0 = benign), zone, free text."""

    id: int
    grade_group: int
    zone: str = ""
    comment: str = ""

    def __post_init__(self):
        if not 0 <= int(self.grade_group) <= 5:
            raise LesionAIError(f"lesion {self.id}: grade group must be 0–5, got {self.grade_group}")


@dataclass
class DeploymentCase:
    """A case read back from the dataset."""

    case_id: str
    folder: str
    annotated: bool
    annotator: str = ""
    time: str = ""
    lesions: list[LesionAnnotation] = field(default_factory=list)

    def record(self) -> CaseRecord:
        """As a training record (the same path the cohort reader produces)."""
        images = {role: str(Path(self.folder) / f"{role}.nii.gz") for role in ROLES}
        instances = str(Path(self.folder) / "lesions.nii.gz") if self.annotated else None
        lesions = [LesionRecord(l.id, l.grade_group, l.zone) for l in self.lesions]
        return CaseRecord(
            self.case_id,
            self.case_id,
            "",
            images,
            site="deployment",
            instances=instances,
            lesions=lesions,
            case_cspca=any(l.grade_group >= 2 for l in self.lesions) if self.annotated else None,
        )


@dataclass
class DeploymentDataset:
    root: str
    cases: list[DeploymentCase]
    problems: list[str]

    @property
    def annotated(self) -> list[DeploymentCase]:
        return [c for c in self.cases if c.annotated]

    @property
    def unannotated(self) -> list[DeploymentCase]:
        return [c for c in self.cases if not c.annotated]

    def summary(self) -> dict:
        grades = [l.grade_group for c in self.annotated for l in c.lesions]
        return {
            "root": self.root,
            "cases": len(self.cases),
            "annotated": len(self.annotated),
            "unannotated": len(self.unannotated),
            "lesions": len(grades),
            "csPCa_lesions": sum(g >= 2 for g in grades),
            "problems": len(self.problems),
        }


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _manifest_path(root: Path) -> Path:
    return root / "manifest.json"


def _read_manifest(root: Path) -> dict:
    path = _manifest_path(root)
    if not path.exists():
        return {"format": FORMAT, "version": VERSION, "site": "", "cases": {}}
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as error:
        raise StudyError(
            f"deployment manifest is damaged (line {error.lineno})", path, "restore it from a backup"
        ) from None
    if manifest.get("format") != FORMAT:
        raise StudyError("not a LesionAI deployment dataset manifest", path)
    if int(manifest.get("version", 0)) > VERSION:
        raise StudyError(f"deployment format version {manifest['version']} is newer than this LesionAI", path)
    return manifest


def create_dataset(root: str | Path, site: str = "") -> Path:
    """Create an empty deployment dataset (no-op if one exists)."""
    root = Path(root)
    (root / "cases").mkdir(parents=True, exist_ok=True)
    if not _manifest_path(root).exists():
        write_json_atomic(_manifest_path(root), {"format": FORMAT, "version": VERSION, "site": site, "cases": {}})
    return root


def save_case(
    root: str | Path,
    case_id: str,
    images: Mapping[str, sitk.Image],
    lesion_mask: sitk.Image | None = None,
    lesions: Sequence[LesionAnnotation] | None = None,
    annotator: str = "",
    source: Mapping[str, str] | None = None,
) -> Path:
    """Write (or replace) one case atomically; returns its folder.

    Args:
        root: the dataset folder (created if needed).
        case_id: letters, digits, ``-``, ``_`` and ``.``.
        images: ``{"t2w", "adc", "hbv"}`` SimpleITK images (native grids, ADC in µm²/s).
        lesion_mask: instance mask on the T2 grid (ids 1..n), or ``None`` for an unannotated case.
        lesions: one :class:`LesionAnnotation` per id in the mask (required with a mask).
        annotator: who outlined it; stored with the UTC time.
        source: where each image came from (DICOM series, file), for the record.
    """
    root = create_dataset(root)
    if not case_id or any(not (ch.isalnum() or ch in "-_.") for ch in case_id) or case_id.startswith("."):
        raise LesionAIError(f"case id {case_id!r} may only use letters, digits, '-', '_' and '.'")
    missing = [role for role in ROLES if role not in images]
    if missing:
        raise LesionAIError(f"case {case_id}: missing image(s) {', '.join(missing)}")
    annotated = lesion_mask is not None
    lesions = list(lesions or [])
    if annotated:
        mask_grid, t2_grid = Grid.from_image(lesion_mask), Grid.from_image(images["t2w"])
        if not mask_grid.same_as(t2_grid, 0.25 * min(t2_grid.spacing)):
            raise LesionAIError(f"case {case_id}: the lesion mask is not on the T2 grid")
        ids = sorted(int(v) for v in np.unique(sitk.GetArrayViewFromImage(lesion_mask)) if v > 0)
        graded = sorted(l.id for l in lesions)
        if ids != graded:
            raise LesionAIError(
                f"case {case_id}: mask lesion ids {ids} but grades given for {graded}; grade every lesion"
            )
    elif lesions:
        raise LesionAIError(f"case {case_id}: lesions given without a mask")
    cases = root / "cases"
    final = cases / case_id
    staging = Path(tempfile.mkdtemp(prefix=f".{case_id}.", suffix=".tmp", dir=cases))
    try:
        for role in ROLES:
            sitk.WriteImage(images[role], str(staging / f"{role}.nii.gz"), True)
        if annotated:
            mask = sitk.Cast(lesion_mask, sitk.sitkUInt8)
            mask.CopyInformation(images["t2w"])
            sitk.WriteImage(mask, str(staging / "lesions.nii.gz"), True)
        now = datetime.now(timezone.utc).isoformat(timespec="seconds")
        annotation = {
            "case_id": case_id,
            "annotator": annotator,
            "time": now,
            "site": _read_manifest(root).get("site", ""),
            "lesions": [l.__dict__ for l in lesions] if annotated else None,
            "source": dict(source or {}),
        }
        (staging / "annotation.json").write_text(json.dumps(annotation, indent=2) + "\n", encoding="utf-8")
        digests = {p.name: _sha256(p) for p in sorted(staging.iterdir())}
        previous = cases / f".{case_id}.previous"
        if previous.exists():
            shutil.rmtree(previous)
        if final.exists():
            os.replace(final, previous)
        os.replace(staging, final)
        manifest = _read_manifest(root)
        manifest["cases"][case_id] = {
            "annotated": annotated,
            "annotator": annotator,
            "time": now,
            "lesions": len(lesions),
            "sha256": digests,
        }
        write_json_atomic(_manifest_path(root), manifest)
        if previous.exists():
            shutil.rmtree(previous)
    finally:
        if staging.exists():
            shutil.rmtree(staging)
    return final


def read_deployment(root: str | Path) -> DeploymentDataset:
    """Read every case; incomplete or corrupt ones are listed in ``problems`` and skipped."""
    root = Path(root)
    if not root.is_dir():
        raise StudyError("deployment dataset folder does not exist", root)
    manifest = _read_manifest(root)
    cases, problems = [], []
    listed = manifest.get("cases", {})
    on_disk = (
        {p.name for p in (root / "cases").iterdir() if p.is_dir() and not p.name.startswith(".")}
        if (root / "cases").exists()
        else set()
    )
    for case_id in sorted(on_disk - set(listed)):
        problems.append(f"{case_id}: folder present but not in the manifest (an interrupted save?); skipped")
    for case_id, entry in sorted(listed.items()):
        folder = root / "cases" / case_id
        try:
            cases.append(_check_case(folder, case_id, entry))
        except LesionAIError as error:
            problems.append(f"{case_id}: {error.message}; skipped")
    return DeploymentDataset(str(root), cases, problems)


def _check_case(folder: Path, case_id: str, entry: dict) -> DeploymentCase:
    if not folder.is_dir():
        raise LesionAIError("listed in the manifest but its folder is missing")
    expected = entry.get("sha256", {})
    for name, digest in expected.items():
        path = folder / name
        if not path.exists():
            raise LesionAIError(f"{name} is missing")
        if _sha256(path) != digest:
            raise LesionAIError(f"{name} does not match its checksum (changed or half-written)")
    for role in ROLES:
        if f"{role}.nii.gz" not in expected:
            raise LesionAIError(f"{role}.nii.gz is not recorded")
    annotation = json.loads((folder / "annotation.json").read_text(encoding="utf-8"))
    if annotation.get("lesions") is None:
        return DeploymentCase(case_id, str(folder), False, annotation.get("annotator", ""), annotation.get("time", ""))
    lesions = [LesionAnnotation(**item) for item in annotation["lesions"]]
    mask = sitk.ReadImage(str(folder / "lesions.nii.gz"))
    ids = sorted(int(v) for v in np.unique(sitk.GetArrayViewFromImage(mask)) if v > 0)
    if ids != sorted(l.id for l in lesions):
        raise LesionAIError(f"mask ids {ids} do not match the graded lesions")
    return DeploymentCase(
        case_id, str(folder), True, annotation.get("annotator", ""), annotation.get("time", ""), lesions
    )

"""Training data: cohort readers (PI-CAI public layout, our phantom cohorts) and a disk cache.

A **cohort** is a folder with ``<patient>_<study>_{t2w,adc,hbv}.mha`` images anywhere below it
(PI-CAI: ``picai_public_images_fold*/<patient>/``; phantoms: ``images/<patient>/``) and labels:

* lesion masks ``<patient>_<study>.nii.gz`` on the T2 grid, searched per case in ``labels/``,
  ``picai_labels/csPCa_lesion_delineations/human_expert/resampled/`` and
  ``picai_labels/csPCa_lesion_delineations/AI/Bosma22a/`` (the first that has the case wins). PI-CAI masks carry
  each lesion's ISUP grade group as voxel value (only csPCa, ISUP ≥ 2, is delineated);
* optionally an instance map ``lesions/<case>.nii.gz`` plus ``lesions.csv`` (our phantoms: every
  lesion including benign mimics and ISUP 1, with its grade);
* optionally a PI-CAI marksheet (``marksheet.csv`` or ``picai_labels/clinical_information/marksheet.csv``)
  giving ``case_csPCa`` and the ``center`` (site).

:func:`prepare_cases` preprocesses each case once into the model grid and stores it as ``.npy``
files (image, heatmap target, instance map). Training reads crops through memory maps, so the
dataset is never held in RAM.
"""

from __future__ import annotations

import csv
import hashlib
import json
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import SimpleITK as sitk
import torch
from scipy import ndimage

from LesionAILib.atomic_io import write_json_atomic, write_npy_atomic
from LesionAILib.errors import LesionAIError, StudyError
from LesionAILib.geometry import Grid
from LesionAILib.preprocessing.crops import extract_crop
from LesionAILib.preprocessing.pipeline import PreprocessConfig, Preprocessed, preprocess
from LesionAILib.studies.case import Case
from LesionAILib.studies.files import open_files
from LesionAILib.studies.picai import find_picai_cases
from LesionAILib.training.targets import SCORE_BY_GRADE, heatmap_target

LABEL_FOLDERS = (
    "labels",
    "picai_labels/csPCa_lesion_delineations/human_expert/resampled",
    "picai_labels/csPCa_lesion_delineations/AI/Bosma22a",
)
MARKSHEETS = ("marksheet.csv", "picai_labels/clinical_information/marksheet.csv")
CACHE_VERSION = 2


@dataclass
class LesionRecord:
    """One ground-truth lesion: instance id in the case's instance map, ISUP grade group, zone."""

    lesion_id: int
    grade_group: int
    zone: str = ""

    @property
    def clinically_significant(self) -> bool:
        return self.grade_group >= 2


@dataclass
class CaseRecord:
    """Where a training case lives on disk and what is known about it."""

    case_id: str
    patient_id: str
    study_id: str
    images: dict[str, str]
    site: str = ""
    cspca_mask: str | None = None
    instances: str | None = None
    lesions: list[LesionRecord] = field(default_factory=list)
    case_cspca: bool | None = None

    def open(self) -> Case:
        """The case's images (native grids) with its lesion instance map as ``lesion_mask``."""
        case = open_files(
            self.images["t2w"],
            self.images["adc"],
            self.images["hbv"],
            self.patient_id,
            self.study_id,
            lesion_mask=self.instances or self.cspca_mask,
        )
        if self.instances is None and case.lesion_mask is not None:  # PI-CAI ISUP mask → instances
            instances = sitk.GetImageFromArray(self.instance_array(sitk.GetArrayFromImage(case.lesion_mask)))
            instances.CopyInformation(case.lesion_mask)
            case.lesion_mask = instances
        return case

    def instance_array(self, cspca: np.ndarray) -> np.ndarray:
        """Instance ids from a PI-CAI ISUP mask (26-connected components), filling ``lesions``."""
        components, count = ndimage.label(cspca > 0, structure=np.ones((3, 3, 3)))
        self.lesions = [LesionRecord(i, int(cspca[components == i].max())) for i in range(1, count + 1)]
        return components.astype(np.uint8)


@dataclass
class Cohort:
    """The cases found in a folder, and the ones that could not be used (with the reason)."""

    root: str
    cases: list[CaseRecord]
    problems: list[str] = field(default_factory=list)

    def summary(self) -> dict:
        positives = sum(1 for c in self.cases if c.case_cspca)
        sites = sorted({c.site for c in self.cases})
        return {
            "root": self.root,
            "cases": len(self.cases),
            "csPCa_cases": positives,
            "sites": sites,
            "skipped": len(self.problems),
        }


def _find_first(root: Path, candidates: Sequence[str]) -> Path | None:
    return next((root / c for c in candidates if (root / c).exists()), None)


def _read_csv(path: Path) -> list[dict[str, str]]:
    with open(path, newline="", encoding="utf-8") as handle:
        return list(csv.DictReader(handle))


def read_cohort(root: str | Path, labels: str | Path | None = None, marksheet: str | Path | None = None) -> Cohort:
    """Find every case under ``root`` and its labels (see module docstring for the layouts).

    Args:
        root: cohort folder (PI-CAI images, or a phantom cohort written by ``lesionai phantom``).
        labels: folder of ``<case>.nii.gz`` lesion masks, if not in one of the standard places.
        marksheet: PI-CAI style clinical CSV, if not in one of the standard places.
    """
    root = Path(root)
    if not root.is_dir():
        raise StudyError("cohort folder does not exist", root)
    # per case, the first folder that has its mask (PI-CAI: human-expert labels before AI-derived ones)
    label_dirs = [Path(labels)] if labels else [root / f for f in LABEL_FOLDERS if (root / f).is_dir()]
    marksheet_path = Path(marksheet) if marksheet else _find_first(root, MARKSHEETS)
    clinical = {}
    if marksheet_path is not None and marksheet_path.exists():
        clinical = {f"{r['patient_id']}_{r['study_id']}": r for r in _read_csv(marksheet_path)}
    grades_by_case: dict[str, list[LesionRecord]] = {}
    lesions_csv = root / "lesions.csv"
    if lesions_csv.exists():
        for row in _read_csv(lesions_csv):
            grades_by_case.setdefault(f"{row['patient_id']}_{row['study_id']}", []).append(
                LesionRecord(int(row["lesion_id"]), int(row["grade_group"]), row.get("zone", ""))
            )
    cases, problems = [], []
    for patient, study, directory in find_picai_cases(root):
        case_id = f"{patient}_{study}"
        images = {role: str(directory / f"{case_id}_{role}.mha") for role in ("t2w", "adc", "hbv")}
        missing = [role for role, path in images.items() if not Path(path).exists()]
        if missing:
            problems.append(f"{case_id}: missing {', '.join(missing)} image")
            continue
        row = clinical.get(case_id, {})
        record = CaseRecord(case_id, patient, study, images, site=row.get("center", ""))
        if row.get("case_csPCa"):
            record.case_cspca = row["case_csPCa"].strip().upper() == "YES"
        instances = root / "lesions" / f"{case_id}.nii.gz"
        if instances.exists() and lesions_csv.exists():  # our phantoms: every lesion, with its grade
            record.instances = str(instances)
            record.lesions = grades_by_case.get(case_id, [])
        mask = next(
            (
                folder / f"{case_id}{suffix}"
                for folder in label_dirs
                for suffix in (".nii.gz", ".mha", ".nii")
                if (folder / f"{case_id}{suffix}").exists()
            ),
            None,
        )
        record.cspca_mask = str(mask) if mask else None
        if record.instances is None and record.cspca_mask is None:
            if record.case_cspca is False:
                pass  # a negative case without a mask file: nothing to delineate
            else:
                where = ", ".join(str(f) for f in label_dirs) or "no label folder"
                problems.append(f"{case_id}: marked csPCa (or unknown) but no lesion mask found ({where})")
                continue
        if record.case_cspca is None and record.lesions:
            record.case_cspca = any(lesion.clinically_significant for lesion in record.lesions)
        cases.append(record)
    if not cases:
        raise StudyError(
            "no usable case found" + (f" ({problems[0]}, …)" if problems else ""),
            root,
            "expected <patient>_<study>_{t2w,adc,hbv}.mha images and lesion masks (see `lesionai train --help`)",
        )
    return Cohort(str(root), cases, problems)


# --------------------------------------------------------------------------- prepared cache
@dataclass
class PreparedLesion:
    lesion_id: int
    grade_group: int
    center_index: tuple[float, float, float]  # (Z, Y, X) voxel index in the model grid
    voxels: int


@dataclass
class PreparedCase:
    """A case in the model grid on disk: ``image`` [C, Z, Y, X] float32, ``target`` [Z, Y, X]
    float16 heatmap, ``instances`` [Z, Y, X] uint8 (ids as in ``lesions``)."""

    case_id: str
    site: str
    folder: str
    lesions: list[PreparedLesion]
    case_cspca: bool
    grid: dict
    stem: str = ""  # file prefix in the cache: the case id plus a hash of its source files

    def _path(self, name: str) -> Path:
        return Path(self.folder) / f"{self.stem or self.case_id}.{name}.npy"

    def image(self, mmap: bool = True) -> np.ndarray:
        return np.load(self._path("image"), mmap_mode="r" if mmap else None)

    def target(self, mmap: bool = True) -> np.ndarray:
        return np.load(self._path("target"), mmap_mode="r" if mmap else None)

    def instances(self, mmap: bool = True) -> np.ndarray:
        return np.load(self._path("instances"), mmap_mode="r" if mmap else None)

    def cspca_mask(self) -> np.ndarray:
        """[Z, Y, X] uint8, 1 on clinically significant lesions."""
        ids = [lesion.lesion_id for lesion in self.lesions if lesion.grade_group >= 2]
        return np.isin(self.instances(), ids).astype(np.uint8)

    def preprocessed(self, roles: Sequence[str]) -> Preprocessed:
        """The cached image as a :class:`Preprocessed` (model grid only; no T2 grid to go back to)."""
        grid = Grid.from_dict(self.grid)
        image = torch.from_numpy(np.array(self.image()))
        return Preprocessed(image, image != 0, grid, grid, tuple(roles), {})


def _cache_key(config: PreprocessConfig, score_by_grade: Sequence[float]) -> str:
    text = json.dumps({"v": CACHE_VERSION, "pre": config.to_dict(), "score": list(score_by_grade)}, sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def prepare_case(
    record: CaseRecord, config: PreprocessConfig, folder: Path, score_by_grade: Sequence[float] = SCORE_BY_GRADE
) -> PreparedCase:
    """Preprocess one case into ``folder`` (atomic writes; an existing complete entry is reused)."""
    # two cohorts may reuse a case id (phantom sites, PI-CAI folds): the stem also hashes the sources
    stem = f"{record.case_id}-{hashlib.sha256(json.dumps(record.images, sort_keys=True).encode()).hexdigest()[:10]}"
    entry_path = folder / f"{stem}.json"
    if entry_path.exists():
        data = json.loads(entry_path.read_text())
        if data.get("sources") == record.images:
            lesions = [
                PreparedLesion(**{**item, "center_index": tuple(item["center_index"])}) for item in data["lesions"]
            ]
            return PreparedCase(
                record.case_id, data["site"], str(folder), lesions, data["case_cspca"], data["grid"], stem
            )
    try:
        case = record.open()
        prepared = preprocess(case, config, device="cpu")
    except LesionAIError as error:
        raise StudyError(f"case {record.case_id} cannot be prepared: {error}") from None
    instances = (
        prepared.lesion_mask.numpy().astype(np.uint8)
        if prepared.lesion_mask is not None
        else np.zeros(prepared.grid.shape, np.uint8)
    )
    grades = {lesion.lesion_id: lesion.grade_group for lesion in record.lesions}
    target = heatmap_target(instances, grades, prepared.grid.spacing, score_by_grade=score_by_grade)
    lesions = []
    for lesion in record.lesions:
        voxels = np.argwhere(instances == lesion.lesion_id)
        if len(voxels):
            lesions.append(
                PreparedLesion(lesion.lesion_id, lesion.grade_group, tuple(voxels.mean(0).tolist()), len(voxels))
            )
    case_cspca = bool(record.case_cspca) if record.case_cspca is not None else any(l.grade_group >= 2 for l in lesions)
    for name, array in (
        ("image", prepared.image.numpy().astype(np.float32)),
        ("target", target.astype(np.float16)),
        ("instances", instances),
    ):
        write_npy_atomic(folder / f"{stem}.{name}.npy", array)
    entry = PreparedCase(record.case_id, record.site, str(folder), lesions, case_cspca, prepared.grid.to_dict(), stem)
    write_json_atomic(
        entry_path,
        {
            "sources": record.images,
            "site": record.site,
            "case_cspca": case_cspca,
            "grid": entry.grid,
            "lesions": [asdict(lesion) for lesion in lesions],
        },
    )
    return entry


def prepare_cases(
    records: Sequence[CaseRecord],
    config: PreprocessConfig,
    cache_dir: str | Path,
    progress: Callable[[int, int], None] | None = None,
    score_by_grade: Sequence[float] = SCORE_BY_GRADE,
) -> list[PreparedCase]:
    """Preprocess ``records`` into ``cache_dir/<config hash>/`` (reused across runs with the same config)."""
    folder = Path(cache_dir) / _cache_key(config, score_by_grade)
    folder.mkdir(parents=True, exist_ok=True)
    entries = []
    for index, record in enumerate(records):
        entries.append(prepare_case(record, config, folder, score_by_grade))
        if progress:
            progress(index + 1, len(records))
    return entries


# --------------------------------------------------------------------------- crops
class CropSampler:
    """Deterministic training crops from prepared cases.

    Crop ``i`` of epoch ``e`` depends only on ``(seed, e, i)``: with probability
    ``lesion_fraction`` it is centred near a random lesion (± a quarter crop), else uniformly.
    """

    def __init__(self, cases: Sequence[PreparedCase], crop: Sequence[int], lesion_fraction: float = 0.5, seed: int = 0):
        self.cases = list(cases)
        self.crop = tuple(int(c) for c in crop)
        self.lesion_fraction = lesion_fraction
        self.seed = seed

    def __len__(self) -> int:
        return len(self.cases)

    def order(self, epoch: int) -> np.ndarray:
        return np.random.default_rng([self.seed, epoch, 0]).permutation(len(self.cases))

    def sample(self, case_index: int, epoch: int, draw: int = 0) -> dict[str, np.ndarray]:
        """``image`` [C, z, y, x] float32, ``target`` [z, y, x] float32, ``cspca`` [z, y, x] uint8."""
        case = self.cases[case_index]
        rng = np.random.default_rng([self.seed, epoch, case_index, draw, 1])
        image = case.image()
        shape = image.shape[1:]
        if case.lesions and rng.random() < self.lesion_fraction:
            lesion = case.lesions[int(rng.integers(len(case.lesions)))]
            jitter = rng.uniform(-0.25, 0.25, 3) * np.asarray(self.crop)
            center = np.asarray(lesion.center_index) + jitter
        else:
            center = np.array(
                [rng.uniform(min(c / 2, n / 2), max(n - c / 2, n / 2)) for c, n in zip(self.crop, shape, strict=True)]
            )
        instances = extract_crop(case.instances(), center, self.crop)
        significant = [lesion.lesion_id for lesion in case.lesions if lesion.grade_group >= 2]
        return {
            "image": extract_crop(image, center, self.crop).astype(np.float32),
            "target": extract_crop(case.target(), center, self.crop).astype(np.float32),
            "cspca": np.isin(instances, significant).astype(np.uint8),
        }

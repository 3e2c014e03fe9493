"""Candidate mining for phase 2: where the phase-1 network fires in the training cases, and what grade each place has.

The phase-1 network runs over every training case; its combined map (float16, model grid) is kept
in ``maps/`` for the classifier's map channel, and each candidate extracted from it gets the
grade group of the lesion it overlaps most (0 for a false positive). Every ground-truth lesion
(benign mimics included) is a sample too, so the classifier sees every lesion at least once.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from LesionAILib.atomic_io import write_json_atomic, write_npy_atomic
from LesionAILib.dataclass_dicts import DictSerialisable
from LesionAILib.geometry import Grid
from LesionAILib.inference.candidates import extract_candidates
from LesionAILib.jobs.events import CancelToken
from LesionAILib.preprocessing.crops import extract_crop
from LesionAILib.training.cohorts import PreparedCase

MINED = "candidates.json"
MAPS = "maps"


@dataclass
class TrainingCandidate(DictSerialisable):
    """One phase-2 training sample.

    Attributes:
        case: index of its case in the trainer's training cases.
        center: (Z, Y, X) continuous voxel index in the model grid.
        grade: ISUP grade group the classifier should predict (0: benign or a false positive).
        source: ``"candidate"`` (found by the phase-1 network) or ``"lesion"`` (ground truth).
    """

    case: int
    center: tuple[float, float, float]
    grade: int
    source: str


def _overlapped_grade(instances: np.ndarray, region: np.ndarray, grades: dict[int, int]) -> int:
    """Grade of the lesion with most voxels inside ``region`` (bool [Z, Y, X]); 0 when it overlaps none."""
    overlap = instances[region]
    overlap = overlap[overlap > 0]
    return grades.get(int(np.bincount(overlap).argmax()), 0) if overlap.size else 0


@torch.no_grad()
def mine_candidates(
    localizer: torch.nn.Module,
    cases: Sequence[PreparedCase],
    run_dir: Path,
    max_candidates: int,
    device: torch.device,
    autocast: Callable[[], AbstractContextManager],
    cancel: CancelToken | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> list[TrainingCandidate]:
    """Mine every case of ``cases`` with ``localizer`` (in eval mode); writes ``run_dir/maps/<case>.npy``.

    ``cancel`` is checked before each case, ``progress(done, total)`` called after each.
    """
    maps_dir = run_dir / MAPS
    maps_dir.mkdir(exist_ok=True)
    samples = []
    for index, case in enumerate(cases):
        if cancel is not None:
            cancel.check()
        image = torch.from_numpy(np.array(case.image()))[None].to(device)
        with autocast():
            combined = localizer(image)["combined"][0, 0].float().cpu().numpy()
        write_npy_atomic(maps_dir / f"{case.case_id}.npy", combined.astype(np.float16))
        candidates, labels = extract_candidates(combined, Grid.from_dict(case.grid), max_candidates=max_candidates)
        instances = case.instances()
        grades = {lesion.lesion_id: lesion.grade_group for lesion in case.lesions}
        for candidate in candidates:
            grade = _overlapped_grade(instances, labels == candidate.candidate_id, grades)
            samples.append(TrainingCandidate(index, tuple(candidate.center_index), int(grade), "candidate"))
        for lesion in case.lesions:
            samples.append(TrainingCandidate(index, tuple(lesion.center_index), lesion.grade_group, "lesion"))
        if progress is not None:
            progress(index + 1, len(cases))
    return samples


def read_mined(run_dir: Path, digest: str) -> list[TrainingCandidate] | None:
    """The samples an earlier session of the configuration ``digest`` mined, if any."""
    path = run_dir / MINED
    if not path.exists():
        return None
    data = json.loads(path.read_text())
    if data.get("config") != digest:
        return None
    return [TrainingCandidate.from_dict(sample) for sample in data["samples"]]


def write_mined(run_dir: Path, digest: str, samples: Sequence[TrainingCandidate]) -> None:
    write_json_atomic(run_dir / MINED, {"config": digest, "samples": [sample.to_dict() for sample in samples]})


def candidate_crops(
    cases: Sequence[PreparedCase], run_dir: Path, samples: Sequence[TrainingCandidate], crop: Sequence[int]
) -> tuple[torch.Tensor, torch.Tensor]:
    """Crops around ``samples``: images [N, C, z, y, x] float32 and their mined maps [N, 1, z, y, x] float32."""
    images, maps = [], []
    for sample in samples:
        case = cases[sample.case]
        images.append(extract_crop(case.image(), sample.center, crop))
        combined = np.load(run_dir / MAPS / f"{case.case_id}.npy", mmap_mode="r")
        maps.append(extract_crop(combined, sample.center, crop)[None].astype(np.float32))
    return torch.from_numpy(np.stack(images)), torch.from_numpy(np.stack(maps))

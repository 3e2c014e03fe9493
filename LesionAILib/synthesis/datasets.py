"""Training volumes from cohort folders: every case on the synthesis grid, its gland from ``zones/``, cached on disk.

A cohort folder is what :func:`LesionAILib.training.cohorts.read_cohort` reads (PI-CAI layout; our
phantom cohorts). The gland of case ``<p>_<s>`` is ``zones/<p>_<s>.nii.gz`` (non-zero = prostate)
when the folder has one (phantoms do); otherwise the FOV-centre ellipsoid
(:data:`~LesionAILib.synthesis.volumes.REGION_FOV_CENTRE`). Lesion masks, when present, are
left out of the training loss; a folder of negative studies needs none. Each prepared volume is
stored as one ``.npz`` (no pickle) under ``cache_dir``, keyed by the case and the synthesis grid.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import SimpleITK as sitk

from LesionAILib.atomic_io import atomic_path
from LesionAILib.geometry import Grid
from LesionAILib.preprocessing.pipeline import PreprocessConfig
from LesionAILib.synthesis.volumes import SYNTHESIS_PREPROCESS, SynthesisVolume, synthesis_volume
from LesionAILib.training.cohorts import CaseRecord, read_cohort


def _key(record: CaseRecord, config: PreprocessConfig) -> str:
    text = json.dumps([record.images, record.instances, record.cspca_mask, config.to_dict()], sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def save_volume(volume: SynthesisVolume, path: Path) -> None:
    """Store a volume as one ``.npz`` (arrays plus a JSON header; read without pickle)."""
    arrays = {"image": volume.image, "acquired": volume.acquired, "region": volume.region}
    if volume.lesions is not None:
        arrays["lesions"] = volume.lesions
    header = {
        "grid": volume.grid.to_dict(),
        "t2_grid": volume.t2_grid.to_dict(),
        "roles": list(volume.roles),
        "region_source": volume.region_source,
    }
    with atomic_path(path) as temporary, open(temporary, "wb") as handle:
        np.savez(handle, header=np.array(json.dumps(header)), **arrays)


def load_volume(path: Path) -> SynthesisVolume:
    """A volume stored by :func:`save_volume`."""
    with np.load(path, allow_pickle=False) as data:
        header = json.loads(str(data["header"]))
        return SynthesisVolume(
            image=data["image"],
            acquired=data["acquired"],
            region=data["region"],
            lesions=data["lesions"] if "lesions" in data else None,
            grid=Grid.from_dict(header["grid"]),
            t2_grid=Grid.from_dict(header["t2_grid"]),
            roles=tuple(header["roles"]),
            region_source=header["region_source"],
        )


def _gland_of(record: CaseRecord, root: Path) -> sitk.Image | None:
    stem = Path(record.images["t2w"]).name.removesuffix(".mha").removesuffix("_t2w")
    path = root / "zones" / f"{stem}.nii.gz"
    return sitk.Cast(sitk.ReadImage(str(path)) > 0, sitk.sitkUInt8) if path.is_file() else None


def cohort_volumes(
    roots: Sequence[str | Path],
    cache_dir: str | Path,
    config: PreprocessConfig = SYNTHESIS_PREPROCESS,
    progress: Callable[[int, int], None] | None = None,
) -> tuple[list[str], list[SynthesisVolume]]:
    """(case ids, volumes) of every usable case of the cohort folders ``roots``, prepared once and cached."""
    records = [(Path(root), record) for root in roots for record in read_cohort(root).cases]
    cache = Path(cache_dir)
    cache.mkdir(parents=True, exist_ok=True)
    ids, volumes = [], []
    for done, (root, record) in enumerate(records, start=1):
        path = cache / f"{record.case_id}-{_key(record, config)}.npz"
        if not path.exists():
            save_volume(synthesis_volume(record.open(), _gland_of(record, root), config), path)
        ids.append(record.case_id)
        volumes.append(load_volume(path))
        if progress:
            progress(done, len(records))
    return ids, volumes

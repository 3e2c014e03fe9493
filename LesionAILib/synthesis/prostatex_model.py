"""The bundled 2D synthesis model trained on real patients: ProstateX finding patches, the shown studies left out.

:func:`train_prostatex_synthesis` trains :mod:`LesionAILib.synthesis.patch_inpainting` (ADC + high-b,
32 × 32 pixels at 2 mm, histogram-equalised; the central 12 mm around each finding excluded from
the loss, random boxes elsewhere) on every finding patch of the ProstateX findings dataset except
those of :data:`EXCLUDED_PATIENTS` — ProstateX-0000 and -0001, the two full studies the map is
shown and tested on — fits the normal-tissue statistics on the same training patches (boxes
hidden ≥ 12 mm from the finding), scores the left-out patients' findings, and writes a synthesis
model file (safetensors + JSON; :mod:`LesionAILib.synthesis.model_file`). Its ``preprocess`` is
``None`` (inputs are equalised native-grid slices, not the 3D synthesis grid) and its ``masks``
is :data:`PATCH_MASKS`, which :mod:`LesionAILib.synthesis.slice_map` reads.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np

from LesionAILib.errors import ConfigError
from LesionAILib.models.bundled import SYNTHESIS_PROSTATEX_MODEL
from LesionAILib.prostatex.findings import PATCHES_FILE, load_findings
from LesionAILib.prostatex.patches import NEAREST_VOXEL_AT, PATCH_SIZE
from LesionAILib.synthesis.model_file import SynthesisMetadata, save_synthesis_model
from LesionAILib.synthesis.patch_inpainting import (
    CENTRE_BOX,
    EXCLUDED_RADIUS_MM,
    PATCH_ROLES,
    PIXEL_MM,
    TRAINING_BOX_RANGE,
    PatchTraining,
    abnormality_scores,
    normal_tissue_statistics,
    train_patch_inpainting,
)

EXCLUDED_PATIENTS = ("ProstateX-0000", "ProstateX-0001")
BUNDLED_PATH = SYNTHESIS_PROSTATEX_MODEL
BUNDLED_NAME = BUNDLED_PATH.stem
PATCH_MASKS = {
    "kind": "2d-patch",
    "patch_pixels": PATCH_SIZE,
    "pixel_mm": PIXEL_MM,
    "centre_at": list(NEAREST_VOXEL_AT),
    "hidden_box_pixels": CENTRE_BOX,
    "scored_radius_mm": EXCLUDED_RADIUS_MM,
    "training_box_pixels": list(TRAINING_BOX_RANGE),
    "loss_excluded_radius_mm": EXCLUDED_RADIUS_MM,
    "stride_pixels": 2,
}


def train_prostatex_synthesis(
    findings_dir: str | Path,
    out: str | Path,
    recipe: PatchTraining | None = None,
    excluded_patients: Sequence[str] = EXCLUDED_PATIENTS,
    name: str = BUNDLED_NAME,
    command: str = "",
    progress: Callable[[int, int, float], None] | None = None,
) -> SynthesisMetadata:
    """Train on the findings of ``findings_dir`` outside ``excluded_patients``; write the model file ``out``.

    Returns the written metadata (``sha256`` filled). The ``metrics`` hold the left-out patients'
    finding scores (``abnormality``: mean robust z of |discrepancy|; ``signed``: ADC below / high-b
    above the synthesis) with their ProstateX labels.
    """
    start = time.perf_counter()
    recipe = recipe or PatchTraining()
    findings = load_findings(findings_dir)
    images = findings.inputs.images[:, 1:3].numpy()  # channels t2, adc, hbv → adc, hbv
    unknown = sorted(set(excluded_patients) - set(findings.patients.tolist()))
    if unknown:
        raise ConfigError(
            f"no findings of the excluded patient(s) {', '.join(unknown)}",
            Path(findings_dir) / PATCHES_FILE,
            "give ProstateX patient ids as in its 'patient' column, e.g. ProstateX-0000",
        )
    left_out = np.isin(findings.patients, list(excluded_patients))
    training = np.nonzero(~left_out)[0]
    net = train_patch_inpainting(images[training], recipe, progress)
    statistics = normal_tissue_statistics(net, images[training], recipe)
    held_out = np.nonzero(left_out)[0]
    scores = abnormality_scores(net, statistics, images[held_out]) if len(held_out) else {}
    metrics = {
        "left_out_findings": [
            {
                "patient": str(findings.patients[row]),
                "finding": str(findings.finding_ids[row]),
                "clinically_significant": bool(findings.labels[row]),
                "abnormality": round(float(scores["abnormality"][index]), 4),
                "signed": round(float(scores["signed"][index]), 4),
            }
            for index, row in enumerate(held_out)
        ],
        "cross_validation": "patient-grouped 5-fold CV of the same recipe on all 305 findings: see "
        "benchmarks/RESULTS.md, 'Abnormality by synthesis' (per-fold models, not this file)",
    }
    metadata = SynthesisMetadata(
        name=name,
        architecture=net.config,
        normal_tissue=statistics,
        preprocess=None,
        masks=dict(PATCH_MASKS),
        description="2D inpainting of ADC and high-b (jointly) in a hidden 16 mm box from 64 mm of context, "
        "trained on real ProstateX finding patches with the central 12 mm around each finding left out of "
        "the loss (no lesion labels used); slid over a study's prostate slice by slice it gives a "
        "label-free abnormality map.",
        training={
            "data": f"ProstateX findings dataset ({PATCHES_FILE}: ADC and high-b, 32 x 32 at 2 mm, "
            "histogram-equalised per volume)",
            "data_folder": str(findings_dir),
            "patients": int(len(np.unique(findings.patients[training]))),
            "findings": int(len(training)),
            "clinically_significant_findings": int(findings.labels[training].sum()),
            "excluded_patients": list(excluded_patients),
            "excluded_findings": int(len(held_out)),
            "roles": list(PATCH_ROLES),
            "recipe": recipe.to_dict(),
            "seed": recipe.seed,
            "steps": recipe.steps,
            "command": command,
            "minutes": round((time.perf_counter() - start) / 60.0, 2),
        },
        metrics=metrics,
        synthetic_training_data=False,
    )
    save_synthesis_model(net, metadata, out)
    return metadata

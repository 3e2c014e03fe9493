"""The abnormality outputs of a result folder: ``abnormality.nii.gz`` beside the heatmap, its candidates, its panels.

Written by ``lesionai analyze --abnormality`` into the analysis folder (all atomically, maps in the
T2 series' exact geometry):

==================================  ===========================================================
``abnormality.nii.gz``              combined robust z (float32), 0 outside the analysed region
``abnormality_<role>.nii.gz``       per-sequence robust z
``abnormality_candidates.nii.gz``   label map of the abnormality candidates (uint8)
``abnormality.json``                model (name, notice, sha256), region source, boxes, timings,
                                    candidates (:meth:`Candidate.to_dict`)
``abnormality_candidate_<id>.png``  incomplete / synthesised / real / difference at each candidate
==================================  ===========================================================

No torch here: the Slicer process reads these files.
"""

from __future__ import annotations

from pathlib import Path

from LesionAILib.atomic_io import write_image_atomic, write_json_atomic

ABNORMALITY_FILE = "abnormality.nii.gz"
ABNORMALITY_SUMMARY = "abnormality.json"
ABNORMALITY_CANDIDATES = "abnormality_candidates.nii.gz"


def write_abnormality(result, out_dir: str | Path, model_sha256: str, figures: bool = True) -> list[Path]:
    """Write an :class:`~LesionAILib.synthesis.analysis.AbnormalityResult` into ``out_dir``; returns the paths."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    written = [
        write_image_atomic(result.abnormality, out / ABNORMALITY_FILE),
        write_image_atomic(result.candidate_map, out / ABNORMALITY_CANDIDATES),
    ]
    for role, image in result.sequence_maps.items():
        written.append(write_image_atomic(image, out / f"abnormality_{role}.nii.gz"))
    if figures and result.volume is not None:
        from LesionAILib.synthesis.figures import box_panels

        for candidate, view in zip(result.candidates, result.views, strict=True):
            written.append(
                box_panels(
                    view,
                    result.volume.roles,
                    out / f"abnormality_candidate_{candidate.candidate_id}.png",
                    f"{result.case_id} — abnormality candidate {candidate.candidate_id} "
                    f"(z {candidate.peak * 10:.1f}) — {result.model_name}",
                    result.model_notice,
                )
            )
    summary = {
        "model": {"name": result.model_name, "notice": result.model_notice, "sha256": model_sha256},
        "map": result.map_description,
        "region": result.region_source,
        "boxes": result.boxes,
        "timings_s": {k: round(v, 4) for k, v in result.timings.items()},
        "candidates": [c.to_dict() for c in result.candidates],
        "files": [p.name for p in written],
    }
    written.append(write_json_atomic(out / ABNORMALITY_SUMMARY, summary))
    return written

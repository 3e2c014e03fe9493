"""Write an analysis :class:`~LesionAILib.inference.analyzer.Result` as files a person and Slicer can open.

``write_result(result, case, out_dir)`` writes (all atomically, all maps in the T2 series' exact
geometry, so they load in 3D Slicer on top of the T2):

* ``heatmap.nii.gz`` / ``heatmap.nrrd`` — combined localization map (0–1),
* ``heatmap_<role>.nii.gz`` — per-sequence maps,
* ``detection_map.nii.gz`` / ``.nrrd`` — PI-CAI detection map (each candidate region = its probability),
* ``candidates.nii.gz`` — candidate label map (value = candidate id),
* ``candidates.csv`` and ``candidates.json`` — the candidate table (LPS and RAS mm),
* ``result.json`` — case score, model, notice, timings, sources,
* ``overview.png`` and ``candidate_<id>.png`` — T2 slices with the heatmap and outlines.
"""

from __future__ import annotations

import csv
import io
from pathlib import Path

import numpy as np
import SimpleITK as sitk

from LesionAILib.atomic_io import write_image_atomic, write_json_atomic, write_text_atomic
from LesionAILib.geometry import Grid
from LesionAILib.inference.analyzer import Result
from LesionAILib.rendering import candidate_figures
from LesionAILib.studies.study import Case

CSV_COLUMNS = (
    "id",
    "probability",
    "grade_group",
    "peak",
    "volume_ml",
    "center_l_mm",
    "center_p_mm",
    "center_s_mm",
    "center_r_mm",
    "center_a_mm",
    "center_s_ras_mm",
    "zone",
    "score_model",
)


def candidates_csv(result: Result) -> str:
    """The candidate table as CSV text (one row per candidate, highest probability first)."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(CSV_COLUMNS)
    for c in result.candidates:
        writer.writerow(
            [
                c.candidate_id,
                f"{c.probability:.4f}",
                "" if c.grade_group is None else c.grade_group,
                f"{c.peak:.4f}",
                f"{c.volume_ml:.4f}",
                *(f"{v:.2f}" for v in c.center_lps_mm),
                *(f"{v:.2f}" for v in c.center_ras_mm),
                c.zone or "",
                c.score_model,
            ]
        )
    return buffer.getvalue()


def candidate_table(result: Result) -> str:
    """A fixed-width text table for the terminal."""
    lines = [f"{'id':>3} {'prob':>6} {'GG':>3} {'peak':>6} {'vol ml':>7}  {'R, A, S (mm)':<24}"]
    for c in result.candidates:
        ras = ", ".join(f"{v:.1f}" for v in c.center_ras_mm)
        grade = "" if c.grade_group is None else str(c.grade_group)
        lines.append(f"{c.candidate_id:>3} {c.probability:6.3f} {grade:>3} {c.peak:6.3f} {c.volume_ml:7.3f}  {ras:<24}")
    if not result.candidates:
        lines.append("  (no candidates)")
    return "\n".join(lines)


def write_result(result: Result, case: Case, out_dir: str | Path, figures: bool = True) -> list[Path]:
    """Write every output of one analysed case into ``out_dir``; returns the paths written."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    written = [
        write_image_atomic(result.heatmap, out / "heatmap.nii.gz"),
        write_image_atomic(result.heatmap, out / "heatmap.nrrd"),
        write_image_atomic(result.detection_map, out / "detection_map.nii.gz"),
        write_image_atomic(result.detection_map, out / "detection_map.nrrd"),
        write_image_atomic(result.candidate_map, out / "candidates.nii.gz"),
    ]
    for role, image in result.sequence_heatmaps.items():
        written.append(write_image_atomic(image, out / f"heatmap_{role}.nii.gz"))
    written.append(write_text_atomic(out / "candidates.csv", candidates_csv(result)))
    written.append(write_json_atomic(out / "candidates.json", [c.to_dict() for c in result.candidates]))
    written.append(
        write_json_atomic(
            out / "result.json", {**result.to_dict(), "case": case.metadata(), "files": [p.name for p in written]}
        )
    )
    if figures:
        t2_grid = Grid.from_image(case.t2w)
        slices = [
            int(np.clip(round(t2_grid.lps_to_index(c.center_lps_mm)[0]), 0, t2_grid.shape[0] - 1))
            for c in result.candidates
        ]
        written += candidate_figures(
            sitk.GetArrayFromImage(case.t2w).astype(np.float32),
            sitk.GetArrayFromImage(result.heatmap),
            sitk.GetArrayFromImage(result.candidate_map),
            result.candidates,
            slices,
            out,
            title=f"{result.case_id} — case score {result.case_score:.2f} — {result.model_name}",
            notice=result.model_notice,
        )
    return written

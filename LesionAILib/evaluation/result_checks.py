"""Consistency checks of one analysis result: T2 geometry, table against maps, a detection map PI-CAI accepts.

Used by the robustness run (``benchmarks/robustness.py``) and its sample in the tests; each check
names what is wrong in one line, so a failing case says why without a debugger.
"""

from __future__ import annotations

import numpy as np
import SimpleITK as sitk
from picai_eval.analysis_utils import parse_detection_map

from LesionAILib.geometry import Grid
from LesionAILib.inference.analyzer import Result

GEOMETRY_TOLERANCE_MM = 1e-6


def _same_geometry(image: sitk.Image, t2: Grid) -> bool:
    grid = Grid.from_image(image)
    return (
        tuple(grid.shape) == tuple(t2.shape)
        and np.allclose(grid.spacing, t2.spacing, atol=GEOMETRY_TOLERANCE_MM)
        and np.allclose(grid.origin, t2.origin, atol=GEOMETRY_TOLERANCE_MM)
        and np.allclose(grid.direction, t2.direction, atol=1e-9)
    )


def result_problems(result: Result, t2_image: sitk.Image) -> list[str]:
    """Everything inconsistent in ``result`` for the case whose T2 series is ``t2_image``; [] when sound.

    Checked: every map (combined, per-sequence, detection, candidate) has the T2 series' exact size,
    spacing, origin and direction; each candidate in the table has voxels in the candidate map and
    its probability there in the detection map; the candidate map holds no id outside the table;
    picai-eval's own ``parse_detection_map`` accepts the detection map with one blob per candidate.
    """
    t2 = Grid.from_image(t2_image)
    problems = []
    maps = {"heatmap": result.heatmap, "detection map": result.detection_map, "candidate map": result.candidate_map}
    maps.update({f"{role} heatmap": image for role, image in result.sequence_heatmaps.items()})
    for name, image in maps.items():
        if not _same_geometry(image, t2):
            problems.append(f"{name} is not in the T2 geometry")
    if problems:
        return problems
    labels = sitk.GetArrayFromImage(result.candidate_map).astype(np.int32)
    detection = sitk.GetArrayFromImage(result.detection_map)
    ids = {c.candidate_id for c in result.candidates}
    for candidate in result.candidates:
        region = labels == candidate.candidate_id
        if not region.any():
            problems.append(f"candidate {candidate.candidate_id} is in the table but not in the candidate map")
        elif not np.allclose(detection[region], np.float32(candidate.probability)):
            problems.append(f"candidate {candidate.candidate_id}'s detection-map value differs from its probability")
    stray = sorted(set(np.unique(labels).tolist()) - ids - {0})
    if stray:
        problems.append(f"candidate map holds ids {stray} that are not in the table")
    if np.any(detection[labels == 0] != 0):
        problems.append("detection map is non-zero outside every candidate region")
    try:
        confidences, _ = parse_detection_map(detection)
    except ValueError as error:
        problems.append(f"picai-eval refuses the detection map: {str(error).split('.')[0]}")
    else:
        if len(confidences) != len(result.candidates):
            problems.append(f"picai-eval finds {len(confidences)} blobs for {len(result.candidates)} candidates")
    return problems

"""Lesion candidates from a combined localization map.

Candidates are extracted with ``report_guided_annotation.extract_lesion_candidates`` — the
dynamic thresholding the PI-CAI tools use: repeatedly take the highest remaining peak, keep the
connected region above peak / 2.5 (at least ``min_voxels`` voxels), up to ``max_candidates``,
skipping regions that touch one already taken. Each candidate gets its peak (the localization
score), volume, and centre (centroid of its region) in the model grid, LPS and RAS.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from report_guided_annotation import extract_lesion_candidates

from .geometry import Grid, lps_to_ras


@dataclass
class Candidate:
    """One lesion candidate.

    Attributes:
        candidate_id: 1-based, also its value in the candidate label map.
        peak: maximum of the combined localization map in the region (the localization score, 0–1).
        voxels: region size in model-grid voxels; ``volume_ml`` the same in millilitres.
        center_index: region centroid (Z, Y, X) in model-grid voxels.
        center_lps_mm, center_ras_mm: the centroid in patient coordinates.
        probability: clinically significant cancer probability (classifier; the peak if no classifier).
        grade_group: most likely ISUP grade group (classifier), ``grade_probabilities`` all six.
        zone: prostate zone if known.
        score_model: which model produced ``probability``.
    """

    candidate_id: int
    peak: float
    voxels: int
    volume_ml: float
    center_index: tuple[float, float, float]
    center_lps_mm: tuple[float, float, float]
    center_ras_mm: tuple[float, float, float]
    probability: float
    grade_group: int | None = None
    grade_probabilities: list[float] = field(default_factory=list)
    zone: str | None = None
    score_model: str = ""

    def to_dict(self) -> dict:
        return {
            "id": self.candidate_id,
            "probability": round(float(self.probability), 4),
            "grade_group": self.grade_group,
            "grade_probabilities": [round(float(p), 4) for p in self.grade_probabilities],
            "peak": round(float(self.peak), 4),
            "volume_ml": round(float(self.volume_ml), 4),
            "center_lps_mm": [round(float(v), 2) for v in self.center_lps_mm],
            "center_ras_mm": [round(float(v), 2) for v in self.center_ras_mm],
            "center_index_zyx": [round(float(v), 2) for v in self.center_index],
            "zone": self.zone,
            "score_model": self.score_model,
        }


def extract_candidates(
    heatmap: np.ndarray,
    grid: Grid,
    min_voxels: int = 10,
    max_candidates: int = 5,
    threshold: str | float = "dynamic",
    min_peak: float = 0.01,
) -> tuple[list[Candidate], np.ndarray]:
    """Candidates of a combined map.

    Args:
        heatmap: [Z, Y, X] combined localization map in [0, 1] on ``grid``.
        grid: its geometry (LPS mm).
        min_voxels: smallest region kept.
        max_candidates: at most this many.
        threshold: ``"dynamic"`` (PI-CAI) or a fixed value.
        min_peak: ignore peaks below this.

    Returns:
        (candidates sorted by peak, highest first; [Z, Y, X] int32 label map of their regions)
    """
    values = np.asarray(heatmap, dtype=np.float64)
    values = np.where(values >= min_peak, values, 0.0)
    _, confidences, labels = extract_lesion_candidates(
        values,
        threshold=threshold,
        min_voxels_detection=min_voxels,
        num_lesions_to_extract=max_candidates,
    )
    labels = np.asarray(labels, dtype=np.int32)
    ordered = sorted(confidences, key=lambda item: -item[1])
    relabelled = np.zeros_like(labels)
    candidates = []
    voxel_ml = grid.voxel_volume_ml()
    for new_id, (old_id, confidence) in enumerate(ordered, start=1):
        region = labels == old_id
        relabelled[region] = new_id
        voxels = np.argwhere(region)
        center = voxels.mean(0)
        lps = grid.index_to_lps(center)
        candidates.append(
            Candidate(
                candidate_id=new_id,
                peak=float(confidence),
                voxels=len(voxels),
                volume_ml=len(voxels) * voxel_ml,
                center_index=tuple(float(v) for v in center),
                center_lps_mm=tuple(float(v) for v in lps),
                center_ras_mm=tuple(float(v) for v in lps_to_ras(lps)),
                probability=float(confidence),
            )
        )
    return candidates, relabelled


def detection_map(labels: np.ndarray, candidates: list[Candidate]) -> np.ndarray:
    """PI-CAI detection map: each candidate's region filled with its probability ([Z, Y, X] float32)."""
    lookup = np.zeros(int(labels.max()) + 1 if labels.size else 1, np.float32)
    for candidate in candidates:
        lookup[candidate.candidate_id] = candidate.probability
    return lookup[labels]

"""Training targets: the score-carrying localization map and the candidate labels.

The localization map is a regression target: over each lesion a smooth blob whose plateau
equals the lesion's score, a fixed function of its ISUP grade group (:data:`SCORE_BY_GRADE`),
so the map's value is associated with lesion severity, not only presence. Clinically
significant lesions (grade group ≥ 2) score above 0.5, benign mimics (grade group 0) 0.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
from scipy import ndimage

# Map value of a lesion by ISUP grade group 0..5 (0 = benign mimic). csPCa (≥ 2) lies above 0.5.
SCORE_BY_GRADE: tuple[float, ...] = (0.0, 0.3, 0.6, 0.75, 0.9, 1.0)
CSPCA_THRESHOLD = 0.5


def heatmap_target(
    instances: np.ndarray,
    grades: Mapping[int, int],
    spacing: Sequence[float],
    sigma_mm: float = 1.5,
    score_by_grade: Sequence[float] = SCORE_BY_GRADE,
) -> np.ndarray:
    """The regression target on a grid.

    Args:
        instances: [Z, Y, X] integer lesion instance map (0 background, id per lesion).
        grades: ISUP grade group per instance id.
        spacing: (Z, Y, X) mm, to smooth isotropically in millimetres.
        sigma_mm: Gaussian edge softness in mm.
        score_by_grade: map value per grade group.

    Returns:
        [Z, Y, X] float32 in [0, 1]: per lesion a smoothed mask rescaled so its maximum equals the
        lesion's score (small lesions keep their full score), combined by maximum.
    """
    target = np.zeros(instances.shape, np.float32)
    sigma = [sigma_mm / s for s in spacing]
    for lesion_id, grade in grades.items():
        score = float(score_by_grade[int(grade)])
        mask = instances == lesion_id
        if score <= 0 or not mask.any():
            continue
        box = ndimage.find_objects(mask.astype(np.uint8))[0]
        margin = [int(np.ceil(3 * s)) + 1 for s in sigma]
        region = tuple(
            slice(max(0, b.start - m), min(n, b.stop + m)) for b, m, n in zip(box, margin, instances.shape, strict=True)
        )
        blob = ndimage.gaussian_filter(mask[region].astype(np.float32), sigma, mode="constant")
        peak = float(blob.max())
        if peak > 0:
            np.maximum(target[region], blob * (score / peak), out=target[region])
    return np.clip(target, 0.0, 1.0)

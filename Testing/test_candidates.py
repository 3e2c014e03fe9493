"""Candidate extraction: same results as report_guided_annotation's dynamic-v2, and candidate geometry."""

from __future__ import annotations

import numpy as np
import pytest
from report_guided_annotation import extract_lesion_candidates
from scipy import ndimage

from LesionAILib.geometry import Grid, lps_to_ras
from LesionAILib.inference.candidates import detection_map, dynamic_candidates, extract_candidates


def _random_map(rng: np.random.Generator, shape=(16, 48, 48)) -> np.ndarray:
    volume = np.zeros(shape)
    zz, yy, xx = np.mgrid[: shape[0], : shape[1], : shape[2]]
    for _ in range(rng.integers(0, 6)):
        centre = [rng.integers(0, n) for n in shape]
        radius = rng.uniform(1, 6)
        amplitude = rng.uniform(0.02, 1.0)
        distance = (zz - centre[0]) ** 2 * 9 + (yy - centre[1]) ** 2 + (xx - centre[2]) ** 2
        volume = np.maximum(volume, amplitude * np.exp(-distance / (2 * radius**2)))
    noise = ndimage.gaussian_filter(rng.random(shape), rng.uniform(0.5, 2.0))
    return np.clip(volume + rng.uniform(0, 0.3) * noise, 0, 1)


@pytest.mark.parametrize("seed", range(12))
def test_dynamic_candidates_equal_report_guided_annotation(seed):
    heatmap = _random_map(np.random.default_rng(seed))
    _, expected_confidences, expected_labels = extract_lesion_candidates(heatmap, threshold="dynamic-v2")
    confidences, labels = dynamic_candidates(heatmap)
    assert confidences == [(int(i), float(c)) for i, c in expected_confidences]
    np.testing.assert_array_equal(labels, expected_labels)


def test_candidates_carry_peak_volume_and_centre_in_lps_and_ras():
    grid = Grid((10, 40, 40), (3.0, 1.0, 1.0), (-20.0, -30.0, 5.0), np.eye(3))
    heatmap = np.zeros(grid.shape)
    heatmap[4:7, 10:16, 20:24] = 0.8  # 3 × 6 × 4 = 72 voxels
    heatmap[2:4, 30:34, 5:9] = 0.3  # 2 × 4 × 4 = 32 voxels, weaker
    heatmap[8, 2, 2] = 0.9  # a single hot voxel: too small to be a candidate
    candidates, labels = extract_candidates(heatmap, grid)
    assert [c.candidate_id for c in candidates] == [1, 2]
    first, second = candidates
    assert (first.peak, first.voxels, second.peak, second.voxels) == (0.8, 72, 0.3, 32)
    assert first.volume_ml == pytest.approx(72 * 3.0 / 1000)
    np.testing.assert_allclose(first.center_index, (5.0, 12.5, 21.5))
    np.testing.assert_allclose(first.center_lps_mm, (-20.0 + 21.5, -30.0 + 12.5, 5.0 + 15.0))
    np.testing.assert_allclose(first.center_ras_mm, lps_to_ras(first.center_lps_mm))
    assert int((labels == 1).sum()) == 72 and labels[8, 2, 2] == 0
    first.probability = 0.65
    detections = detection_map(labels, candidates)
    assert set(np.unique(detections)) == {0.0, np.float32(0.65), np.float32(0.3)}


def test_empty_map_gives_no_candidates():
    candidates, labels = extract_candidates(np.zeros((4, 8, 8)), Grid((4, 8, 8), (3, 1, 1), (0, 0, 0), np.eye(3)))
    assert candidates == [] and not labels.any()

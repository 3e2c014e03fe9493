"""Candidate regions in the T2 geometry: present, apart, PI-CAI-valid; a sample of the robustness run.

The full run (300 random acquisition profiles) is ``benchmarks/robustness.py``. The cases sampled
here are ones whose candidates went missing from the T2 candidate map before the regions were
carried over by ``inference.candidate_regions`` (found by that run), plus two ordinary ones.
"""

from __future__ import annotations

import numpy as np
import pytest
import SimpleITK as sitk
from picai_eval.analysis_utils import parse_detection_map
from scipy import ndimage

from LesionAILib.evaluation.result_checks import result_problems
from LesionAILib.geometry import Grid
from LesionAILib.inference.analyzer import Analyzer, Result
from LesionAILib.inference.candidate_regions import candidate_map_in_t2
from LesionAILib.inference.candidates import Candidate, detection_map
from LesionAILib.phantom.cases import generate_case
from LesionAILib.phantom.random_profiles import random_profile
from LesionAILib.studies.files import open_files

IDENTITY = np.eye(3)
# model grid: 3 mm slices, 1 mm in-plane; T2 grid: same field of view, 4.5 mm slices, 0.5 mm in-plane
MODEL_GRID = Grid((6, 8, 8), (3.0, 1.0, 1.0), (0.0, 0.0, 0.0), IDENTITY)
T2_GRID = Grid((4, 16, 16), (4.5, 0.5, 0.5), (-0.25, -0.25, 0.75), IDENTITY)


def _candidate(candidate_id: int, probability: float) -> Candidate:
    origin = (0.0, 0.0, 0.0)
    return Candidate(candidate_id, probability, 1, 0.001, origin, origin, origin, probability)


def _nearest_in_t2(labels: np.ndarray) -> np.ndarray:
    """What plain nearest-neighbour resampling gives (SimpleITK directly, not our code)."""
    image = MODEL_GRID.image_from_array(labels.astype(np.float32))
    resampled = sitk.Resample(image, T2_GRID.reference_image(), sitk.Transform(), sitk.sitkNearestNeighbor, 0.0)
    return sitk.GetArrayFromImage(resampled).astype(np.int32)


def test_thin_region_missed_by_nearest_sampling_is_kept():
    labels = np.zeros(MODEL_GRID.shape, np.int32)
    labels[1, 2:6, 2:6] = 1  # one 3 mm model slice at z = 3 mm; T2 slice centres at 0.75, 5.25, 9.75 mm
    labels[4, 2:6, 2:6] = 2
    assert 1 not in _nearest_in_t2(labels)  # the defect this guards against
    candidates = [_candidate(2, 0.9), _candidate(1, 0.5)]
    regions = candidate_map_in_t2(labels, candidates, MODEL_GRID, T2_GRID)
    assert [c.peak for c in regions.candidates] == [0.9, 0.5] and regions.dropped == []
    assert [c.candidate_id for c in regions.candidates] == [1, 2]
    for candidate_id in (1, 2):
        assert (regions.labels == candidate_id).sum() > 0
    # the thin region lands on the T2 slice nearest to its centre (z = 3 mm -> slice 0 or 1)
    assert set(np.nonzero(regions.labels == 2)[0].tolist()) <= {0, 1}


def test_regions_that_touch_on_the_t2_lattice_are_separated_lower_probability_losing():
    labels = np.zeros(MODEL_GRID.shape, np.int32)
    labels[2, 1:4, 1:7] = 1
    labels[3, 1:4, 1:7] = 2  # adjacent slices: after resampling they share a T2 boundary
    labels[2, 5:7, 1:7] = 3  # one model voxel (1 mm) away in y from candidate 1
    nearest = _nearest_in_t2(labels)
    touching = ndimage.label(nearest > 0, structure=np.ones((3, 3, 3)))[1]
    assert touching < 3  # the defect: fewer blobs than candidates
    candidates = [_candidate(1, 0.8), _candidate(2, 0.6), _candidate(3, 0.4)]
    regions = candidate_map_in_t2(labels, candidates, MODEL_GRID, T2_GRID)
    detection = detection_map(regions.labels, regions.candidates)
    confidences, _ = parse_detection_map(detection)  # raises on touching regions of different values
    assert sorted(confidences.values(), reverse=True) == pytest.approx([0.8, 0.4])
    assert [c.peak for c in regions.candidates] == [0.8, 0.4]
    # candidate 2 lies on the next model slice right over candidate 1: on 4.5 mm T2 slices nothing
    # of it is more than one voxel from candidate 1, so it is dropped and said so
    assert len(regions.dropped) == 1 and "peak 0.600" in regions.dropped[0]
    assert "against a more probable candidate" in regions.dropped[0]
    assert (regions.labels == 1).sum() == (nearest == 1).sum()  # the most probable keeps all its voxels
    assert (regions.labels == 2).sum() > 0


def test_separation_and_largest_part_computed_in_a_box_equal_the_whole_volume_computation():
    # the box-limited steps against scipy on the whole volume, on random regions that reach the borders
    from LesionAILib.inference.candidate_regions import _away_from, _largest_component

    rng = np.random.default_rng(11)
    structure = np.ones((3, 3, 3), bool)
    checked = 0
    for _ in range(40):
        shape = tuple(int(n) for n in rng.integers(4, 14, size=3))
        claimed = ndimage.binary_dilation(rng.random(shape) < 0.02, iterations=int(rng.integers(0, 2)))
        start = rng.integers(0, np.asarray(shape) - 1)
        stop = start + rng.integers(1, np.asarray(shape) - start + 1)
        region = np.zeros(shape, bool)
        box = tuple(slice(int(a), int(b)) for a, b in zip(start, stop, strict=True))
        region[box] = rng.random(tuple(int(b - a) for a, b in zip(start, stop, strict=True))) < 0.5
        if not region.any():
            continue
        expected = region & ~ndimage.binary_dilation(claimed, structure=structure)
        np.testing.assert_array_equal(_away_from(region, claimed), expected)
        parts, count = ndimage.label(region, structure=structure)
        sizes = np.bincount(parts.ravel())[1:]
        largest = _largest_component(region)
        assert largest.sum() == sizes.max() and count >= 1
        assert np.array_equal(largest, region) if count == 1 else np.array_equal(largest, parts == 1 + np.argmax(sizes))
        checked += 1
    assert checked >= 30


def test_candidate_outside_the_t2_volume_is_dropped_and_named():
    wide = Grid((6, 8, 8), (3.0, 1.0, 1.0), (0.0, 0.0, -9.0), IDENTITY)  # three slices below the T2 volume
    labels = np.zeros(wide.shape, np.int32)
    labels[0, 2:6, 2:6] = 1
    labels[4, 2:6, 2:6] = 2
    regions = candidate_map_in_t2(labels, [_candidate(1, 0.7), _candidate(2, 0.3)], wide, T2_GRID)
    assert len(regions.candidates) == 1 and regions.candidates[0].peak == 0.3
    assert regions.candidates[0].candidate_id == 1 and set(np.unique(regions.labels).tolist()) == {0, 1}
    assert len(regions.dropped) == 1 and "peak 0.700" in regions.dropped[0]
    assert "no voxel in the T2 volume" in regions.dropped[0]


def test_result_checks_name_a_missing_candidate_and_an_invalid_detection_map():
    labels = np.zeros(T2_GRID.shape, np.uint8)
    labels[1, 2:5, 2:5] = 1
    labels[1, 5:8, 2:5] = 2  # touches candidate 1
    candidates = [_candidate(1, 0.9), _candidate(2, 0.5), _candidate(3, 0.2)]  # 3 has no region
    heat = T2_GRID.image_from_array(np.zeros(T2_GRID.shape, np.float32))
    result = Result(
        case_id="x",
        model_name="m",
        model_notice="",
        heatmap=heat,
        sequence_heatmaps={},
        detection_map=T2_GRID.image_from_array(detection_map(labels.astype(np.int32), candidates)),
        candidate_map=T2_GRID.image_from_array(labels),
        candidates=candidates,
        case_score=0.9,
        device="cpu",
    )
    problems = result_problems(result, heat)
    assert "candidate 3 is in the table but not in the candidate map" in problems
    assert any(p.startswith("picai-eval refuses the detection map") for p in problems)
    shifted = sitk.Image(heat)
    shifted.SetOrigin((1.0, 0.0, 0.0))
    assert result_problems(result, shifted)[0] == "heatmap is not in the T2 geometry"


@pytest.fixture(scope="module")
def analyzer():
    return Analyzer(None, device="cpu")


@pytest.mark.parametrize("index", [5, 16, 25, 1, 9])
def test_random_acquisition_profile_gives_consistent_outputs(index, analyzer, tmp_path):
    phantom = generate_case(seed=index, site=random_profile(index))
    paths = []
    for role in ("t2w", "adc", "hbv"):
        paths.append(tmp_path / f"{role}.mha")
        sitk.WriteImage(getattr(phantom, role), str(paths[-1]))
    case = open_files(*paths, patient_id=f"random-{index}")
    result = analyzer.analyze(case)
    assert len(result.candidates) >= 1
    assert result_problems(result, case.t2w) == []
    assert sitk.GetArrayViewFromImage(result.candidate_map).max() == len(result.candidates)

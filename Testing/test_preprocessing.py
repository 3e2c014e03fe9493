"""Geometry, resampling and normalisation: analytic checks and the real ProstateX-0000 study."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import SimpleITK as sitk
import torch
from conftest import FINDING_0000_ADC_IJK, FINDING_0000_LPS, FINDING_0000_T2_IJK

from LesionAILib.geometry import Grid, aligned_grid, lps_to_ras, ras_to_lps
from LesionAILib.preprocessing.pipeline import IntensityConfig, PreprocessConfig, normalise, preprocess, to_t2_grid
from LesionAILib.preprocessing.resampling import (
    field_of_view,
    lattice_steps,
    resample_image_with_fov,
    resample_sitk,
    sample_on_lattice,
)


def _rotation(angles_deg) -> np.ndarray:
    ax, ay, az = np.radians(angles_deg)
    rx = np.array([[1, 0, 0], [0, np.cos(ax), -np.sin(ax)], [0, np.sin(ax), np.cos(ax)]])
    ry = np.array([[np.cos(ay), 0, np.sin(ay)], [0, 1, 0], [-np.sin(ay), 0, np.cos(ay)]])
    rz = np.array([[np.cos(az), -np.sin(az), 0], [np.sin(az), np.cos(az), 0], [0, 0, 1]])
    return rz @ ry @ rx


def _linear_field(grid: Grid, gradient, constant: float) -> np.ndarray:
    k, j, i = np.meshgrid(*[np.arange(n) for n in grid.shape], indexing="ij")
    points = grid.index_to_lps(np.stack([k, j, i], -1))
    return (points @ np.asarray(gradient) + constant).astype(np.float64)


# --------------------------------------------------------------------------- geometry
def test_grid_index_and_lps_agree_with_simpleitk_on_an_oblique_grid():
    grid = Grid((7, 9, 11), (3.0, 0.7, 0.5), (-10.0, 20.0, 5.0), _rotation((17, -8, 5)))
    image = grid.reference_image()
    for index_zyx in [(0, 0, 0), (6, 8, 10), (2.5, 4.25, 7.75)]:
        expected = image.TransformContinuousIndexToPhysicalPoint(tuple(float(v) for v in index_zyx[::-1]))
        np.testing.assert_allclose(grid.index_to_lps(index_zyx), expected, atol=1e-9)
        np.testing.assert_allclose(grid.lps_to_index(expected), index_zyx, atol=1e-9)
    assert Grid.from_image(image) == grid
    assert Grid.from_dict(grid.to_dict()) == grid


def test_lps_ras_flip_negates_x_and_y_only():
    point = np.array([25.7457, 31.8707, -38.511])
    np.testing.assert_allclose(lps_to_ras(point), [-25.7457, -31.8707, -38.511])
    np.testing.assert_allclose(ras_to_lps(lps_to_ras(point)), point)


def test_aligned_grid_is_centred_and_snapped_onto_the_reference_lattice():
    reference = Grid((19, 384, 384), (3.0, 0.5, 0.5), (-57.7, -82.4, -27.1), _rotation((18.5, 0.1, 0)))
    grid = aligned_grid(reference, (20, 256, 256), (3.0, 0.5, 0.5))
    assert np.linalg.norm(grid.center_lps - reference.center_lps) <= 0.5 * 3.0 + 1e-9
    index = reference.lps_to_index(grid.index_to_lps([[0, 0, 0], [19, 255, 255]]))
    np.testing.assert_allclose(index, np.round(index), atol=1e-6)
    unsnapped = aligned_grid(reference, (20, 256, 256), (3.0, 0.5, 0.5), snap=False)
    np.testing.assert_allclose(unsnapped.center_lps, reference.center_lps, atol=1e-9)
    point = (12.0, -3.0, 7.5)
    centred = aligned_grid(reference, (10, 64, 64), (3.0, 1.0, 1.0), center_lps=point, snap=False)
    np.testing.assert_allclose(centred.center_lps, point, atol=1e-9)


# --------------------------------------------------------------------------- resampling
@pytest.mark.parametrize("backend", ["sitk", "torch"])
def test_linear_resampling_between_oblique_grids_reproduces_a_linear_field_exactly(backend):
    source = Grid((12, 40, 44), (3.0, 2.0, 2.0), (-40.0, -35.0, -20.0), _rotation((20, 3, -4)))
    target = aligned_grid(
        Grid((1, 1, 1), (1, 1, 1), (0, 0, 0), _rotation((-10, 8, 12))),
        (10, 60, 60),
        (2.5, 1.0, 1.0),
        center_lps=source.center_lps,
        snap=False,
    )
    gradient, constant = (0.3, -1.1, 0.7), 500.0
    image = source.image_from_array(_linear_field(source, gradient, constant).astype(np.float32))
    values, inside = resample_image_with_fov(image, target, "linear", "cpu", backend)
    # strictly inside the source's voxel block (all 8 neighbours exist): trilinear is exact
    strict = torch.from_numpy(
        source.contains_index(
            source.lps_to_index(
                target.index_to_lps(np.stack(np.meshgrid(*[np.arange(n) for n in target.shape], indexing="ij"), -1))
            ),
            margin=0.0,
        )
    )
    assert strict.sum() > 0.3 * strict.numel() and bool(inside[strict].all())
    expected = _linear_field(target, gradient, constant)
    np.testing.assert_allclose(values.numpy()[strict.numpy()], expected[strict.numpy()], rtol=0, atol=2e-3)
    assert float(values[~inside].abs().max()) == 0.0


def test_nearest_resampling_keeps_labels_and_lands_a_voxel_where_its_centre_is():
    source = Grid((10, 30, 30), (3.0, 1.0, 1.0), (0.0, 0.0, 0.0), _rotation((15, 0, 0)))
    labels = np.zeros(source.shape, np.uint8)
    labels[4, 10, 12] = 7
    image = source.image_from_array(labels)
    target = aligned_grid(source, (10, 60, 60), (3.0, 0.5, 0.5))
    for backend in ("sitk", "torch"):
        out = resample_image_with_fov(image, target, "nearest", "cpu", backend)[0].numpy()
        assert set(np.unique(out)) <= {0.0, 7.0}
        hits = np.argwhere(out == 7)
        centre_in_source = source.lps_to_index(target.index_to_lps(hits.mean(0)))
        np.testing.assert_allclose(centre_in_source, (4, 10, 12), atol=0.3)


def _sitk_on(image: sitk.Image, grid: Grid, interpolator: int) -> np.ndarray:
    resampled = sitk.Resample(
        image, grid.reference_image(), sitk.Transform(), interpolator, float("nan"), sitk.sitkFloat32
    )
    return sitk.GetArrayFromImage(resampled)


_ORDERS = {"linear": sitk.sitkLinear, "bspline": sitk.sitkBSpline, "nearest": sitk.sitkNearestNeighbor}


@pytest.mark.parametrize("order", sorted(_ORDERS))
def test_a_grid_on_the_source_lattice_is_copied_with_the_values_simpleitk_interpolates(order):
    rotation = _rotation((12, -5, 3))
    source = Grid((9, 13, 17), (2.5, 0.8, 0.6), (-20.0, 4.0, 11.0), rotation)
    data = np.random.default_rng(5).integers(0, 4000, size=source.shape).astype(np.uint16)
    image = source.apply_to(sitk.GetImageFromArray(data))

    def on_lattice(start_zyx, stride_zyx, shape):
        origin = source.index_to_lps(start_zyx)  # the target's voxel [0, 0, 0] on a source voxel centre
        spacing = tuple(float(st * sp) for st, sp in zip(stride_zyx, source.spacing, strict=True))
        return Grid(shape, spacing, tuple(float(v) for v in origin), rotation)

    cases = [
        # (target start in source index z, y, x; stride; shape) and the (start, step) pairs expected
        ((0, 0, 0), (1, 1, 1), (9, 13, 17)),  # the source grid itself
        ((-2, 3, -4), (1, 1, 1), (12, 8, 25)),  # overhangs the source before and after
        ((-1, -3, 1), (2, 3, 2), (6, 6, 9)),  # every 2nd / 3rd source voxel, starting outside
        ((12, 0, 0), (1, 1, 1), (3, 5, 5)),  # wholly beyond the last slice
    ]
    for start, stride, shape in cases:
        grid = on_lattice(start, stride, shape)
        steps = lattice_steps(source, grid)
        assert steps == tuple(zip(start, stride, strict=True))
        ours = sample_on_lattice(sitk.GetArrayViewFromImage(image), steps, shape, float("nan"))
        expected = _sitk_on(image, grid, _ORDERS[order])
        assert ours.dtype == np.float32 and ours.shape == shape
        assert np.array_equal(np.isnan(ours), np.isnan(expected)), (start, stride)
        inside = ~np.isnan(expected)
        assert inside.any() == (start[0] < 9), "the last case lies outside, the others overlap"
        # B-spline returns the samples only up to its prefilter's float round-off
        np.testing.assert_allclose(ours[inside], expected[inside], atol=0.05 if order == "bspline" else 1e-3)

    # not on the lattice: half a voxel off, a spacing 1.5 × the source's, a 1° turn, a flipped axis
    assert lattice_steps(source, on_lattice((0, 0, 0.5), (1, 1, 1), (4, 4, 4))) is None
    assert lattice_steps(source, on_lattice((0, 0, 0), (1, 1.5, 1), (4, 4, 4))) is None
    turned = Grid((4, 4, 4), source.spacing, source.origin, rotation @ _rotation((0, 0, 1)))
    assert lattice_steps(source, turned) is None
    flipped = Grid((4, 4, 4), source.spacing, source.origin, rotation @ np.diag([-1.0, 1.0, 1.0]))
    assert lattice_steps(source, flipped) is None


@pytest.mark.realdata
def test_prostatex_0000_t2_under_its_model_grid_is_copied_and_matches_simpleitk(case_0000):
    for shape, spacing in (((20, 256, 256), (3.0, 0.5, 0.5)), ((20, 96, 96), (3.0, 1.0, 1.0))):
        for order in ("linear", "bspline"):
            prepared = preprocess(
                case_0000, PreprocessConfig(shape=shape, spacing=spacing, interpolation=order), device="cpu"
            )
            assert lattice_steps(case_0000.grid("t2w"), prepared.grid) is not None
            assert lattice_steps(case_0000.grid("adc"), prepared.grid) is None  # the DWI is interpolated
            raw = _sitk_on(case_0000.t2w, prepared.grid, _ORDERS[order])
            inside = ~np.isnan(raw)
            assert np.array_equal(prepared.fov[0].numpy(), inside)
            assert 0 < inside.sum() < inside.size  # the 20th slice lies beyond the 19-slice T2
            applied = prepared.normalisation["t2w"]
            clipped = np.clip(raw[inside].astype(np.float64), applied["low"], applied["high"])
            expected = (clipped - clipped.mean()) / clipped.std()
            np.testing.assert_allclose(prepared.channel("t2w").numpy()[inside], expected, atol=2e-4)
            assert float(np.abs(prepared.channel("t2w").numpy()[~inside]).max()) == 0.0


@pytest.mark.realdata
@pytest.mark.parametrize("role", ["adc", "hbv", "t2w"])
def test_torch_resampling_matches_simpleitk_on_prostatex_0000(case_0000, role):
    grid = aligned_grid(case_0000.grid("t2w"), (20, 256, 256), (3.0, 0.5, 0.5))
    image = case_0000.image(role)
    reference = resample_sitk(image, grid, "linear")
    ours, inside = resample_image_with_fov(image, grid, "linear", "cpu", backend="torch")
    inside = inside.numpy()
    assert inside.mean() > 0.85, "the T2-centred grid lies almost entirely inside each series"
    np.testing.assert_array_equal(inside, field_of_view(case_0000.grid(role), grid, "cpu").numpy())
    error = np.abs(ours.numpy() - reference)[inside]
    assert error.max() / np.abs(reference[inside]).max() < 1e-3
    assert np.median(error / np.maximum(np.abs(reference[inside]), 1.0)) < 1e-5


# --------------------------------------------------------------------------- the finding through every path
@pytest.mark.realdata
def test_prostatex_0000_finding_reaches_the_same_voxel_through_every_path(case_0000):
    prepared = preprocess(case_0000, device="cpu")
    grid = prepared.grid
    via_lps = grid.lps_to_index(FINDING_0000_LPS)
    via_sitk = grid.reference_image().TransformPhysicalPointToContinuousIndex(FINDING_0000_LPS)[::-1]
    np.testing.assert_allclose(via_sitk, via_lps, atol=1e-6)
    # the README's indices are rounded to 0.1 voxel: ≤ 0.05 voxel, i.e. ≤ 0.025 mm (T2) and 0.1 mm (ADC) in-plane
    for source, index, tolerance_mm in (("t2w", FINDING_0000_T2_IJK, 0.16), ("adc", FINDING_0000_ADC_IJK, 0.2)):
        point = case_0000.grid(source).index_to_lps(index[::-1])
        assert np.linalg.norm(point - FINDING_0000_LPS) < tolerance_mm
        offset_mm = (grid.lps_to_index(point) - via_lps) * grid.spacing
        assert np.linalg.norm(offset_mm) < tolerance_mm
    # a marker on the T2 voxel holding the finding lands on the matching target voxel (both resamplers)...
    t2_voxel = (8, 224, 167)  # the finding sits on the boundary between slices 8 and 9 (k = 8.5)
    marker = np.zeros(case_0000.grid("t2w").shape, np.uint8)
    marker[t2_voxel] = 1
    marker_image = case_0000.grid("t2w").image_from_array(marker)
    expected = np.round(grid.lps_to_index(case_0000.grid("t2w").index_to_lps(t2_voxel))).astype(int)
    for backend in ("sitk", "torch"):
        moved = resample_image_with_fov(marker_image, grid, "nearest", "cpu", backend)[0].numpy()
        assert moved.sum() == 1 and tuple(np.argwhere(moved == 1)[0]) == tuple(expected)
    # ...and comes back onto the same T2 voxel through the inverse path
    back = sitk.GetArrayFromImage(to_t2_grid(moved, grid, prepared.t2_grid, "nearest"))
    assert tuple(np.argwhere(back == 1)[0]) == t2_voxel
    assert np.all(np.abs(via_lps - expected) <= (0.51, 0.5, 0.5)), "the marker voxel is the finding's voxel"


@pytest.mark.realdata
def test_expert_lesion_mask_keeps_its_position_in_the_target_grid(case_0000, prostatex_dir):
    mask = sitk.ReadImage(str(prostatex_dir / "labels/ProstateX-0000_lesions.nii.gz"))
    mask.CopyInformation(case_0000.t2w)
    case = dataclasses.replace(case_0000, lesion_mask=mask)
    prepared = preprocess(case, device="cpu")
    assert int((prepared.lesion_mask == 3).sum()) == 427, "same spacing and snapped lattice: no voxel lost"
    centroid_target = prepared.grid.index_to_lps(np.argwhere(prepared.lesion_mask.numpy() == 3).mean(0))
    centroid_t2 = case.grid("t2w").index_to_lps(np.argwhere(sitk.GetArrayFromImage(mask) == 3).mean(0))
    np.testing.assert_allclose(centroid_target, centroid_t2, atol=1e-3)
    assert abs(np.linalg.norm(centroid_t2 - FINDING_0000_LPS) - 2.7) < 0.2  # the data README's 2.7 mm
    adc_in_lesion = float(prepared.channel("adc")[prepared.lesion_mask == 3].median())
    assert 0.8 < adc_in_lesion < 1.3, "ADC stays physical (10⁻³ mm²/s): this GG3 lesion's median is ≈ 1.1"


@pytest.mark.realdata
def test_round_trip_target_to_t2_to_target_is_consistent(case_0000):
    prepared = preprocess(case_0000, device="cpu")
    grid = prepared.grid
    k, j, i = np.meshgrid(*[np.arange(n) for n in grid.shape], indexing="ij")
    heatmap = np.exp(-(((j - 140) / 20.0) ** 2 + ((i - 110) / 25.0) ** 2 + ((k - 9) / 3.0) ** 2)).astype(np.float32)
    on_t2 = to_t2_grid(torch.from_numpy(heatmap), grid, prepared.t2_grid, "linear")
    assert Grid.from_image(on_t2) == prepared.t2_grid and on_t2.GetSize() == case_0000.t2w.GetSize()
    back, inside = resample_image_with_fov(on_t2, grid, "linear", "cpu", "sitk")
    covered = inside.numpy() & (k < 19)  # the target's 20th slice lies beyond the 19-slice T2
    np.testing.assert_allclose(back.numpy()[covered], heatmap[covered], atol=1e-5)
    via_torch = to_t2_grid(torch.from_numpy(heatmap), grid, prepared.t2_grid, "linear", backend="torch")
    np.testing.assert_allclose(sitk.GetArrayViewFromImage(via_torch), sitk.GetArrayViewFromImage(on_t2), atol=1e-4)


# --------------------------------------------------------------------------- normalisation
@pytest.mark.realdata
def test_normalisation_t2_and_hbv_robust_zscore_adc_physical_scale(case_0000):
    prepared = preprocess(case_0000, device="cpu")
    grid = prepared.grid
    for role in ("t2w", "hbv"):
        values = prepared.channel(role)[prepared.fov[prepared.roles.index(role)]]
        assert abs(float(values.mean())) < 1e-3 and abs(float(values.std()) - 1.0) < 1e-3
        raw = resample_sitk(case_0000.image(role), grid, "linear")
        config = PreprocessConfig().intensity[role]
        inside = raw[prepared.fov[prepared.roles.index(role)].numpy()]
        applied = prepared.normalisation[role]
        # percentiles are estimated on a strided subsample: check their rank, not their value
        above = 100.0 * np.mean(inside > applied["high"])
        assert 0.5 * (100 - config.high) <= above <= 2.0 * (100 - config.high)
        below = 100.0 * np.mean(inside < applied["low"])
        assert below <= 2.0 * config.low
    adc_raw = resample_sitk(case_0000.adc, grid, "linear")
    inside = prepared.fov[1].numpy()
    np.testing.assert_allclose(
        prepared.channel("adc").numpy()[inside], np.clip(adc_raw[inside] / 1000.0, 0, 4), rtol=1e-6
    )


def test_normalise_outside_field_is_zero_and_config_is_validated():
    volume = torch.arange(1000, dtype=torch.float32).reshape(10, 10, 10)
    inside = torch.zeros(10, 10, 10, dtype=torch.bool)
    inside[2:8] = True
    out, applied = normalise(volume.clone(), inside, IntensityConfig("robust_zscore", 5, 95))
    assert float(out[~inside].abs().max()) == 0.0
    assert applied["low"] == pytest.approx(np.percentile(volume[inside].numpy(), 5), rel=0.02)
    with pytest.raises(Exception, match="percentiles"):
        IntensityConfig("robust_zscore", 50, 10)
    config = PreprocessConfig(shape=(16, 96, 96), spacing=(3.0, 1.0, 1.0))
    assert PreprocessConfig.from_dict(config.to_dict()) == config


@pytest.mark.realdata
def test_preprocess_centred_on_a_point_and_with_a_custom_grid(case_0000):
    config = PreprocessConfig(shape=(8, 64, 64), spacing=(3.0, 1.0, 1.0))
    prepared = preprocess(case_0000, config, center_lps=FINDING_0000_LPS, device="cpu")
    assert tuple(prepared.image.shape) == (3, 8, 64, 64)
    assert np.all(np.abs(prepared.grid.center_lps - FINDING_0000_LPS) <= 1.5 + 1e-6)
    np.testing.assert_allclose(prepared.grid.direction_matrix, case_0000.grid("t2w").direction_matrix)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU (run benchmarks/gpu_check.sh there)")
@pytest.mark.realdata
def test_cuda_preprocessing_matches_cpu(case_0000):
    cpu = preprocess(case_0000, device="cpu")
    gpu = preprocess(case_0000, device="cuda")
    assert gpu.image.device.type == "cuda"
    inside = cpu.fov.numpy()
    difference = np.abs(gpu.image.cpu().numpy() - cpu.image.numpy())[inside]
    assert difference.max() < 1e-2 and np.array_equal(gpu.fov.cpu().numpy(), inside)

"""Interpolation order of the images (trilinear or cubic B-spline): torch vs SimpleITK, accuracy, the option."""

from __future__ import annotations

import argparse
import dataclasses
import json

import numpy as np
import pytest
import SimpleITK as sitk
import torch
from conftest import save_tiny_model

from LesionAILib.cli.main import build_parser, main
from LesionAILib.errors import ConfigError
from LesionAILib.geometry import Grid, aligned_grid
from LesionAILib.preprocessing.bspline import bspline_coefficients
from LesionAILib.preprocessing.percentiles import percentiles
from LesionAILib.preprocessing.pipeline import (
    DEFAULT_INTENSITY,
    IMAGE_INTERPOLATIONS,
    PreprocessConfig,
    normalise,
    preprocess,
)
from LesionAILib.preprocessing.resampling import field_of_view, resample_image_with_fov

# the smooth test field: 100 + 50 · sin(2πx/24) · cos(2πy/30) · sin(2πz/36 + 0.3), LPS mm
AMPLITUDE, WAVELENGTHS_MM = 50.0, np.array([24.0, 30.0, 36.0])


def _rotation(angles_deg) -> np.ndarray:
    ax, ay, az = np.radians(angles_deg)
    rx = np.array([[1, 0, 0], [0, np.cos(ax), -np.sin(ax)], [0, np.sin(ax), np.cos(ax)]])
    ry = np.array([[np.cos(ay), 0, np.sin(ay)], [0, 1, 0], [-np.sin(ay), 0, np.cos(ay)]])
    rz = np.array([[np.cos(az), -np.sin(az), 0], [np.sin(az), np.cos(az), 0], [0, 0, 1]])
    return rz @ ry @ rx


def _voxel_centres_lps(grid: Grid) -> np.ndarray:
    return grid.index_to_lps(np.stack(np.meshgrid(*[np.arange(n) for n in grid.shape], indexing="ij"), -1))


def _smooth_field(points_lps: np.ndarray) -> np.ndarray:
    x, y, z = (points_lps[..., axis] * 2 * np.pi / WAVELENGTHS_MM[axis] for axis in range(3))
    return 100.0 + AMPLITUDE * np.sin(x) * np.cos(y) * np.sin(z + 0.3)


def _oblique_pair(source_shape=(16, 40, 40)) -> tuple[Grid, Grid]:
    """A source grid (3 × 2 × 2 mm) and an oblique finer target inside it, rotated differently."""
    source = Grid(source_shape, (3.0, 2.0, 2.0), (-40.0, -40.0, -24.0), _rotation((12, -5, 8)))
    frame = Grid((1, 1, 1), (1, 1, 1), (0, 0, 0), _rotation((-6, 9, -14)))
    return source, aligned_grid(frame, (12, 50, 50), (2.0, 1.0, 1.0), center_lps=source.center_lps, snap=False)


# --------------------------------------------------------------------------- torch B-spline vs SimpleITK
@pytest.mark.parametrize("shape", [(1, 6, 40), (2, 5, 3), (7, 12, 30), (19, 33, 84)])
def test_prefilter_gives_simpleitks_bspline_coefficients(shape):
    # lengths below and above ITK's 18-sample horizon take its two initialisations of the causal pass
    samples = np.random.default_rng(sum(shape)).normal(100.0, 30.0, shape)
    expected = sitk.GetArrayFromImage(sitk.BSplineDecomposition(sitk.GetImageFromArray(samples), 3))
    ours = bspline_coefficients(torch.from_numpy(samples)[None])[0].numpy()
    np.testing.assert_allclose(ours, expected, rtol=0, atol=1e-9 * np.abs(expected).max())


@pytest.mark.parametrize("backend", ["sitk", "torch"])
def test_bspline_reproduces_the_samples_on_the_source_grid(backend):
    # an interpolating spline passes through the samples: resampling onto the source grid is the identity
    source, _ = _oblique_pair((6, 14, 18))
    samples = np.random.default_rng(5).normal(500.0, 120.0, source.shape).astype(np.float32)
    values, inside = resample_image_with_fov(source.image_from_array(samples), source, "bspline", "cpu", backend)
    assert bool(inside.all())
    np.testing.assert_allclose(values.numpy(), samples, rtol=0, atol=1e-3)


def test_torch_bspline_matches_simpleitk_between_oblique_grids():
    source, target = _oblique_pair((10, 24, 26))
    noise = np.random.default_rng(8).normal(400.0, 150.0, source.shape).astype(np.float32)  # the hardest signal
    image = source.image_from_array(noise)
    expected, expected_inside = resample_image_with_fov(image, target, "bspline", "cpu", "sitk")
    ours, inside = resample_image_with_fov(image, target, "bspline", "cpu", "torch")
    np.testing.assert_array_equal(inside.numpy(), expected_inside.numpy())
    assert 0.5 < float(inside.float().mean()) < 1.0, "the target reaches past the source: the border is tested"
    error = np.abs(ours.numpy() - expected.numpy())
    assert error.max() < 1e-5 * float(expected.abs().max()), "float32 rounding, not an approximation"
    assert float(ours[~inside].abs().max()) == 0.0


@pytest.mark.realdata
@pytest.mark.parametrize("role", ["adc", "hbv"])
def test_torch_bspline_matches_simpleitk_on_prostatex_0000(case_0000, role):
    grid = aligned_grid(case_0000.grid("t2w"), (20, 96, 96), (3.0, 1.0, 1.0))
    image = case_0000.image(role)
    expected, _ = resample_image_with_fov(image, grid, "bspline", "cpu", "sitk")
    ours, inside = resample_image_with_fov(image, grid, "bspline", "cpu", "torch")
    np.testing.assert_array_equal(inside.numpy(), field_of_view(case_0000.grid(role), grid).numpy())
    inside = inside.numpy()
    error = np.abs(ours.numpy() - expected.numpy())[inside]
    assert error.max() < 1e-5 * np.abs(expected.numpy()[inside]).max()


# --------------------------------------------------------------------------- accuracy
@pytest.mark.parametrize("backend", ["sitk", "torch"])
def test_bspline_is_closer_than_linear_to_a_smooth_field(backend):
    source, target = _oblique_pair()
    image = source.image_from_array(_smooth_field(_voxel_centres_lps(source)).astype(np.float32))
    points = _voxel_centres_lps(target)
    truth = _smooth_field(points)  # the field's exact value at each target voxel centre
    index = source.lps_to_index(points)
    # away from the border, where both interpolators see the field itself and not its mirror or edge
    interior = np.all((index >= 2) & (index <= np.array(source.shape) - 3), -1)
    assert interior.mean() > 0.9
    rmse, worst = {}, {}
    for mode in IMAGE_INTERPOLATIONS:
        values, _ = resample_image_with_fov(image, target, mode, "cpu", backend)
        error = values.numpy()[interior] - truth[interior]
        rmse[mode], worst[mode] = float(np.sqrt(np.mean(error**2))), float(np.abs(error).max())
    # trilinear error ≤ Σ h²/8 · max |∂²f| along the source axes, and |∂²f/∂u²| ≤ A · Σ (2π/λ)²
    bound = sum(h**2 / 8 for h in source.spacing) * AMPLITUDE * float(np.sum((2 * np.pi / WAVELENGTHS_MM) ** 2))
    assert 0.3 < rmse["linear"] and worst["linear"] <= bound, "samples fall between the voxels, within the bound"
    assert rmse["bspline"] < 0.1 * rmse["linear"]
    assert worst["bspline"] < 0.02 * AMPLITUDE


# --------------------------------------------------------------------------- the option through the pipeline
def test_interpolation_option_is_validated_and_kept_in_the_config():
    with pytest.raises(ConfigError, match="unknown interpolation 'cubic'; use one of linear, bspline"):
        PreprocessConfig(interpolation="cubic")
    config = PreprocessConfig(shape=(8, 32, 32), interpolation="bspline")
    assert PreprocessConfig.from_dict(config.to_dict()) == config and config.to_dict()["interpolation"] == "bspline"
    written_before = {key: value for key, value in config.to_dict().items() if key != "interpolation"}
    assert PreprocessConfig.from_dict(written_before).interpolation == "linear", "model files without it: trilinear"
    assert PreprocessConfig().interpolation == "linear"


@pytest.mark.realdata
def test_bspline_preprocessing_has_the_linear_geometry_and_differs_only_where_interpolated(case_0000):
    config = PreprocessConfig(shape=(20, 96, 96), spacing=(3.0, 1.0, 1.0))
    linear = preprocess(case_0000, config, device="cpu")
    bspline = preprocess(case_0000, dataclasses.replace(config, interpolation="bspline"), device="cpu")
    assert bspline.grid == linear.grid and bspline.t2_grid == linear.t2_grid
    assert tuple(bspline.image.shape) == (3, 20, 96, 96) and bspline.image.dtype == torch.float32
    np.testing.assert_array_equal(bspline.fov.numpy(), linear.fov.numpy())
    inside = linear.fov.numpy()
    # the snapped grid's voxels lie on T2 voxel centres (1 mm = 2 T2 voxels): neither order interpolates T2
    t2 = slice(0, 1)
    np.testing.assert_allclose(bspline.image.numpy()[t2][inside[t2]], linear.image.numpy()[t2][inside[t2]], atol=1e-3)
    # ADC and high-b (2 mm voxels) are interpolated: the orders differ there, by a few per cent of the contrast
    for channel in (1, 2):
        difference = np.abs(bspline.image.numpy()[channel] - linear.image.numpy()[channel])[inside[channel]]
        assert 0.01 < float(np.mean(difference)) < 0.5, bspline.roles[channel]


def test_normalise_ignores_what_lies_outside_the_field_of_view():
    rng = np.random.default_rng(3)
    volume = rng.normal(300.0, 80.0, (6, 40, 40)).astype(np.float32)
    inside = np.zeros(volume.shape, bool)
    inside[1:5, 5:35, 8:30] = True
    marked = np.where(inside, volume, np.nan).astype(np.float32)  # how the CPU path marks "outside"
    zeroed = np.where(inside, volume, 0).astype(np.float32)
    for role, config in DEFAULT_INTENSITY.items():
        out = np.full(volume.shape, 7.0, np.float32)
        from_marked, applied = normalise(marked, inside, config, out=out)
        assert from_marked is out and not np.isnan(out).any() and float(np.abs(out[~inside]).max()) == 0.0, role
        from_torch, applied_torch = normalise(torch.from_numpy(zeroed), torch.from_numpy(inside), config)
        np.testing.assert_allclose(from_marked, from_torch.numpy(), rtol=0, atol=1e-5, err_msg=role)
        assert applied == pytest.approx(applied_torch, rel=1e-4)


@pytest.mark.parametrize("size", [16, 999, 5000, 327_680])
def test_tail_percentiles_are_numpys_exactly(size):
    rng = np.random.default_rng(size)
    for values in (rng.normal(0, 100, size), rng.integers(0, 40, size), rng.exponential(1.0, size)):
        values = values.astype(np.float32)  # the integers give ties at the cut points
        for q in ([0.5, 99.5], [0.5, 99.9], [0.0, 100.0], [5.0, 50.0], [1.0, 99.0]):
            assert percentiles(values, q) == [float(v) for v in np.percentile(values, q)], (size, q)


# --------------------------------------------------------------------------- command line
def test_every_command_that_preprocesses_offers_exactly_the_engines_interpolations():
    commands = next(a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction)).choices
    for name in ("preprocess", "analyze", "demo"):
        option = next(a for a in commands[name]._actions if "--interpolation" in a.option_strings)
        assert tuple(option.choices) == IMAGE_INTERPOLATIONS, name
        assert option.default == ("linear" if name == "preprocess" else None), name


@pytest.mark.realdata
def test_preprocess_command_takes_the_interpolation_and_records_it(prostatex_dir, tmp_path, capsys):
    study = str(prostatex_dir / "ProstateX-0000")
    grid = ["--shape", "8", "32", "32", "--spacing", "3", "3", "3", "--device", "cpu"]
    written = {}
    for order in IMAGE_INTERPOLATIONS:
        assert main(["preprocess", study, "--out", str(tmp_path / order), "--interpolation", order, *grid]) == 0
        record = json.loads((tmp_path / order / "preprocess.json").read_text())
        assert record["config"]["interpolation"] == order
        written[order] = sitk.GetArrayFromImage(sitk.ReadImage(str(tmp_path / order / "adc.nii.gz")))
    assert np.abs(written["bspline"] - written["linear"]).max() > 0.01, "the option reaches the resampler"
    with pytest.raises(SystemExit) as exit_info:
        main(["preprocess", study, "--out", str(tmp_path / "bad"), "--interpolation", "cubic"])
    assert exit_info.value.code == 2 and "invalid choice: 'cubic'" in capsys.readouterr().err


@pytest.mark.realdata
def test_analyze_command_takes_the_interpolation_and_records_it_in_result_json(prostatex_dir, tmp_path):
    model = save_tiny_model(tmp_path / "tiny.safetensors", "tiny-interpolation", seed=4)
    study = str(prostatex_dir / "ProstateX-0000")
    heatmaps = {}
    for order in (None, "bspline"):
        out = tmp_path / str(order)
        option = [] if order is None else ["--interpolation", order]
        arguments = ["analyze", study, "--out", str(out), "--model", str(model), "--device", "cpu", "--no-figures"]
        assert main([*arguments, *option]) == 0
        summary = json.loads((out / "result.json").read_text())
        assert summary["preprocessing"] == {"interpolation": order or "linear", "labels": "nearest"}
        heatmaps[order] = sitk.GetArrayFromImage(sitk.ReadImage(str(out / "heatmap.nrrd")))
    assert heatmaps[None].shape == heatmaps["bspline"].shape
    assert not np.array_equal(heatmaps[None], heatmaps["bspline"]), "the model saw B-spline-resampled images"


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU (run benchmarks/gpu_check.sh there)")
@pytest.mark.realdata
def test_cuda_bspline_preprocessing_matches_cpu(case_0000):
    config = PreprocessConfig(interpolation="bspline")
    cpu = preprocess(case_0000, config, device="cpu")
    gpu = preprocess(case_0000, config, device="cuda")
    assert gpu.image.device.type == "cuda"
    inside = cpu.fov.numpy()
    np.testing.assert_array_equal(gpu.fov.cpu().numpy(), inside)
    assert np.abs(gpu.image.cpu().numpy() - cpu.image.numpy())[inside].max() < 1e-2

"""Abnormality by synthesis: masking geometry, aggregation, normalisation, a model trained in seconds, outputs."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk
import torch

from LesionAILib.cli.main import main
from LesionAILib.errors import ConfigError, ModelFileError
from LesionAILib.phantom.cases import generate_case
from LesionAILib.synthesis.mapping import MaskSettings, discrepancy_map
from LesionAILib.synthesis.masking import MaskBox, aggregate_boxes, random_training_mask, sliding_boxes
from LesionAILib.synthesis.model_file import SynthesisMetadata, load_synthesis_model, save_synthesis_model
from LesionAILib.synthesis.network import InpaintingConfig, InpaintingNet
from LesionAILib.synthesis.normalisation import MAD_TO_SD, NormalTissueStatistics, candidate_scale, combine
from LesionAILib.synthesis.training import lesion_free
from LesionAILib.synthesis.volumes import phantom_volume

HELD_OUT_SEED = 7  # site A, index 0: a grade-group-4 cancer and a BPH nodule (the demo case)


pytestmark = pytest.mark.usefixtures("one_torch_thread")


# --------------------------------------------------------------------------- masking geometry
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_sliding_boxes_cover_every_region_voxel_and_only_boxes_touching_it(seed):
    rng = np.random.default_rng(seed)
    region = np.zeros((13, 50, 47), bool)
    centre = rng.uniform([3, 10, 10], [10, 40, 37])
    axes = np.meshgrid(*[np.arange(n) for n in region.shape], indexing="ij")
    region[sum(((a - c) / r) ** 2 for a, c, r in zip(axes, centre, (4, 14, 11), strict=True)) <= 1] = True
    region[0, 0, 0] = region[-1, -1, -1] = True  # corners: the last box must be moved back onto them
    boxes = sliding_boxes(region, (4, 16, 16), (2, 8, 8))
    covered = np.zeros(region.shape, np.int32)
    for box in boxes:
        assert box.size == (4, 16, 16)
        assert all(0 <= s and s + n <= length for s, n, length in zip(box.start, box.size, region.shape, strict=True))
        assert region[box.slices].any()
        covered[box.slices] += 1
    assert (covered[region] >= 1).all()
    assert covered[region].mean() > 4  # half-size strides: most voxels are seen from several contexts


def test_stride_larger_than_the_box_is_refused():
    with pytest.raises(ConfigError, match="stride"):
        sliding_boxes(np.ones((8, 32, 32), bool), (4, 8, 8), (2, 9, 8))


def test_aggregation_is_the_mean_over_the_covering_boxes():
    boxes = [MaskBox((0, 0), (2, 3)), MaskBox((1, 1), (2, 3)), MaskBox((0, 2), (1, 1))]
    values = [np.full((1, 2, 3), 1.0), np.full((1, 2, 3), 4.0), np.full((1, 1, 1), 10.0)]
    mean, count = aggregate_boxes(values, boxes, (3, 4))
    expected = np.array([[1, 1, 11 / 2, 0], [1, 5 / 2, 5 / 2, 4], [0, 4, 4, 4]], float)
    np.testing.assert_allclose(mean[0], expected)
    np.testing.assert_array_equal(count, [[1, 1, 2, 0], [1, 2, 2, 1], [0, 1, 1, 1]])


def test_random_training_masks_vary_and_stay_inside_the_crop():
    rng = np.random.default_rng(3)
    masks = [random_training_mask((8, 32, 32), rng, (2, 6, 6), (5, 16, 16)) for _ in range(40)]
    sizes = [int(m.sum()) for m in masks]
    assert min(sizes) >= 1 and len(set(sizes)) > 10
    assert max(sizes) <= 5 * 16 * 16


# --------------------------------------------------------------------------- normalisation
def test_robust_zscore_of_a_known_distribution():
    statistics = NormalTissueStatistics.fit(("t2w",), np.array([[1.0, 2.0, 3.0, 4.0, 5.0]]))
    assert statistics.median == (3.0,) and statistics.mad == (1.0,)
    np.testing.assert_allclose(
        statistics.zscores(np.array([3.0 + MAD_TO_SD, 3.0 - 2 * MAD_TO_SD])[None]), [[1.0, -2.0]]
    )
    gaussian = np.random.default_rng(0).normal(2.0, 0.5, (2, 200_000))
    gaussian[1] = gaussian[1] * 2.0 + 1.0  # second sequence: N(5, 1)
    fitted = NormalTissueStatistics.fit(("adc", "hbv"), gaussian)
    z = fitted.zscores(np.array([[3.0], [7.0]]))  # both two standard deviations above their mean
    np.testing.assert_allclose(z[:, 0], [2.0, 2.0], atol=0.03)
    np.testing.assert_allclose(combine(z), [2.0], atol=0.03)
    np.testing.assert_allclose(candidate_scale(np.array([-1.0, 5.0, 25.0])), [0.0, 0.5, 1.0])


# --------------------------------------------------------------------------- a model trained in seconds
@pytest.fixture(scope="module")
def tiny_synthesis_model(phantom_cohort, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("synthesis") / "tiny-synthesis.safetensors"
    status = main(
        [
            "train-synthesis",
            "--train",
            str(phantom_cohort),
            "--out",
            str(out),
            "--steps",
            "40",
            "--batch",
            "2",
            "--width",
            "4",
            "--synthetic",
            "--device",
            "cpu",
        ]
    )
    assert status == 0
    return out


def test_training_reports_json_lines_and_the_card_names_its_data(tiny_synthesis_model):
    events = [
        json.loads(line)
        for line in tiny_synthesis_model.with_name(tiny_synthesis_model.name + ".run")
        .joinpath("progress.jsonl")
        .read_text()
        .splitlines()
    ]
    steps = [e["done"] for e in events if e["event"] == "progress" and e["stage"] == "train"]
    assert steps[-1] == 40 and steps == sorted(steps)
    _, metadata = load_synthesis_model(tiny_synthesis_model)
    assert metadata.synthetic_training_data and len(metadata.training["calibration_cases"]) >= 1
    assert set(metadata.training["training_cases"]).isdisjoint(metadata.training["calibration_cases"])
    assert metadata.normal_tissue.samples > 1000 and all(m > 0 for m in metadata.normal_tissue.mad)


def test_abnormality_is_higher_inside_a_held_out_cancer_than_in_normal_gland(tiny_synthesis_model):
    net, metadata = load_synthesis_model(tiny_synthesis_model)
    phantom = generate_case(HELD_OUT_SEED, "A", 0)
    cancer = next(l for l in phantom.lesions if l.clinically_significant)
    volume = phantom_volume(phantom)
    discrepancy = discrepancy_map(net, volume.image, volume.region, volume.grid.spacing, metadata.mask_settings)
    combined = discrepancy.combined(metadata.normal_tissue)
    inside = (volume.lesions == cancer.lesion_id) & volume.region
    normal = volume.region & lesion_free(volume)
    assert inside.sum() > 20 and normal.sum() > 5000
    assert np.median(combined[inside]) > np.percentile(combined[normal], 75)
    assert combined[inside].mean() > combined[normal].mean() + 1.0


# --------------------------------------------------------------------------- outputs and model file
def test_analyze_writes_the_abnormality_map_on_the_exact_t2_grid(tiny_synthesis_model, tmp_path):
    from LesionAILib.phantom.cohort import write_case

    phantom = generate_case(HELD_OUT_SEED, "A", 0)
    write_case(phantom, tmp_path / "case")
    study = tmp_path / "case" / "images" / phantom.patient_id
    out = tmp_path / "result"
    status = main(
        [
            "analyze",
            str(study),
            "--out",
            str(out),
            "--abnormality",
            "--abnormality-model",
            str(tiny_synthesis_model),
            "--device",
            "cpu",
        ]
    )
    assert status == 0
    t2 = sitk.ReadImage(str(next(study.glob("*_t2w.mha"))))
    for name in ("abnormality.nii.gz", "abnormality_candidates.nii.gz", "abnormality_adc.nii.gz", "heatmap.nii.gz"):
        image = sitk.ReadImage(str(out / name))
        assert image.GetSize() == t2.GetSize()
        np.testing.assert_allclose(image.GetOrigin(), t2.GetOrigin(), atol=1e-4)
        np.testing.assert_allclose(image.GetSpacing(), t2.GetSpacing(), atol=1e-5)
        np.testing.assert_allclose(image.GetDirection(), t2.GetDirection(), atol=1e-6)
    from LesionAILib.inference.results import read_result

    stored = read_result(out)
    assert stored.abnormality is not None and stored.abnormality.GetSize() == stored.heatmap.GetSize()
    summary = json.loads((out / "abnormality.json").read_text())
    assert summary["candidates"] and summary["region"].startswith("ellipsoid")  # no --gland: FOV-centre region
    assert (out / "abnormality_candidate_1.png").stat().st_size > 10_000
    assert sitk.GetArrayFromImage(sitk.ReadImage(str(out / "abnormality.nii.gz"))).max() > 0


def test_model_file_round_trip_and_tampered_or_wrong_kind_files_are_refused(tmp_path):
    torch.manual_seed(0)
    net = InpaintingNet(InpaintingConfig(width=4, levels=2))
    statistics = NormalTissueStatistics(("t2w", "adc", "hbv"), (0.2, 0.1, 0.3), (0.1, 0.05, 0.2), 100)
    path = save_synthesis_model(
        net, SynthesisMetadata("round-trip", net.config, statistics), tmp_path / "m.safetensors"
    )
    loaded, metadata = load_synthesis_model(path)
    assert metadata.normal_tissue == statistics and metadata.mask_settings == MaskSettings()
    for name, tensor in net.state_dict().items():
        torch.testing.assert_close(loaded.state_dict()[name], tensor)
    data = bytearray(path.read_bytes())
    data[-5] ^= 0xFF
    tampered = tmp_path / "tampered.safetensors"
    tampered.write_bytes(bytes(data))
    with pytest.raises(ModelFileError, match="checksum"):
        load_synthesis_model(tampered)
    from LesionAILib.models.bundled import bundled_model_path

    with pytest.raises(ModelFileError, match="detector"):
        load_synthesis_model(bundled_model_path())

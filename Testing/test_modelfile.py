"""Model files: safetensors + JSON metadata, integrity checks, no pickle."""

from __future__ import annotations

import json
import struct

import pytest
import torch

from LesionAILib.errors import ModelFileError
from LesionAILib.models.modelfile import (
    DEMO_NOTICE,
    FORMAT_VERSION,
    ModelMetadata,
    load_model,
    read_metadata,
    save_model,
)
from LesionAILib.models.networks import ClassifierConfig, LesionModel, LocalizerConfig, ModelConfig
from LesionAILib.preprocessing.pipeline import PreprocessConfig


@pytest.fixture()
def saved(tmp_path):
    torch.manual_seed(0)
    config = ModelConfig(
        LocalizerConfig(variant="multitask", widths=(4, 8, 8, 8)), ClassifierConfig(crop=(4, 16, 16), widths=(4, 8))
    )
    model = LesionModel(config).eval()
    metadata = ModelMetadata(
        name="unit-test",
        architecture=config,
        preprocess=PreprocessConfig(shape=(8, 32, 32), spacing=(3, 2, 2)),
        metrics={"val_auroc": 0.5},
        synthetic_training_data=True,
    )
    path = save_model(model, metadata, tmp_path / "model.safetensors")
    return model, metadata, path


def _header(path):
    raw = path.read_bytes()
    size = struct.unpack("<Q", raw[:8])[0]
    return raw, size, json.loads(raw[8 : 8 + size])


def test_round_trip_rebuilds_the_model_from_its_own_metadata(saved):
    model, metadata, path = saved
    loaded, meta = load_model(path)
    assert meta.architecture == model.config and meta.preprocess == metadata.preprocess
    assert meta.sha256 == metadata.sha256 and len(meta.sha256) == 64
    images = torch.randn(1, 3, 8, 32, 32)
    with torch.no_grad():
        assert torch.equal(model(images)["combined"], loaded(images)["combined"])
    assert meta.display_name == f"unit-test ({DEMO_NOTICE})"
    assert read_metadata(path).metrics == {"val_auroc": 0.5}
    document = json.loads(_header(path)[2]["__metadata__"]["lesionai"])
    assert document["format"] == "lesionai-model" and document["format_version"] == FORMAT_VERSION
    assert document["sequences"] == ["t2w", "adc", "hbv"] and document["score_by_grade"][2] > 0.5
    assert b"pickle" not in path.read_bytes()[:64] and path.read_bytes()[8 + _header(path)[1] :][:2] != b"\x80\x04"


def test_changed_weight_is_refused(saved, tmp_path):
    _, _, path = saved
    raw = bytearray(path.read_bytes())
    raw[-5] ^= 0xFF  # flip bits in the last tensor's data
    tampered = tmp_path / "tampered.safetensors"
    tampered.write_bytes(bytes(raw))
    with pytest.raises(ModelFileError, match="checksum mismatch"):
        load_model(tampered)


def test_changed_metadata_is_refused(saved, tmp_path):
    _, _, path = saved
    raw, size, header = _header(path)
    document = json.loads(header["__metadata__"]["lesionai"])
    document["synthetic_training_data"] = False  # someone hides the demo notice
    header["__metadata__"]["lesionai"] = json.dumps(document)
    text = json.dumps(header).encode()
    text += b" " * ((8 - len(text) % 8) % 8)
    edited = tmp_path / "edited.safetensors"
    edited.write_bytes(struct.pack("<Q", len(text)) + text + raw[8 + size :])
    with pytest.raises(ModelFileError, match="checksum mismatch"):
        load_model(edited)


def test_truncated_foreign_and_missing_files_are_refused_in_one_line(saved, tmp_path):
    _, _, path = saved
    truncated = tmp_path / "truncated.safetensors"
    truncated.write_bytes(path.read_bytes()[: len(path.read_bytes()) // 2])
    foreign = tmp_path / "weights.pt"
    foreign.write_bytes(b"\x80\x04\x95 not a model")
    for bad, message in (
        (truncated, "truncated"),
        (foreign, "not a readable safetensors"),
        (tmp_path / "nope", "does not exist"),
    ):
        with pytest.raises(ModelFileError) as caught:
            load_model(bad)
        assert message in str(caught.value) and str(bad) in str(caught.value) and "\n" not in str(caught.value)

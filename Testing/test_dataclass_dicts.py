"""The generic dataclass (de)serialiser: nested records, tuples, optionals, defaults, clear errors."""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field

import pytest

from LesionAILib.dataclass_dicts import from_dict, to_dict
from LesionAILib.errors import ConfigError
from LesionAILib.models.networks import ModelConfig
from LesionAILib.training.config import TrainConfig


@dataclass(frozen=True)
class Window:
    low: float = 0.0
    high: float = 1.0


@dataclass
class Acquisition:
    name: str = "t2w"
    size: tuple[int, int, int] = (20, 96, 96)
    levels: tuple[tuple[int, int], ...] = ((1, 2), (2, 2))
    window: Window | None = None
    windows: Mapping[str, Window] = field(default_factory=dict)
    tags: list[str] = field(default_factory=list)
    repeats: int = 1
    enabled: bool = True


def test_nested_tuple_and_optional_fields_round_trip_through_json():
    record = Acquisition(
        name="adc",
        size=(8, 32, 32),
        levels=((1, 1),),
        window=Window(0.5, 4.0),
        windows={"hbv": Window(-1.0, 2.0)},
        tags=["b800"],
        repeats=3,
        enabled=False,
    )
    written = json.loads(json.dumps(to_dict(record)))
    assert written["size"] == [8, 32, 32] and written["levels"] == [[1, 1]]
    assert written["window"] == {"low": 0.5, "high": 4.0} and written["windows"]["hbv"] == {"low": -1.0, "high": 2.0}
    back = from_dict(Acquisition, written)
    assert back == record
    assert isinstance(back.size, tuple) and isinstance(back.levels[0], tuple) and isinstance(back.window, Window)


def test_missing_fields_keep_defaults_and_none_stays_none():
    back = from_dict(Acquisition, {"size": [4, 8, 8], "window": None, "repeats": 2})
    assert back == Acquisition(size=(4, 8, 8), window=None, repeats=2)
    assert from_dict(Acquisition, {"window": {"high": 3}}).window == Window(0.0, 3.0)


def test_unknown_keys_are_refused_by_their_dotted_path():
    with pytest.raises(ConfigError, match=r"unknown setting\(s\): colour, shade$"):
        from_dict(Acquisition, {"shade": 1, "colour": "red", "repeats": 2})
    with pytest.raises(ConfigError, match=r"unknown setting\(s\): window\.middle$"):
        from_dict(Acquisition, {"window": {"middle": 0.5}})
    with pytest.raises(ConfigError, match=r"unknown training setting\(s\): phase1\.crops"):
        TrainConfig.from_dict({"phase1": {"crops": [8, 16, 16]}})


@pytest.mark.parametrize(
    "data, message",
    [
        ({"repeats": "3"}, "repeats must be an integer"),
        ({"repeats": True}, "repeats must be an integer"),
        ({"enabled": 1}, "enabled must be true or false"),
        ({"size": [8, 32]}, "size needs 3 values, got 2"),
        ({"levels": [[1, "2"]]}, r"levels\[0\]\[1\] must be an integer"),
        ({"window": [0, 1]}, "window must be a mapping"),
        ({"tags": "b800"}, "tags must be a list"),
    ],
)
def test_values_of_the_wrong_type_name_the_field(data, message):
    with pytest.raises(ConfigError, match=message):
        from_dict(Acquisition, data)


def test_integers_are_accepted_for_floats():
    back = from_dict(Window, {"low": 0, "high": 2})
    assert back == Window(0.0, 2.0) and isinstance(back.low, float)


def test_training_configuration_round_trips_and_model_files_keep_their_legacy_classifier():
    config = TrainConfig.from_dict(
        {"seed": 5, "model": {"classifier": None}, "phase1": {"crop": [8, 32, 32]}, "augment": {"enabled": False}}
    )
    assert config.model.classifier is None and config.phase1.crop == (8, 32, 32) and not config.augment.enabled
    assert TrainConfig.from_dict(json.loads(json.dumps(config.to_dict()))) == config
    # a model file written before ``residual`` existed holds a plain classifier; a training
    # configuration that leaves it out gets today's default (residual)
    legacy = {"localizer": {}, "classifier": {"crop": [4, 16, 16]}}
    assert ModelConfig.from_dict(legacy).classifier.residual is False
    assert TrainConfig.from_dict({"model": legacy}).model.classifier.residual is True

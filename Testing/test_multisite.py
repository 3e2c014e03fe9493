"""Multi-site training: similarity-ordered curriculum with replay of the reference site."""

from __future__ import annotations

import pytest
from conftest import tiny_config

from LesionAILib.adaptation.multisite import MultisiteSettings, multisite_train
from LesionAILib.errors import ConfigError
from LesionAILib.jobs.events import read_events
from LesionAILib.models.modelfile import load_model
from LesionAILib.phantom.cohort import write_cohort
from LesionAILib.training.config import TrainConfig
from LesionAILib.training.curriculum import Curriculum


def test_curriculum_admits_in_order_and_replays_the_reference_share():
    curriculum = Curriculum(
        [f"D{i}" for i in range(10)],
        epochs=9,
        start_fraction=0.3,
        ramp_epochs=2,
        replay=[f"A{i}" for i in range(20)],
        replay_fraction=0.5,
    )
    assert [curriculum.admitted(e) for e in (1, 2, 3, 9)] == [3, 7, 10, 10]
    first = curriculum.epoch_cases(1, seed=0)
    assert sorted({c for c in first if c.startswith("D")}) == ["D0", "D1", "D2"], "the most similar come first"
    new_draws = [c for c in first if c.startswith("D")]
    assert len(new_draws) == 10, "an epoch draws as many new cases as the site has, whatever is admitted"
    assert sorted(new_draws.count(c) for c in ("D0", "D1", "D2")) == [3, 3, 4], "admitted cases share the draws"
    assert sum(c.startswith("A") for c in first) == 10, "half of the epoch replays the reference site"
    assert curriculum.epoch_cases(1, seed=0) == first and curriculum.epoch_cases(1, seed=1) != first
    assert {len(curriculum.epoch_cases(e, seed=0)) for e in range(1, 10)} == {20}, "every epoch the same size"
    classifier = curriculum.classifier_cases(1, seed=0)
    assert sorted(c for c in classifier if c.startswith("D")) == sorted(curriculum.order), "no ramp in phase 2"


def test_curriculum_ramp_ends_within_a_short_phase():
    curriculum = Curriculum([f"D{i}" for i in range(7)], epochs=3, start_fraction=0.2, ramp_epochs=6)
    assert [curriculum.admitted(e) for e in (1, 2, 3)] == [2, 5, 7], "a 6-epoch ramp squeezed into 3 epochs"
    assert set(curriculum.epoch_cases(3, seed=2)) == set(curriculum.order)
    assert [curriculum.complete(e) for e in (1, 2, 3)] == [False, False, True]
    single = Curriculum(["D0", "D1", "D2"], epochs=1, start_fraction=0.3, ramp_epochs=4)
    assert sorted(single.epoch_cases(1, seed=0)) == ["D0", "D1", "D2"]
    with pytest.raises(ConfigError, match="replay_fraction"):
        Curriculum(["D0"], epochs=2, replay=["A0"], replay_fraction=1.0)


def test_multisite_training_orders_the_new_site_and_trains_from_the_pretrained_model(
    phantom_cohort, tiny_model_path, tmp_path
):
    new_site = tmp_path / "D"
    write_cohort(new_site, 4, site="D", seed=4)
    settings = tiny_config(
        [str(new_site)],
        str(tmp_path / "cache"),
        val_fraction=0.25,
        phase1={"epochs": 2},
        phase2={"epochs": 1, "joint_epochs": 0},
    )
    config = TrainConfig.from_dict(settings)
    run = tmp_path / "run"
    path = multisite_train(
        config,
        run,
        tiny_model_path,
        [phantom_cohort],
        MultisiteSettings(start_fraction=0.34, ramp_epochs=1, replay_fraction=0.5),
    )
    model, metadata = load_model(path)
    pretrained, _ = load_model(tiny_model_path)
    assert metadata.architecture == pretrained.config
    events = read_events(run / "progress.jsonl")
    order = next(e for e in events if e["event"] == "order")
    assert order["by"] == "similarity" and sorted(c["case"][0] for c in order["cases"]) == ["D", "D", "D"]
    scores = [c["score"] for c in order["cases"]]
    assert scores == sorted(scores, reverse=True)
    epoch_sizes = [e["total"] for e in events if e["event"] == "progress" and e.get("phase") == 1 and e["done"] == 1]
    assert len(epoch_sizes) == 2 and epoch_sizes[0] == epoch_sizes[1], "every epoch trains the same number of steps"
    with pytest.raises(ConfigError, match="unknown order"):
        MultisiteSettings(order="alphabetical")

"""Curricula differ only in admission order: equal steps per arm, every case trained in each phase."""

from __future__ import annotations

import json
from collections import defaultdict

import pytest
from conftest import tiny_config

import LesionAILib.training.phases as phases
from LesionAILib.adaptation.finetuning import FinetuneSettings, finetune
from LesionAILib.errors import ConfigError
from LesionAILib.jobs.events import EventLog, read_events
from LesionAILib.models.store import ModelStore
from LesionAILib.training.cohorts import CropSampler, prepare_cases, read_cohort
from LesionAILib.training.config import TrainConfig
from LesionAILib.training.curriculum import Curriculum
from LesionAILib.training.mining import MINED
from LesionAILib.training.trainer import Trainer


class TrainedCases:
    """Records which case every phase-1 crop and every phase-2 candidate came from, per epoch.

    Wraps the crop sampler and the candidate-crop reader (the data the batches are built from), so
    what is counted is what the networks were fed — not what the curriculum says it would feed.
    """

    def __init__(self, monkeypatch):
        self.crops: dict[int, list[int]] = defaultdict(list)  # phase-1 epoch -> case index per crop
        self.candidates: list[list[int]] = []  # classifier batch -> case index per candidate
        sample, read = CropSampler.sample, phases.candidate_crops

        def recording_sample(sampler, case_index, epoch, draw=0):
            self.crops[epoch].append(case_index)
            return sample(sampler, case_index, epoch, draw)

        def recording_read(cases, run_dir, chosen, crop):
            self.candidates.append([c.case for c in chosen])
            return read(cases, run_dir, chosen, crop)

        monkeypatch.setattr(CropSampler, "sample", recording_sample)
        monkeypatch.setattr(phases, "candidate_crops", recording_read)


def _mined_cases(run_dir) -> set[int]:
    """Indices of the cases phase 2 has candidates of (the mining's output file: its input)."""
    data = json.loads((run_dir / MINED).read_text())
    return {sample["case"] for sample in data["samples"]}


def _steps(run_dir) -> dict[int, list[int]]:
    """Batches per epoch and phase, from the trainer's progress log (one event per batch)."""
    steps: dict[int, list[int]] = defaultdict(list)
    for event in read_events(run_dir / "progress.jsonl"):
        if event["event"] == "progress" and "loss" in event and event["done"] == event["total"]:
            steps[event["phase"]].append(event["total"])
    return steps


@pytest.fixture(scope="module")
def prepared_cohort(phantom_cohort, tmp_path_factory):
    config = TrainConfig.from_dict(
        tiny_config(
            [str(phantom_cohort)],
            str(tmp_path_factory.mktemp("cache")),
            validate=False,
            phase1={"epochs": 2},
            phase2={"joint_epochs": 0},
        )
    )
    return config, prepare_cases(read_cohort(phantom_cohort).cases, config.preprocess, config.cache_dir)


def _train(config, cases, curriculum, run_dir, monkeypatch) -> tuple[TrainedCases, dict]:
    trained = TrainedCases(monkeypatch)
    Trainer(config, run_dir, EventLog(run_dir / "progress.jsonl"), None, cases, [], None, curriculum).run("both")
    monkeypatch.undo()
    return trained, _steps(run_dir)


def test_ordered_and_unordered_arms_train_equal_steps_and_every_case_each_phase(prepared_cohort, tmp_path, monkeypatch):
    config, cases = prepared_cohort
    ids = [c.case_id for c in cases]
    epochs = config.phase1.epochs  # 2
    ordered = Curriculum(list(reversed(ids)), epochs=epochs, start_fraction=0.2, ramp_epochs=5)
    everything = Curriculum(ids, epochs=epochs, start_fraction=1.0, ramp_epochs=1)
    ramped, ramped_steps = _train(config, cases, ordered, tmp_path / "ordered", monkeypatch)
    flat, flat_steps = _train(config, cases, everything, tmp_path / "none", monkeypatch)

    assert ramped_steps[1] == flat_steps[1] and len(ramped_steps[1]) == epochs, "same phase-1 steps, every epoch"
    assert ramped_steps[2] == flat_steps[2] and len(ramped_steps[2]) == 2, "same classifier steps, every epoch"
    assert [len(ramped.crops[e]) for e in range(1, epochs + 1)] == [len(cases)] * epochs
    assert set(ramped.crops[1]) == {len(cases) - 1, len(cases) - 2}, "the ramp starts with the first two of its order"
    assert set(ramped.crops[epochs]) == set(range(len(cases))), "the last phase-1 epoch trains on every case"
    assert set(flat.crops[1]) == set(range(len(cases)))
    mined = _mined_cases(tmp_path / "ordered")
    assert len(mined) >= 4, "most phantom cases have lesions, so candidates"
    first_classifier_epoch = {i for batch in ramped.candidates[: ramped_steps[2][0]] for i in batch}
    assert first_classifier_epoch == mined, "phase 2 does not restart the ramp: epoch 1 trains every case"
    last_classifier_epoch = {i for batch in ramped.candidates[ramped_steps[2][0] :] for i in batch}
    assert last_classifier_epoch == mined


def test_fixed_classifier_samples_per_epoch_and_a_curriculum_must_match_phase_1(prepared_cohort, tmp_path, monkeypatch):
    config, cases = prepared_cohort
    fixed = TrainConfig.from_dict(
        {**config.to_dict(), "phase2": {**config.to_dict()["phase2"], "samples_per_epoch": 10, "joint_epochs": 0}}
    )
    trained, steps = _train(fixed, cases, None, tmp_path / "fixed", monkeypatch)
    assert steps[2] == [3, 3], "10 samples in batches of 4, in each of the two classifier epochs"
    assert [len(batch) for batch in trained.candidates] == [4, 4, 2, 4, 4, 2]
    mismatched = Curriculum([c.case_id for c in cases], epochs=5)
    with pytest.raises(ConfigError, match="ramps over 5 epochs but phase 1 has 2"):
        Trainer(config, tmp_path / "mismatch", None, None, cases, [], None, mismatched).run("1")


def test_finetuning_trains_the_classifier_on_every_annotated_training_case(tmp_path, tiny_model_path, monkeypatch):
    from test_deployment import _save_phantom

    root = tmp_path / "site"
    for index in range(6):
        _save_phantom(root, index, site="D")
    store = ModelStore(tmp_path / "store")
    store.activate(store.add(tiny_model_path, note="tiny base"))
    settings = FinetuneSettings(
        epochs=2,
        classifier_epochs=2,
        crops_per_case=1,
        uncertainty_samples=2,
        start_fraction=0.2,
        val_fraction=0.2,
        device="cpu",
    )
    trained = TrainedCases(monkeypatch)
    result = finetune(root, store, settings=settings, run_dir=tmp_path / "run")
    assert result.train_cases == 5 and result.val_cases == 1
    train_indices = set(range(result.train_cases))
    assert len(set(trained.crops[1])) == 1 and len(trained.crops[1]) == 5, "epoch 1: the most uncertain, 5 times"
    assert set(trained.crops[2]) == train_indices, "the last phase-1 epoch trains every annotated case"
    steps = _steps(tmp_path / "run")[2]
    mined = _mined_cases(tmp_path / "run")
    assert len(steps) == 2 and len(mined) >= 3
    for start in (0, steps[0]):
        epoch = {i for batch in trained.candidates[start : start + steps[0]] for i in batch}
        assert epoch == mined, "each classifier epoch sees every annotated training case with candidates"

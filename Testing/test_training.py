"""Two-phase training: end to end, resume after a kill, early stopping, cancellation, checkpoints."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from conftest import ROOT, tiny_config

from LesionAILib.errors import ConfigError
from LesionAILib.jobs.events import Cancelled, CancelToken, EventLog, read_events
from LesionAILib.models.modelfile import load_model
from LesionAILib.training.checkpoints import load_checkpoint, save_checkpoint
from LesionAILib.training.config import TrainConfig
from LesionAILib.training.trainer import Trainer


def _write_config(path: Path, config: dict) -> Path:
    path.write_text(json.dumps(config))
    return path


def _train_command(config: Path, run: Path) -> list[str]:
    return [
        sys.executable,
        "-m",
        "LesionAILib.cli.main",
        "train",
        "--config",
        str(config),
        "--run-dir",
        str(run),
        "--json-events",
    ]


def _environment() -> dict:
    return {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}


def test_two_phase_training_writes_a_self_describing_model(phantom_cohort, tmp_path):
    config = TrainConfig.from_dict(tiny_config([str(phantom_cohort)], str(tmp_path / "cache")))
    run = tmp_path / "run"
    path = Trainer(config, run, EventLog(run / "progress.jsonl")).run("both")
    model, metadata = load_model(path)
    assert model.classifier is not None and metadata.synthetic_training_data
    assert metadata.training["config"]["phase1"]["epochs"] == 3 and metadata.training["train_cases"] == 4
    assert set(metadata.metrics) >= {"phase1_validation", "phase2_validation"}
    events = read_events(run / "progress.jsonl")
    kinds = [e["event"] for e in events]
    assert kinds.count("epoch") == 6 and kinds[-1] == "done"
    assert [(e["phase"], e.get("joint", False)) for e in events if e["event"] == "epoch"] == [
        (1, False),
        (1, False),
        (1, False),
        (2, False),
        (2, False),
        (2, True),
    ]
    assert all(0.0 <= e["val_score"] <= 1.0 for e in events if e["event"] == "epoch")
    mined = json.loads((run / "candidates.json").read_text())["samples"]
    lesions = [s for s in mined if s["source"] == "lesion"]
    assert lesions and all(0 <= s["grade"] <= 5 for s in mined)


@pytest.fixture(scope="module")
def uninterrupted_run(phantom_cohort, tmp_path_factory):
    folder = tmp_path_factory.mktemp("uninterrupted")
    config = _write_config(folder / "config.json", tiny_config([str(phantom_cohort)], str(folder / "cache")))
    subprocess.run(
        _train_command(config, folder / "run"), check=True, env=_environment(), capture_output=True, timeout=600
    )
    return config, folder / "run"


@pytest.mark.parametrize("phase, epoch", [(1, 2), (2, 3)], ids=["phase1", "phase2-joint"])
def test_training_killed_mid_epoch_resumes_to_the_same_weights(uninterrupted_run, tmp_path, phase, epoch):
    config, reference = uninterrupted_run
    interrupted = tmp_path / "interrupted"
    process = subprocess.Popen(
        _train_command(config, interrupted), env=_environment(), stdout=subprocess.PIPE, text=True
    )
    killed_at = None
    for line in process.stdout:
        event = json.loads(line)
        if (
            event["event"] == "progress"
            and event.get("phase") == phase
            and event.get("epoch") == epoch
            and event["done"] == 1
        ):
            process.send_signal(signal.SIGKILL)  # mid-epoch, no chance to clean up
            killed_at = event
            break
    process.wait(timeout=60)
    assert killed_at is not None and process.returncode == -signal.SIGKILL
    assert not (interrupted / "model.safetensors").exists()
    resumed = subprocess.run(
        _train_command(config, interrupted), env=_environment(), capture_output=True, text=True, timeout=600
    )
    assert resumed.returncode == 0, resumed.stderr
    events = [json.loads(line) for line in resumed.stdout.splitlines() if line.startswith("{")]
    resume = next(e for e in events if e["event"] == "resume")
    assert (resume["phase"], resume["epoch"]) == (str(phase), epoch - 1)
    a, _ = load_model(reference / "model.safetensors")
    b, _ = load_model(interrupted / "model.safetensors")
    for (name, x), (_, y) in zip(a.state_dict().items(), b.state_dict().items(), strict=True):
        assert torch.equal(x, y), name


def test_early_stopping_when_validation_does_not_improve(phantom_cohort, tmp_path):
    settings = tiny_config(
        [str(phantom_cohort)], str(tmp_path / "cache"), phase1={"epochs": 6, "lr": 0.0, "patience": 2}
    )
    run = tmp_path / "run"
    Trainer(TrainConfig.from_dict(settings), run).run("1")
    events = read_events(run / "progress.jsonl")
    epochs = [e["epoch"] for e in events if e["event"] == "epoch"]
    assert epochs == [1, 2, 3], "with lr 0 the score never improves after epoch 1; patience 2 stops after epoch 3"
    stop = next(e for e in events if e["event"] == "early_stop")
    assert stop["best_epoch"] == 1


def test_cancelled_training_leaves_the_checkpoint_and_writes_no_model(phantom_cohort, tmp_path):
    settings = TrainConfig.from_dict(tiny_config([str(phantom_cohort)], str(tmp_path / "cache")))
    run = tmp_path / "run"
    token = CancelToken(run / "CANCEL")

    class CancelAfterFirstEpoch(EventLog):
        def emit(self, event, **fields):
            if event == "epoch":
                (run / "CANCEL").touch()
            return super().emit(event, **fields)

    with pytest.raises(Cancelled):
        Trainer(settings, run, CancelAfterFirstEpoch(run / "progress.jsonl"), token).run("both")
    assert (run / "checkpoint.safetensors").exists() and not (run / "model.safetensors").exists()


def test_checkpoint_round_trip_restores_model_and_optimizer(tmp_path):
    torch.manual_seed(0)
    model = torch.nn.Linear(4, 2)
    optimizer = torch.optim.AdamW(model.parameters(), lr=0.01)
    model(torch.randn(3, 4)).sum().backward()
    optimizer.step()
    save_checkpoint(tmp_path / "c.safetensors", model, optimizer, {"phase": "1", "epoch": 4})
    copy = torch.nn.Linear(4, 2)
    state, optimizer_state = load_checkpoint(tmp_path / "c.safetensors", copy)
    restored = torch.optim.AdamW(copy.parameters(), lr=0.5)
    restored.load_state_dict(optimizer_state)
    assert state["epoch"] == 4 and restored.param_groups[0]["lr"] == 0.01
    assert torch.equal(copy.weight, model.weight)
    assert torch.equal(restored.state_dict()["state"][0]["exp_avg"], optimizer.state_dict()["state"][0]["exp_avg"])


def test_configuration_mistakes_are_reported(phantom_cohort, tmp_path):
    with pytest.raises(ConfigError, match="unknown training setting"):
        TrainConfig.from_dict({"train": [], "epochs": 3})
    settings = tiny_config([str(phantom_cohort)], str(tmp_path / "cache"), phase1={"epochs": 1})
    run = tmp_path / "run"
    Trainer(TrainConfig.from_dict(settings), run).run("1")
    changed = tiny_config([str(phantom_cohort)], str(tmp_path / "cache"), phase1={"epochs": 1, "lr": 0.5})
    with pytest.raises(ConfigError, match="different configuration"):
        Trainer(TrainConfig.from_dict(changed), run).run("1")


def test_train_command_reports_a_missing_config_in_one_line(tmp_path):
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "LesionAILib.cli.main",
            "train",
            "--config",
            str(tmp_path / "none.json"),
            "--run-dir",
            str(tmp_path),
        ],
        capture_output=True,
        text=True,
        env=_environment(),
        timeout=120,
    )
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert (
        result.stderr.strip()
        == f"lesionai: error: {tmp_path / 'none.json'}: training configuration file does not exist"
    )

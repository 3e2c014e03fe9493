"""Distributed training: 2 gloo processes on the CPU follow the single-process trajectory."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys

import torch
from conftest import ROOT, tiny_config

from LesionAILib.jobs.events import read_events
from LesionAILib.models.modelfile import load_model


def _free_port() -> int:
    with socket.socket() as handle:
        handle.bind(("127.0.0.1", 0))
        return handle.getsockname()[1]


def test_two_gloo_ranks_match_one_process_with_the_same_global_batch(phantom_cohort, tmp_path):
    settings = tiny_config(
        [str(phantom_cohort)],
        str(tmp_path / "cache"),
        phase1={"epochs": 2, "batch_size": 2, "crops_per_case": 2},
        phase2={"epochs": 1, "joint_epochs": 1, "batch_size": 4},
    )
    # dropout draws differ between one process and two (each rank has its own generator): switch it off
    settings["model"] = {**settings["model"], "classifier": {**settings["model"]["classifier"], "dropout": 0.0}}
    config = tmp_path / "config.json"
    config.write_text(json.dumps(settings))
    environment = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}
    train = ["-m", "LesionAILib.cli.main", "train", "--config", str(config)]
    single = subprocess.run(
        [sys.executable, *train, "--run-dir", str(tmp_path / "single")],
        env=environment,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert single.returncode == 0, single.stderr
    distributed = subprocess.run(
        [
            sys.executable,
            "-m",
            "torch.distributed.run",
            "--nproc_per_node=2",
            "--master_addr=127.0.0.1",
            f"--master_port={_free_port()}",
            *train,
            "--run-dir",
            str(tmp_path / "ddp"),
        ],
        env=environment,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert distributed.returncode == 0, distributed.stderr[-2000:]
    events = {name: read_events(tmp_path / name / "progress.jsonl") for name in ("single", "ddp")}
    start = next(e for e in events["ddp"] if e["event"] == "start")
    assert start["world"] == 2, "the run really used two processes"
    losses = {
        name: [(e["phase"], e["epoch"], e["train_loss"]) for e in run if e["event"] == "epoch"]
        for name, run in events.items()
    }
    assert [(p, e) for p, e, _ in losses["ddp"]] == [(1, 1), (1, 2), (2, 1), (2, 2)]
    for (_, _, expected), (_, _, actual) in zip(losses["single"], losses["ddp"], strict=True):
        assert abs(actual - expected) <= 1e-4 * max(1.0, abs(expected)), (losses["single"], losses["ddp"])
    a, _ = load_model(tmp_path / "single" / "model.safetensors")
    b, _ = load_model(tmp_path / "ddp" / "model.safetensors")
    for (name, x), (_, y) in zip(a.state_dict().items(), b.state_dict().items(), strict=True):
        assert torch.allclose(x, y, rtol=1e-3, atol=1e-4), name

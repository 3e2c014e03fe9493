"""The job protocol end to end: ``--json-events`` progress, ``--cancel-file``, exit statuses, and the Qt-free runner."""

from __future__ import annotations

import json
import os
import sys
import time

import pytest
from conftest import ROOT, tiny_config

from LesionAILib.cli.main import main
from LesionAILib.jobs.events import (
    EXIT_INTERRUPTED,
    ORDERED,
    PROGRESS,
    Cancelled,
    CancelToken,
    EventLog,
    read_events,
)
from LesionAILib.jobs.runner import JobRunner, lesionai_job
from LesionAILib.studies.picai import find_picai_cases
from LesionAILib.training.cohorts import read_cohort


def _events(stdout: str) -> list[dict]:
    """The JSON-lines events among a command's stdout lines."""
    return [json.loads(line) for line in stdout.splitlines() if line.startswith('{"event"')]


def test_a_progress_callback_checks_the_cancel_file_before_it_reports(tmp_path):
    log = EventLog(tmp_path / "progress.jsonl")
    token = CancelToken(tmp_path / "CANCEL")
    callback = log.progress_callback("uncertainty", token)
    callback(1, 3)
    (tmp_path / "CANCEL").touch()
    with pytest.raises(Cancelled):
        callback(2, 3)
    assert [(e["event"], e["stage"], e["done"], e["total"]) for e in read_events(tmp_path / "progress.jsonl")] == [
        (PROGRESS, "uncertainty", 1, 3)
    ]


def test_analyze_with_an_existing_cancel_file_exits_interrupted_and_writes_nothing(
    phantom_cohort, tiny_model_path, tmp_path, capsys
):
    (tmp_path / "CANCEL").touch()
    out = tmp_path / "analysis"
    study = find_picai_cases(phantom_cohort)[0][2]
    arguments = ["analyze", str(study), "--out", str(out), "--model", str(tiny_model_path)]
    arguments += ["--device", "cpu", "--json-events", "--cancel-file", str(tmp_path / "CANCEL")]
    assert main(arguments) == EXIT_INTERRUPTED
    captured = capsys.readouterr()
    assert captured.err.startswith("lesionai: interrupted: the job was cancelled") and captured.err.count("\n") == 1
    assert [e["stage"] for e in _events(captured.out)] == ["loading the model"]
    assert not out.exists()


def test_train_with_an_existing_cancel_file_exits_interrupted_without_a_model(phantom_cohort, tmp_path, capsys):
    config = tmp_path / "config.json"
    config.write_text(json.dumps(tiny_config([str(phantom_cohort)], str(tmp_path / "cache"))))
    (tmp_path / "CANCEL").touch()
    run = tmp_path / "run"
    arguments = ["train", "--config", str(config), "--run-dir", str(run), "--cancel-file", str(tmp_path / "CANCEL")]
    assert main([*arguments, "--json-events"]) == EXIT_INTERRUPTED
    assert "interrupted" in capsys.readouterr().err
    assert not (run / "model.safetensors").exists() and not list(run.glob("best-*.safetensors"))


def test_order_reports_uncertainty_progress_and_its_order_as_json_events(
    phantom_cohort, tiny_model_path, tmp_path, capsys
):
    arguments = ["order", str(phantom_cohort), "--by", "uncertainty", "--samples", "2", "--json-events"]
    arguments += ["--model", str(tiny_model_path), "--device", "cpu", "--out", str(tmp_path / "o.json")]
    assert main(arguments) == 0
    events = _events(capsys.readouterr().out)
    cases = len(read_cohort(phantom_cohort).cases)
    assert [e["done"] for e in events if e.get("stage") == "uncertainty"] == list(range(1, cases + 1))
    final = events[-1]
    assert final["event"] == ORDERED and final["by"] == "uncertainty" and len(final["order"]) == cases
    scores = [item["score"] for item in final["order"]]
    assert scores == sorted(scores, reverse=True) and final["first"] == final["order"][0]["case"]
    assert json.loads((tmp_path / "o.json").read_text())["order"] == final["order"]


def test_cancelling_an_order_job_writes_the_cancel_file_and_stops_it_cleanly(phantom_cohort, tiny_model_path, tmp_path):
    arguments = [str(phantom_cohort), "--by", "uncertainty", "--model", str(tiny_model_path), "--device", "cpu"]
    arguments += ["--out", "order.json"]  # relative: inside the job folder, the command's working directory
    job = lesionai_job("order", arguments, tmp_path / "job", sys.executable, {"PYTHONPATH": str(ROOT)}).start()
    while not job.state.events and not job.state.finished:
        job.poll()
        time.sleep(0.05)
    job.cancel(grace_s=120)
    assert job.cancel_file.exists()
    state = job.wait(timeout_s=180)
    assert state.status == "cancelled" and state.returncode == EXIT_INTERRUPTED, job.stderr_path.read_text()
    assert state.result is None and not (job.work_folder / "order.json").exists()


def test_a_job_that_exits_interrupted_on_its_own_is_cancelled_not_failed(tmp_path):
    job = JobRunner([sys.executable, "-c", f"raise SystemExit({EXIT_INTERRUPTED})"], tmp_path / "job").start()
    state = job.wait(timeout_s=30)
    assert state.status == "cancelled" and "unchanged" in state.describe()


# A stand-in for PythonSlicer (CTKAppLauncher): starts the real worker as a child, forwards no
# signals, and waits for it. The worker appends a line to a file every 50 ms until it is stopped.
LAUNCHER = """
import subprocess, sys
child = subprocess.Popen([sys.executable, "-c", sys.argv[1], sys.argv[2]])
open(sys.argv[3], "w").write(str(child.pid))
child.wait()
"""
WORKER = """
import pathlib, sys, time
out = pathlib.Path(sys.argv[1])
while True:
    with out.open("a") as handle:
        handle.write("step\\n")
    time.sleep(0.05)
"""


def _running(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


@pytest.mark.skipif(os.name == "nt", reason="POSIX process groups; Windows uses taskkill /T")
def test_cancel_stops_the_launcher_and_the_child_it_started_and_nothing_is_written_after(tmp_path):
    steps, child_pid_file = tmp_path / "steps.txt", tmp_path / "child.pid"
    job = JobRunner(
        [sys.executable, "-c", LAUNCHER, WORKER, str(steps), str(child_pid_file)], tmp_path / "job"
    ).start()
    deadline = time.monotonic() + 30
    while not (child_pid_file.exists() and steps.exists() and steps.read_text().count("\n") >= 3):
        assert time.monotonic() < deadline, "the worker never started"
        time.sleep(0.05)
    child = int(child_pid_file.read_text())
    launcher = job.pid
    assert _running(child) and _running(launcher)
    job.cancel(grace_s=2.0)
    state = job.wait(timeout_s=30)
    assert state.status == "cancelled" and not job.alive
    assert not _running(launcher) and not _running(child)
    written = steps.read_text()
    time.sleep(0.3)
    assert steps.read_text() == written, "the child went on writing after the cancel"
    assert job.cancel_file.exists()


def test_a_job_is_alive_until_its_cancelled_process_is_gone(tmp_path):
    job = JobRunner([sys.executable, "-c", "import time; time.sleep(30)"], tmp_path / "job").start()
    assert job.alive and not job.state.finished
    job.cancel(grace_s=0.0)
    job.wait(timeout_s=30)
    assert not job.alive and job.state.status == "cancelled"

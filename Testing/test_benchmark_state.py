"""The committed benchmark state (benchmarks/benchmark_state.py): what a fresh checkout restores.

A wrong restore would mix results trained from different site-A models or sizes into one table, so
the rules are checked: only the same size, never overwriting the work folder, model and result files only.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))

from adaptation_setup import QUICK, Size  # noqa: E402
from benchmark_state import restore, save  # noqa: E402


def _work(folder: Path) -> Path:
    (folder / "results" / "active-learning").mkdir(parents=True)
    (folder / "results" / "multisite").mkdir(parents=True)
    (folder / "runs" / "site-A").mkdir(parents=True)
    (folder / "site-A-model.safetensors").write_bytes(b"model-bytes")
    (folder / "results" / "active-learning" / "random-s0.json").write_text('{"rounds": [1]}')
    (folder / "results" / "multisite" / "none-s1.json").write_text('{"d_ap": 0.2}')
    (folder / "runs" / "site-A" / "checkpoint.safetensors").write_bytes(b"big")
    return folder


def test_save_then_restore_into_a_fresh_work_folder(tmp_path):
    state = tmp_path / "state"
    saved = save(_work(tmp_path / "work"), Size(), state)
    assert sorted(p.relative_to(state).as_posix() for p in saved) == [
        "results/active-learning/random-s0.json",
        "results/multisite/none-s1.json",
        "site-A-model.safetensors",
    ]
    assert not (state / "runs").exists()  # checkpoints stay out of the repository
    assert json.loads((state / "size.json").read_text())["grid"] == [16, 64, 64]
    fresh = tmp_path / "fresh"
    copied = restore(fresh, Size(), state)
    assert len(copied) == 3
    assert (fresh / "site-A-model.safetensors").read_bytes() == b"model-bytes"
    assert json.loads((fresh / "results" / "multisite" / "none-s1.json").read_text()) == {"d_ap": 0.2}
    assert not list(fresh.rglob("*.partial"))


def test_restore_keeps_what_the_work_folder_has_and_refuses_another_size(tmp_path):
    state = tmp_path / "state"
    save(_work(tmp_path / "work"), Size(), state)
    other = tmp_path / "other"
    (other / "results" / "active-learning").mkdir(parents=True)
    (other / "results" / "active-learning" / "random-s0.json").write_text('{"rounds": [1, 2]}')
    copied = restore(other, Size(), state)
    assert {p.name for p in copied} == {"site-A-model.safetensors", "none-s1.json"}
    assert (other / "results" / "active-learning" / "random-s0.json").read_text() == '{"rounds": [1, 2]}'
    assert restore(tmp_path / "quick", QUICK, state) == []
    assert not (tmp_path / "quick").exists()
    assert restore(tmp_path / "none", Size(), tmp_path / "no-state") == []


def test_training_steps_count_a_killed_and_redone_epoch_once(tmp_path):
    """Phase 1: epoch 1 done (3 batches), epoch 2 killed after 2 batches and redone in full (3)."""
    from adaptation_setup import training_steps

    def progress(phase, epoch, done, loss=True):
        event = {"event": "progress", "phase": phase, "epoch": epoch, "done": done, "total": 3}
        return json.dumps({**event, "loss": 0.5} if loss else event)

    lines = [progress(1, 1, i) for i in (1, 2, 3)] + [progress(1, 2, i) for i in (1, 2)]
    lines += ['{"event": "resume", "phase": "1", "epoch": 1}'] + [progress(1, 2, i) for i in (1, 2, 3)]
    lines += [progress(2, None, 5, loss=False)]  # candidate mining: no optimisation step
    lines += [progress(2, 1, i) for i in (1, 2)]
    (tmp_path / "progress.jsonl").write_text("\n".join(lines) + "\n")
    assert training_steps(tmp_path) == {"1": 6, "2": 2}

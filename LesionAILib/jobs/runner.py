"""Long jobs in a separate process, followed without threads: start, poll, cancel. Qt-free.

A :class:`JobRunner` starts a command (usually ``<python> -m LesionAILib.cli analyze|order|classify|finetune
... --json-events --cancel-file <work folder>/CANCEL``, built by :func:`lesionai_job`) with its stdout
redirected to ``<work folder>/events.jsonl`` and its stderr to ``stderr.log``. :meth:`JobRunner.poll`
reads the lines written since the last call, parses the complete JSON lines into :class:`JobState`,
and never blocks; the Slicer panel calls it from a ``QTimer`` on the main thread, so no Qt or MRML
call ever happens on another thread. Reading files instead of pipes works the same on Linux, macOS
and Windows and cannot dead-lock on a full pipe.

:meth:`JobRunner.cancel` first creates the job's cancel file (which ``lesionai`` commands honour at
their next step, leaving the previous state intact and exiting with
:data:`~LesionAILib.jobs.events.EXIT_INTERRUPTED`), then stops the whole process tree: a job is
started in its own session (POSIX; its own process group on Windows), because inside Slicer the
command is ``PythonSlicer``, a launcher that starts the real interpreter as a child and forwards
no signals — terminating the launcher alone would leave the child working. POSIX: SIGTERM to the
process group (``lesionai`` treats it as a cancel), SIGKILL to the group if anything in it still
runs ``grace_s`` seconds later (checked by ``poll``). Windows: ``taskkill /T`` of the tree, forced
after the grace period (not tested here: no Windows machine). A cancelled job counts as ended only
when no process of its group is left.

Events are those of :mod:`LesionAILib.jobs.events`; the fields of a final event
(:data:`~LesionAILib.jobs.events.RESULT_EVENTS`: ``analyzed``, ``ordered``, ``classified``,
``finetuned``, ``segmented``, ``done``) become :attr:`JobState.result`.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from LesionAILib.jobs.events import (
    EPOCH,
    ERROR_PREFIX,
    EXIT_INTERRUPTED,
    PROGRESS,
    RESULT_EVENTS,
    VALIDATION,
)

CANCEL_FILE = "CANCEL"  # inside the work folder


@dataclass
class JobState:
    """What is known about a job so far (updated by :meth:`JobRunner.poll`).

    Attributes:
        status: ``"not started"``, ``"running"``, ``"cancelling"``, ``"finished"``, ``"failed"`` or ``"cancelled"``.
        stage: the current stage (``"prepare"``, ``"preprocess"``, ``"phase 1"``, …).
        phase, epoch: training phase (1 localization, 2 classification) and epoch of the last event.
        done, total: progress within the current stage/epoch.
        loss: last training loss; validation_score: last validation score (epoch or final validation).
        epochs: epochs planned per phase (``{1: 8, 2: 4}``) when the caller knows them (epoch bar).
        result: fields of the job's final event; error: a one-line message when it failed.
        events: every parsed event, oldest first; log: lines that were not JSON (plain output).
    """

    status: str = "not started"
    stage: str = ""
    phase: int | None = None
    epoch: int | None = None
    done: int = 0
    total: int = 0
    loss: float | None = None
    validation_score: float | None = None
    epochs: dict[int, int] = field(default_factory=dict)
    result: dict | None = None
    error: str = ""
    returncode: int | None = None
    events: list[dict] = field(default_factory=list)
    log: list[str] = field(default_factory=list)

    @property
    def fraction(self) -> float:
        """Progress within the current stage, 0–1."""
        return min(1.0, self.done / self.total) if self.total else 0.0

    @property
    def epoch_fraction(self) -> float:
        """Progress over all planned epochs of all phases, 0–1 (needs :attr:`epochs`)."""
        planned = sum(self.epochs.values())
        if not planned or self.phase is None or self.epoch is None:
            return 1.0 if self.status == "finished" else 0.0
        before = sum(count for phase, count in self.epochs.items() if phase < self.phase)
        return min(1.0, (before + max(0, self.epoch - 1) + self.fraction) / planned)

    @property
    def finished(self) -> bool:
        return self.status in ("finished", "failed", "cancelled")

    def describe(self) -> str:
        """One line for a status label."""
        if self.status in ("failed", "cancelled"):
            return self.error or self.status
        parts = [self.stage or self.status]
        if self.epoch is not None and self.phase is not None:
            planned = self.epochs.get(self.phase)
            parts.append(f"epoch {self.epoch}" + (f"/{planned}" if planned else ""))
        if self.total:
            parts.append(f"{self.done}/{self.total}")
        if self.loss is not None:
            parts.append(f"loss {self.loss:.4f}")
        if self.validation_score is not None:
            parts.append(f"validation {self.validation_score:.3f}")
        return ", ".join(parts)

    def apply(self, event: dict) -> None:
        """Update the state from one event."""
        self.events.append(event)
        kind = event.get("event")
        if "phase" in event and isinstance(event["phase"], int):
            self.phase = event["phase"]
        if "epoch" in event and isinstance(event["epoch"], int):
            self.epoch = event["epoch"]
        if kind == PROGRESS:
            self.stage = str(event.get("stage") or (f"phase {event['phase']}" if "phase" in event else self.stage))
            self.done = int(event.get("done", 0))
            self.total = int(event.get("total", 0))
            if isinstance(event.get("loss"), (int, float)):
                self.loss = float(event["loss"])
        elif kind == EPOCH and isinstance(event.get("val_score"), (int, float)):
            self.validation_score = float(event["val_score"])
        elif kind == VALIDATION and isinstance(event.get("score"), (int, float)):
            self.validation_score = float(event["score"])
        elif kind in RESULT_EVENTS:
            self.result = {k: v for k, v in event.items() if k not in ("event", "time")}
            after = event.get("validation_after")
            if isinstance(after, Mapping) and isinstance(after.get("score"), (int, float)):
                self.validation_score = float(after["score"])


class JobRunner:
    """Run ``command`` in a separate process and follow its JSON-lines events (see module docstring).

    Args:
        command: the program and its arguments.
        work_folder: where ``events.jsonl`` and ``stderr.log`` go (created; results may go there too).
        env: extra environment variables (``PYTHONPATH`` entries are prepended, not replaced).
        epochs: epochs planned per phase, for :attr:`JobState.epoch_fraction`.
        context: what the starter needs back when the job ends (e.g. which control points a
            classification job scores); the runner never reads it.
    """

    def __init__(
        self,
        command: Sequence[str],
        work_folder: str | Path,
        env: Mapping[str, str] | None = None,
        epochs: Mapping[int, int] | None = None,
        context: object = None,
    ):
        self.command = [str(part) for part in command]
        self.work_folder = Path(work_folder)
        self.env = dict(env or {})
        self.state = JobState(epochs=dict(epochs or {}))
        self.context = context
        self._process: subprocess.Popen | None = None
        self._offset = 0
        self._partial = b""
        self._kill_at: float | None = None

    @property
    def events_path(self) -> Path:
        return self.work_folder / "events.jsonl"

    @property
    def stderr_path(self) -> Path:
        return self.work_folder / "stderr.log"

    @property
    def cancel_file(self) -> Path:
        """Created by :meth:`cancel`; a ``lesionai`` command given ``--cancel-file`` on it stops at its next step."""
        return self.work_folder / CANCEL_FILE

    @property
    def pid(self) -> int | None:
        return self._process.pid if self._process else None

    def start(self) -> JobRunner:
        """Start the process (returns immediately)."""
        if self._process is not None:
            raise RuntimeError("job already started")
        self.work_folder.mkdir(parents=True, exist_ok=True)
        environment = os.environ.copy()
        for key, value in self.env.items():
            if key == "PYTHONPATH" and environment.get("PYTHONPATH"):
                value = os.pathsep.join([value, environment["PYTHONPATH"]])
            environment[key] = value
        environment["PYTHONUNBUFFERED"] = "1"
        group = (
            {"creationflags": subprocess.CREATE_NO_WINDOW | subprocess.CREATE_NEW_PROCESS_GROUP}
            if os.name == "nt"
            else {"start_new_session": True}
        )
        with open(self.events_path, "wb") as stdout, open(self.stderr_path, "wb") as stderr:
            self._process = subprocess.Popen(
                self.command,
                stdin=subprocess.DEVNULL,
                stdout=stdout,
                stderr=stderr,
                env=environment,
                cwd=self.work_folder,
                **group,
            )
        self.state.status = "running"
        return self

    def poll(self) -> list[dict]:
        """Read new output, update :attr:`state`, return the new events. Never blocks."""
        if self._process is None:
            return []
        returncode = self._process.poll()
        new_events = self._read_events()
        # after a cancel, the job has ended only when nothing of its process tree is left
        if returncode is None or (self.state.status == "cancelling" and self._group_alive()):
            if self._kill_at is not None and time.monotonic() >= self._kill_at:
                self._signal_tree(force=True)
            return new_events
        if not self.state.finished:
            new_events += self._read_events(final=True)
            self._finish(returncode)
        return new_events

    def wait(self, timeout_s: float | None = None, interval_s: float = 0.1) -> JobState:
        """Poll until the job ends (for scripts and tests; the GUI polls from a timer instead)."""
        deadline = None if timeout_s is None else time.monotonic() + timeout_s
        while not self.state.finished:
            self.poll()
            if deadline is not None and time.monotonic() > deadline and not self.state.finished:
                self.cancel(grace_s=0.0)
                raise TimeoutError(f"job did not finish within {timeout_s} s: {' '.join(self.command)}")
            time.sleep(interval_s)
        return self.state

    def cancel(self, grace_s: float = 10.0) -> None:
        """Ask the job to stop (cancel file, then SIGTERM); it is killed if still running ``grace_s`` s later.

        Never blocks.
        """
        if self._process is None or self.state.finished or not self.alive:
            return
        self.state.status = "cancelling"
        self.cancel_file.touch()
        self._signal_tree(force=grace_s <= 0)
        self._kill_at = time.monotonic() + grace_s

    @property
    def alive(self) -> bool:
        """True while the job's process, or any process it started in its group, is running."""
        if self._process is None:
            return False
        return self._process.poll() is None or self._group_alive()

    # ------------------------------------------------------------------ internals
    def _group_alive(self) -> bool:
        if os.name == "nt" or self._process is None:
            return False  # Windows: the tree is killed as a whole by taskkill /T
        try:
            os.killpg(self._process.pid, 0)
        except ProcessLookupError:
            return False
        except PermissionError:
            return True
        return True

    def _signal_tree(self, force: bool) -> None:
        """SIGTERM (or SIGKILL) to the job's process group; on Windows, ``taskkill /T`` (``/F`` when forced)."""
        if os.name == "nt":
            flags = ["/T", "/F"] if force else ["/T"]
            subprocess.run(["taskkill", *flags, "/PID", str(self._process.pid)], capture_output=True, check=False)
            return
        try:
            os.killpg(self._process.pid, signal.SIGKILL if force else signal.SIGTERM)
        except ProcessLookupError:
            pass

    def _read_events(self, final: bool = False) -> list[dict]:
        try:
            with open(self.events_path, "rb") as handle:
                handle.seek(self._offset)
                chunk = handle.read()
        except FileNotFoundError:
            return []
        self._offset += len(chunk)
        lines = (self._partial + chunk).split(b"\n")
        self._partial = b"" if final else lines.pop()
        events = []
        for raw in lines:
            text = raw.decode("utf-8", errors="replace").strip()
            if not text:
                continue
            try:
                event = json.loads(text)
            except json.JSONDecodeError:
                event = None
            if isinstance(event, dict) and "event" in event:
                self.state.apply(event)
                events.append(event)
            else:
                self.state.log.append(text)
        return events

    def _finish(self, returncode: int) -> None:
        self.state.returncode = returncode
        if self.state.status == "cancelling" or returncode == EXIT_INTERRUPTED:
            self.state.status = "cancelled"
            self.state.error = "cancelled; the previous model and data are unchanged"
        elif returncode == 0:
            self.state.status = "finished"
        else:
            self.state.status = "failed"
            self.state.error = self._error_line(returncode)

    def _error_line(self, returncode: int) -> str:
        try:
            lines = [line.strip() for line in self.stderr_path.read_text(errors="replace").splitlines() if line.strip()]
        except FileNotFoundError:
            lines = []
        for line in reversed(lines):
            if line.startswith(ERROR_PREFIX):
                return line[len(ERROR_PREFIX) :]
        return lines[-1] if lines else f"the job ended with exit status {returncode}"


def lesionai_job(
    command: str,
    arguments: Sequence[str],
    work_folder: str | Path,
    python: str = sys.executable,
    env: Mapping[str, str] | None = None,
    epochs: Mapping[int, int] | None = None,
    context: object = None,
) -> JobRunner:
    """A (not yet started) job running ``<python> -m LesionAILib.cli <command> --json-events --cancel-file
    <work folder>/CANCEL <arguments>``: the same command a person types, with progress events and a cancel file."""
    work_folder = Path(work_folder)
    full = [python, "-m", "LesionAILib.cli", command, "--json-events", "--cancel-file", work_folder / CANCEL_FILE]
    return JobRunner([*full, *arguments], work_folder, env, epochs, context)

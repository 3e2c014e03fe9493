"""The job protocol: JSON-lines progress events, cancellation, exit statuses and a terminal progress bar.

Every long job (training, fine-tuning, analysis, ordering, point classification) reports through an
:class:`EventLog`: one JSON object per line, e.g. ``{"event": "progress", "stage": "uncertainty",
"done": 12, "total": 40}``, appended to a file and optionally written to stdout (how the Slicer
panel, which runs ``lesionai`` commands in a separate process, follows them). The event names
below are shared by the writers (the engine and the command line) and the reader
(:class:`LesionAILib.jobs.runner.JobRunner`).

A job is cancelled by creating its cancel file or sending SIGTERM/SIGINT; it stops at the next
step boundary, leaving its last checkpoint and every previously written file intact, and raises
:class:`Cancelled`; the command line then exits with :data:`EXIT_INTERRUPTED`.
"""

from __future__ import annotations

import json
import signal
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from LesionAILib.errors import LesionAIError

# ----------------------------------------------------------------------------- event names
PROGRESS = "progress"  # stage | phase, epoch; done, total; optional loss
PREPARE = "prepare"  # training data prepared: train, val case counts
START = "start"  # training starts: phases, train, val, device, world
RESUME = "resume"  # training resumed from a checkpoint: phase, epoch
EPOCH = "epoch"  # an epoch ended: phase, epoch, train_loss, val_score, ...
EARLY_STOP = "early_stop"
PHASE_DONE = "phase_done"
ORDER = "order"  # a curriculum order inside training: by, cases
SKIPPED = "skipped"  # a deployment case left out: reason
VALIDATION = "validation"  # a model validated on held-out cases: model, score, ...
# final events: their fields are the job's result
DONE = "done"  # `lesionai train`: model, metrics
FINETUNED = "finetuned"  # `lesionai finetune`: version, activated, validation_before/after, ...
ANALYZED = "analyzed"  # `lesionai analyze`: folder, case_score, candidates (count) — or folders, failures
ORDERED = "ordered"  # `lesionai order`: by, order [{case, score, ...}], first (case id or None)
CLASSIFIED = "classified"  # `lesionai classify`: case_id, points [{probability, model, point_lps_mm, ...}]
SEGMENTED = "segmented"  # `lesionai gland`: folder, volume_ml, psa_density_ng_ml2, warnings
SYNTHESIS_VIEWED = "synthesis_viewed"  # `lesionai synthesis-view`: png, point_lps_mm, difference, model, ...
RESULT_EVENTS = (DONE, FINETUNED, ANALYZED, ORDERED, CLASSIFIED, SEGMENTED, SYNTHESIS_VIEWED)

# ----------------------------------------------------------------------------- how a job process ends
EXIT_OK = 0
EXIT_USER_ERROR = 2  # a mistake the user can fix; one line ERROR_PREFIX + message on stderr
EXIT_INTERRUPTED = 130  # cancelled (cancel file, SIGTERM, SIGINT); nothing further was written
ERROR_PREFIX = "lesionai: error: "


class Cancelled(LesionAIError):
    """The job was cancelled; its previous state is intact."""


class EventLog:
    """Append JSON-lines events to ``path`` (and stdout when ``echo``); draw a bar on a terminal.

    Args:
        path: the ``.jsonl`` file (appended to, so a resumed job continues its log); ``None``: no file.
        echo: also print each event as one line on stdout (for a parent process to read).
        bar: show a tqdm progress bar on stderr for ``progress`` events.
    """

    def __init__(self, path: str | Path | None = None, echo: bool = False, bar: bool = False):
        self.path = Path(path) if path else None
        if self.path:
            self.path.parent.mkdir(parents=True, exist_ok=True)
        self.echo = echo
        self.bar_enabled = bar
        self._bar = None
        self._bar_key = None

    def emit(self, event: str, **fields) -> dict:
        record = {"event": event, "time": round(time.time(), 3), **fields}
        line = json.dumps(record, default=float)
        if self.path:
            with open(self.path, "a", encoding="utf-8") as handle:
                handle.write(line + "\n")
        if self.echo:
            print(line, flush=True)
        if self.bar_enabled and event == PROGRESS:
            self._update_bar(record)
        elif self._bar is not None and event != PROGRESS:
            self._bar.close()
            self._bar = None
            if not self.echo and event in (EPOCH, PHASE_DONE, DONE):
                summary = {k: v for k, v in fields.items() if isinstance(v, (int, float, str))}
                print(f"{event}: " + ", ".join(f"{k}={_short(v)}" for k, v in summary.items()), file=sys.stderr)
        return record

    def progress(self, stage: str, done: int, total: int, **fields) -> dict:
        """Emit ``{"event": "progress", "stage": stage, "done": done, "total": total, **fields}``."""
        return self.emit(PROGRESS, stage=stage, done=int(done), total=int(total), **fields)

    def progress_callback(self, stage: str, cancel: CancelToken | None = None) -> Callable[[int, int], None]:
        """``callback(done, total)`` for engine functions that report steps: honours ``cancel``, then emits progress."""

        def callback(done: int, total: int) -> None:
            if cancel is not None:
                cancel.check()
            self.progress(stage, done, total)

        return callback

    def _update_bar(self, record: dict) -> None:
        from tqdm import tqdm

        key = (record.get("phase"), record.get("epoch"), record.get("stage"))
        if self._bar is None or key != self._bar_key:
            if self._bar is not None:
                self._bar.close()
            label = " ".join(f"{k} {record[k]}" for k in ("stage", "phase", "epoch") if k in record)
            self._bar = tqdm(total=record.get("total"), desc=label, file=sys.stderr, leave=False)
            self._bar_key = key
        self._bar.n = record.get("done", 0)
        postfix = {k: _short(record[k]) for k in ("loss",) if k in record}
        self._bar.set_postfix(postfix, refresh=False)
        self._bar.refresh()

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()
            self._bar = None


def _short(value) -> str:
    return f"{value:.4g}" if isinstance(value, float) else str(value)


def read_events(path: str | Path) -> list[dict]:
    """All complete events of a log (a half-written last line is ignored)."""
    events = []
    path = Path(path)
    if not path.exists():
        return events
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            events.append(json.loads(line))
        except json.JSONDecodeError:
            continue
    return events


class CancelToken:
    """Set by SIGTERM/SIGINT (while :meth:`installed`) or by the existence of ``cancel_file``."""

    def __init__(self, cancel_file: str | Path | None = None):
        self.cancel_file = Path(cancel_file) if cancel_file else None
        self._cancelled = False

    def cancel(self) -> None:
        self._cancelled = True

    @property
    def cancelled(self) -> bool:
        return self._cancelled or (self.cancel_file is not None and self.cancel_file.exists())

    def check(self) -> None:
        """Raise :class:`Cancelled` if cancellation was requested."""
        if self.cancelled:
            raise Cancelled("the job was cancelled; the previous model, results and last checkpoint are intact")

    @contextmanager
    def installed(self) -> Iterator[CancelToken]:
        """Route SIGTERM and SIGINT to :meth:`cancel` (main thread only) for the duration."""
        handlers = {}
        try:
            for signum in (signal.SIGTERM, signal.SIGINT):
                handlers[signum] = signal.signal(signum, lambda *_: self.cancel())
        except ValueError:  # not the main thread: rely on the cancel file
            pass
        try:
            yield self
        finally:
            for signum, handler in handlers.items():
                signal.signal(signum, handler)

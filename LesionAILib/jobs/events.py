"""Long jobs: JSON-lines progress events, cancellation, and a terminal progress bar.

Every long job (training, fine-tuning, batch analysis) reports through an :class:`EventLog`:
one JSON object per line, e.g. ``{"event": "progress", "phase": 1, "epoch": 3, "done": 12,
"total": 40}``, appended to a file and optionally written to stdout (how the Slicer panel, which
runs jobs in a separate process, follows them). A job is cancelled by creating its cancel file
or sending SIGTERM/SIGINT; it stops at the next step boundary, leaving its last checkpoint and
every previously written model intact, and raises :class:`Cancelled`.
"""

from __future__ import annotations

import json
import signal
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from LesionAILib.errors import LesionAIError


class Cancelled(LesionAIError):
    """The job was cancelled; its previous state is intact."""


class EventLog:
    """Append JSON-lines events to ``path`` (and stdout when ``echo``); draw a bar on a terminal.

    Args:
        path: the ``.jsonl`` file (appended to, so a resumed job continues its log).
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
        if self.bar_enabled and event == "progress":
            self._update_bar(record)
        elif self._bar is not None and event != "progress":
            self._bar.close()
            self._bar = None
            if not self.echo and event in ("epoch", "phase_done", "done"):
                summary = {k: v for k, v in fields.items() if isinstance(v, (int, float, str))}
                print(f"{event}: " + ", ".join(f"{k}={_short(v)}" for k, v in summary.items()), file=sys.stderr)
        return record

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
            raise Cancelled("the job was cancelled; the previous model and the last checkpoint are intact")

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

"""The access log: one JSON line per event (who started a session, opened or analysed which study, was refused).

Lines are written with a single ``write`` on a file opened in append mode, so the front server and
every session process can append to the same file without interleaving (POSIX appends of less than
``PIPE_BUF`` bytes are atomic; a line is cut to :data:`MAX_LINE` characters to stay under it).
Each line: ``{"time": ISO-8601 UTC, "event": ..., "session": ..., "remote": ..., ...}``.
"""

from __future__ import annotations

import json
import os
from datetime import datetime, timezone
from pathlib import Path

MAX_LINE = 3500  # bytes; below Linux's PIPE_BUF (4096), so an append is one atomic write


class AccessLog:
    """Appends events to ``path`` (created with mode 0600: it names patients' studies)."""

    def __init__(self, path: str | Path, **always):
        self.path = Path(path)
        self.always = always  # fields of every line (e.g. the session id and who opened it)

    def write(self, event: str, **fields) -> dict:
        """Append one event; returns the record written."""
        record = {"time": datetime.now(timezone.utc).isoformat(timespec="milliseconds"), "event": event}
        record.update(self.always)
        record.update(fields)
        line = json.dumps(record, ensure_ascii=True, default=str)
        if len(line) > MAX_LINE:
            record = {key: record[key] for key in ("time", "event", *self.always)} | {"truncated": True}
            line = json.dumps(record, ensure_ascii=True, default=str)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        descriptor = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
        try:
            os.write(descriptor, (line + "\n").encode("ascii"))
        finally:
            os.close(descriptor)
        return record

    def with_fields(self, **fields) -> AccessLog:
        """The same log with more fields on every line."""
        return AccessLog(self.path, **self.always, **fields)


def read_access_log(path: str | Path) -> list[dict]:
    """Every record of an access log, oldest first (``[]`` when there is none yet)."""
    path = Path(path)
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text(encoding="ascii").splitlines() if line.strip()]

"""One analysis at a time per study, across every session process: a lock file per study in the work folder.

Sessions are separate processes, so the lock is the operating system's: ``fcntl.flock`` on
``<work>/locks/<sha1 of the study's resolved path>.lock``, taken without waiting (a session that
cannot take it queues its analysis and tries again at its next tick). The kernel drops the lock
when its process dies, so a crashed session never blocks a study.
"""

from __future__ import annotations

import fcntl
import hashlib
import os
from pathlib import Path


class StudyLock:
    """The analysis lock of one study (``study`` is its resolved path)."""

    def __init__(self, locks_folder: str | Path, study: str | Path):
        self.path = Path(locks_folder) / (hashlib.sha1(str(study).encode()).hexdigest() + ".lock")
        self._descriptor: int | None = None

    @property
    def held(self) -> bool:
        return self._descriptor is not None

    def try_acquire(self) -> bool:
        """Take the lock if no other process holds it; True when this object holds it (now or already)."""
        if self._descriptor is not None:
            return True
        self.path.parent.mkdir(parents=True, exist_ok=True)
        descriptor = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(descriptor)
            return False
        self._descriptor = descriptor
        return True

    def release(self) -> None:
        if self._descriptor is not None:
            fcntl.flock(self._descriptor, fcntl.LOCK_UN)
            os.close(self._descriptor)
            self._descriptor = None

"""Session processes: start one :mod:`LesionAIWeb.worker` per browser session, wait until it serves, stop it.

A process per session because a trame server shares one state among its clients and
trame-slicer's ``SlicerApp`` is one per process (VTK's displayable-manager factories are
process-wide singletons): separate processes give every session its own scene, state and jobs,
and when a session ends its memory goes back to the system whatever VTK or torch kept.
"""

from __future__ import annotations

import asyncio
import json
import os
import secrets
import signal
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from LesionAILib.errors import LesionAIError

from .worker import CONFIG_VARIABLE, KEY_VARIABLE

READY_TIMEOUT_S = 120.0
STOP_GRACE_S = 15.0


@dataclass
class Worker:
    """A running session process: its id, port on 127.0.0.1, key, process and folder."""

    session: str
    port: int
    key: str
    process: asyncio.subprocess.Process
    folder: Path
    started: float = field(default_factory=time.time)

    @property
    def alive(self) -> bool:
        return self.process.returncode is None


def _python_path() -> str:
    """PYTHONPATH for a worker: the folder holding LesionAIWeb/LesionAILogic and the one holding LesionAILib."""
    import LesionAILib

    here = Path(__file__).resolve().parents[1]
    engine = Path(LesionAILib.__file__).resolve().parents[1]
    inherited = os.environ.get("PYTHONPATH", "")
    return os.pathsep.join(part for part in (str(here), str(engine), inherited) if part)


async def _drain(stream, log_path: Path) -> None:
    """Copy what the worker still prints on stdout into its log (a full pipe would stall it)."""
    with log_path.open("ab") as log:
        while line := await stream.readline():
            log.write(line)


async def start_worker(session: str, folder: Path, config: dict, environment: dict[str, str]) -> Worker:
    """Start the session process of ``session`` (its settings ``config``) and return once it serves.

    Raises :class:`LesionAIError` when it does not say it is ready within :data:`READY_TIMEOUT_S`
    (its stderr is in ``folder/worker.log``).
    """
    folder.mkdir(parents=True, exist_ok=True)
    config_path = folder / "worker.json"
    config_path.write_text(json.dumps(config), encoding="utf-8")
    key = secrets.token_urlsafe(32)
    env = {**os.environ, **environment, "PYTHONPATH": _python_path(), CONFIG_VARIABLE: str(config_path),
           KEY_VARIABLE: key}
    log_path = folder / "worker.log"
    with log_path.open("ab") as log:
        process = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "LesionAIWeb.worker",
            stdout=asyncio.subprocess.PIPE, stderr=log, stdin=asyncio.subprocess.DEVNULL, env=env,
            start_new_session=True,  # its own process group: stopping it never signals the front server
        )
    try:
        port = await _ready_port(process, log_path)
    except BaseException:  # not ready in time, or the caller gave up (cancelled): no process left behind
        await stop_worker_process(process)
        raise
    asyncio.ensure_future(_drain(process.stdout, log_path))
    return Worker(session, port, key, process, folder)


async def _ready_port(process: asyncio.subprocess.Process, log_path: Path) -> int:
    """The port of the worker's ``{"event": "ready", "port": N}`` line."""
    deadline = time.monotonic() + READY_TIMEOUT_S
    while True:
        remaining = deadline - time.monotonic()
        try:
            line = await asyncio.wait_for(process.stdout.readline(), timeout=max(remaining, 0.01))
        except asyncio.TimeoutError:
            line = b""
        if not line:
            raise LesionAIError(f"the session process did not start (see {log_path})")
        try:
            message = json.loads(line)
        except ValueError:
            continue
        if isinstance(message, dict) and message.get("event") == "ready":
            return int(message["port"])


async def stop_worker_process(process: asyncio.subprocess.Process, grace_s: float = STOP_GRACE_S) -> None:
    """SIGTERM (the worker cancels its jobs and exits), SIGKILL to its group after ``grace_s``."""
    if process.returncode is not None:
        return
    try:
        process.send_signal(signal.SIGTERM)
        await asyncio.wait_for(process.wait(), timeout=grace_s)
    except ProcessLookupError:
        return
    except asyncio.TimeoutError:
        try:
            os.killpg(process.pid, signal.SIGKILL)
        except ProcessLookupError:
            return
        await process.wait()

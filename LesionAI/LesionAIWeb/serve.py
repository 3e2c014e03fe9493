"""``lesionai serve``: check the settings, print the address with its token, run the front server, find the studies.

Refused in one line (:class:`LesionAIError`): a studies folder that is not a folder, a work folder inside
it (results never go into the studies root, which may be read-only), a token shorter than
:data:`MIN_TOKEN_LENGTH`, no off-screen OpenGL for the session processes.
"""

from __future__ import annotations

import asyncio
import ipaddress
import os
import secrets
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from LesionAILib.errors import LesionAIError

MIN_TOKEN_LENGTH = 16
OPENGL_WINDOWS = ("vtkEGLRenderWindow", "vtkOSOpenGLRenderWindow")
_GL_PROBE = """
import vtk
window = vtk.vtkRenderWindow()
window.SetOffScreenRendering(1)
window.SetSize(8, 8)
window.AddRenderer(vtk.vtkRenderer())
window.Render()
print(window.GetClassName(), window.SupportsOpenGL())
"""


@dataclass
class ServeOptions:
    """The options of ``lesionai serve`` (see ``lesionai serve --help``)."""

    studies: str
    host: str = "127.0.0.1"
    port: int = 8765
    work: str | None = None
    token: str | None = None
    store: str | None = None
    device: str = "auto"
    max_sessions: int = 4
    idle_timeout_s: int = 300
    spare_sessions: int = 1


def default_work_folder() -> Path:
    """``$XDG_CACHE_HOME/lesionai/serve`` (``~/.cache/...``; ``~/Library/Caches/...`` on macOS)."""
    if sys.platform == "darwin":
        cache = Path.home() / "Library" / "Caches"
    else:
        cache = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return cache / "lesionai" / "serve"


def _probe(window: str) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-c", _GL_PROBE], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                            text=True, env={**os.environ, "VTK_DEFAULT_OPENGL_WINDOW": window})


def offscreen_window(probes: dict[str, subprocess.Popen]) -> str:
    """The off-screen OpenGL window class the session processes render with, from :func:`start_probes` (child
    processes, since a failing OpenGL context can abort the process): the first that renders."""
    try:
        for window, probe in probes.items():
            output, _ = probe.communicate(timeout=120)
            if probe.returncode == 0 and output.split()[-2:] == [window, "1"]:
                return window
    finally:
        for probe in probes.values():  # the ones not needed any more
            if probe.poll() is None:
                probe.kill()
                probe.wait()
    chosen = os.environ.get("VTK_DEFAULT_OPENGL_WINDOW")
    raise LesionAIError(
        "no off-screen OpenGL for the slice views (tried " + ", ".join((chosen,) if chosen else OPENGL_WINDOWS) + ")",
        hint="install Mesa's EGL (apt-get install libegl1 libegl-mesa0 libgl1-mesa-dri) or OSMesa",
    )


def start_probes() -> dict[str, subprocess.Popen]:
    """Start trying ``$VTK_DEFAULT_OPENGL_WINDOW``, else EGL and OSMesa, at once."""
    chosen = os.environ.get("VTK_DEFAULT_OPENGL_WINDOW")
    return {window: _probe(window) for window in ((chosen,) if chosen else OPENGL_WINDOWS)}


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def found_studies(root) -> list[dict]:
    """The studies under the root (:func:`~LesionAILib.studies.discovery.find_studies`) as page records; a study
    holding a link out of the root is listed with that problem; messages show ``<studies>``, not the server's path."""
    from LesionAILib.studies.discovery import find_studies

    from .confinement import StudyAccessError

    started, found = time.monotonic(), []
    for study in find_studies(root.root):
        record = study.to_dict()
        try:
            root.resolve(study.path)
        except StudyAccessError as error:
            record.update(roles={}, files={}, problem=str(error))
        record["problem"] = root.display(record["problem"])
        found.append(record)
    print(f"lesionai serve: {len(found)} studies under {root.root} ({time.monotonic() - started:.1f} s)", flush=True)
    return found


def checked_settings(options: ServeOptions):
    """The front server's settings from the options (work folder made, token chosen, OpenGL probed); the
    studies are found while the front server starts (:func:`found_studies`)."""
    from .confinement import StudiesRoot
    from .front import FrontSettings

    studies = Path(options.studies)
    if not studies.is_dir():
        raise LesionAIError("is not a folder", studies, "give --studies the folder that holds the studies")
    root = StudiesRoot(studies)
    work = Path(options.work).expanduser().resolve() if options.work else default_work_folder()
    if root.contains(work):
        raise LesionAIError("is inside the studies folder", work, "give --work a folder outside --studies")
    token = options.token or secrets.token_urlsafe(24)
    if len(token) < MIN_TOKEN_LENGTH:
        raise LesionAIError(f"--token is shorter than {MIN_TOKEN_LENGTH} characters", hint="give a longer one")
    work.mkdir(parents=True, exist_ok=True, mode=0o700)
    environment = {"VTK_DEFAULT_OPENGL_WINDOW": offscreen_window(start_probes())}
    return FrontSettings(token, root.root, lambda: found_studies(root), work, options.store, options.device,
                         options.max_sessions, options.idle_timeout_s, environment, options.spare_sessions)


async def _run(settings, host: str, port: int) -> None:
    from aiohttp import web

    from .front import FrontServer

    front = FrontServer(settings)
    runner = web.AppRunner(front.app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, host, port)
    await site.start()
    bound = runner.addresses[0][1]
    shown = f"[{host}]" if ":" in host else host
    print(f"lesionai serve: open http://{shown}:{bound}/?token={settings.token}", flush=True)
    print(f"lesionai serve: work folder {settings.work} (access log {front.log.path})", flush=True)
    if not _is_loopback(host):
        print("lesionai serve: warning: listening beyond this machine without TLS; put it behind an HTTPS reverse "
              "proxy (README, 'In the browser')", flush=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signal_number in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signal_number, stop.set)
    await stop.wait()
    await runner.cleanup()  # stops every session process (FrontServer._stop_sessions)


def serve(options: ServeOptions) -> int:
    """Run ``lesionai serve`` until SIGINT/SIGTERM; returns the exit status."""
    settings = checked_settings(options)
    asyncio.run(_run(settings, options.host, options.port))
    return 0

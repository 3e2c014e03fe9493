"""What the browser tests share: a copy of real studies as a studies root, ``lesionai serve`` in a child process,
Debian's Chromium through Playwright, pixels of a slice view, and the memory of a process tree.

Chromium is the ``chromium`` apt package (``/usr/bin/chromium``, or ``$LESIONAI_CHROMIUM``); Playwright
drives it with ``executable_path`` and never downloads a browser.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from conftest import ROOT, skip_or_fail

CHROMIUM = Path(os.environ.get("LESIONAI_CHROMIUM", "/usr/bin/chromium"))
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage"]
ADDRESS = re.compile(r"open (http://127\.0\.0\.1:(\d+)/\?token=(\S+))")
T2_SLICE_MM = 3.0  # ProstateX T2 slice spacing: a view "through" a point passes within half of it


def require_chromium() -> Path:
    if not CHROMIUM.exists():
        skip_or_fail(f"no Chromium at {CHROMIUM} (apt-get install chromium, or set LESIONAI_CHROMIUM)")
    return CHROMIUM


def copy_series(study: Path, target: Path, series_prefixes: tuple[str, ...]) -> Path:
    """Copy the series folders of ``study/<date>/`` whose names start with one of ``series_prefixes``."""
    date = next(p for p in study.iterdir() if p.is_dir())
    for series in date.iterdir():
        if series.name.startswith(series_prefixes):
            shutil.copytree(series, target / date.name / series.name)
    return target / date.name


@dataclass
class RunningServer:
    """A ``lesionai serve`` child process and where it serves."""

    process: subprocess.Popen
    address: str  # with the token
    base: str  # http://127.0.0.1:PORT
    token: str
    work: Path
    output: list[str]

    @property
    def access_log(self) -> Path:
        return self.work / "access.jsonl"


def start_server(studies: Path, work: Path, *options: str, timeout_s: float = 180.0) -> RunningServer:
    """``lesionai serve --studies studies --work work --port 0 options...``, once it printed its address."""
    command = [sys.executable, "-m", "LesionAILib.cli", "serve", "--studies", str(studies), "--work", str(work),
               "--port", "0", *options]
    environment = {**os.environ, "PYTHONPATH": str(ROOT)}
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, cwd=ROOT,
                               env=environment, start_new_session=True)
    output, deadline = [], time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        line = process.stdout.readline()
        if not line:
            break
        output.append(line.rstrip())
        found = ADDRESS.search(line)
        if found:
            return RunningServer(process, found.group(1), f"http://127.0.0.1:{found.group(2)}", found.group(3),
                                 work, output)
    process.kill()
    raise AssertionError("lesionai serve did not print its address:\n" + "\n".join(output))


def stop_server(server: RunningServer, timeout_s: float = 60.0) -> int:
    """SIGINT (the server stops its session processes) and wait; SIGKILL the group if it hangs."""
    server.process.send_signal(signal.SIGINT)
    try:
        return server.process.wait(timeout=timeout_s)
    except subprocess.TimeoutExpired:
        os.killpg(server.process.pid, signal.SIGKILL)
        return server.process.wait()


def tree_rss_mb(pid: int) -> float:
    """Resident memory (MB) of a process and all its descendants (Linux ``/proc``)."""
    total, pending = 0.0, [pid]
    while pending:
        current = pending.pop()
        try:
            status = Path(f"/proc/{current}/status").read_text()
            total += int(re.search(r"VmRSS:\s+(\d+) kB", status).group(1)) / 1024
            for task in Path(f"/proc/{current}/task").iterdir():
                pending += [int(child) for child in (task / "children").read_text().split()]
        except (FileNotFoundError, ProcessLookupError, AttributeError):
            continue
    return total


def ras_to_view_pixel(view: dict, ras, width_px: float) -> tuple[float, float]:
    """``(column, row)`` in the page's image of a slice view (``view``: its ``lesionai/inspect`` record) of a RAS
    point (mm), the image drawn ``width_px`` wide; row 0 at the top."""
    xy_to_ras = np.array(view["xy_to_ras"], dtype=float)
    x, y, _, _ = np.linalg.inv(xy_to_ras) @ np.array([*map(float, ras), 1.0])
    columns, rows = view["dimensions"][:2]
    scale = width_px / columns
    return x * scale, (rows - 1 - y) * scale


def distance_to_plane_mm(view: dict, ras) -> float:
    """Distance (mm) from a RAS point to the plane a view shows (its SliceToRAS: normal = 3rd column)."""
    slice_to_ras = np.array(view["slice_to_ras"], dtype=float)
    normal, origin = slice_to_ras[:3, 2], slice_to_ras[:3, 3]
    return float(abs((np.asarray(ras, dtype=float) - origin) @ normal) / np.linalg.norm(normal))


def heat_shift(shown: np.ndarray, hidden: np.ndarray) -> np.ndarray:
    """Pixels the heatmap layer turns toward red: between a view with the heatmap shown and hidden ([H, W, 3]),
    red rose against blue by more than 30 (LesionAI's heat palette runs dark red → orange → yellow, and a
    segment's fill or a crosshair drawn on top is the same in both)."""
    change = shown.astype(int) - hidden.astype(int)
    return change[..., 0] - change[..., 2] > 30


def outline_pixels(rgb: np.ndarray) -> np.ndarray:
    """Saturated cool pixels ([H, W, 3]): the candidate outlines' colours (cyan, green, magenta, blue), not grey
    MRI, not the warm heat colours."""
    red, green, blue = (rgb[..., channel].astype(int) for channel in range(3))
    saturated = rgb.max(axis=2).astype(int) - rgb.min(axis=2) > 80
    return saturated & ((blue > red + 40) | (green > red + 40))


def disc(shape, centre_xy, radius_px: float) -> np.ndarray:
    rows, columns = np.mgrid[: shape[0], : shape[1]]
    return (columns - centre_xy[0]) ** 2 + (rows - centre_xy[1]) ** 2 <= radius_px**2

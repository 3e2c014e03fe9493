"""One session's process: a trame-slicer server with its own MRML scene, panel controller and reading page.

Started by the front server (:mod:`LesionAIWeb.front`), never by a person:
``python -m LesionAIWeb.worker`` with its settings in the JSON file named by ``LESIONAI_WORKER_CONFIG``
and its key in ``LESIONAI_WORKER_KEY`` (environment, so neither shows in ``ps``). It listens on a
random port of 127.0.0.1 and answers only requests carrying the key (header :data:`KEY_HEADER`, which
the front adds after checking the browser's token), so another local user cannot reach a session
by its port. It prints one JSON line ``{"event": "ready", "port": N}`` when it serves, follows its
jobs every :data:`~LesionAIWeb.session.TICK_S` seconds, and ends — cancelling its jobs — when no
browser has been connected for ``idle_timeout_s`` seconds (:class:`Attendance`), when the front server
is gone, or on SIGTERM/SIGINT (aiohttp's graceful exit).

Besides the page it serves ``lesionai/claim`` (the front hands a spare session to a browser),
``lesionai/result.zip`` (the kept result folder of the study on screen)
and ``lesionai/inspect`` (the session's scene as JSON: slice planes of the three views, the candidate
rows, the job state — what automation and the browser tests check the views against).
"""

from __future__ import annotations

import asyncio
import hmac
import io
import json
import os
import sys
import time
import zipfile
from pathlib import Path

KEY_HEADER = "X-LesionAI-Worker-Key"
CONFIG_VARIABLE = "LESIONAI_WORKER_CONFIG"
KEY_VARIABLE = "LESIONAI_WORKER_KEY"


def _matrix(vtk_matrix) -> list[list[float]]:
    return [[vtk_matrix.GetElement(row, column) for column in range(4)] for row in range(4)]


def inspection(reading, display) -> dict:
    """The session's scene as JSON (see the module docstring); positions RAS mm, matrices row-major 4×4."""
    controller = reading.controller
    scene = controller.logic.scene
    views = {}
    for name, role in display.READING_VIEWS:
        slice_node = next(n for n in display.nodes_of_class(scene, "vtkMRMLSliceNode") if n.GetLayoutName() == name)
        composite = next(
            n for n in display.nodes_of_class(scene, "vtkMRMLSliceCompositeNode") if n.GetLayoutName() == name
        )
        background = scene.GetNodeByID(composite.GetBackgroundVolumeID() or "")
        foreground = scene.GetNodeByID(composite.GetForegroundVolumeID() or "")
        views[name] = {
            "role": role,
            "slice_to_ras": _matrix(slice_node.GetSliceToRAS()),
            "xy_to_ras": _matrix(slice_node.GetXYToRAS()),
            "dimensions": list(slice_node.GetDimensions()),
            "background": background.GetName() if background else None,
            "foreground": foreground.GetName() if foreground else None,
            "foreground_opacity": composite.GetForegroundOpacity(),
        }
    state = controller.state
    job = controller.job("analysis")
    heatmap = controller.logic.heatmapNodes(state.t2Volume)["combined"] if state.t2Volume else None
    display_node = heatmap.GetScalarVolumeDisplayNode() if heatmap else None
    return {
        "study": reading.study["key"] if reading.study else None,
        "case_id": state.caseId,
        "selected_candidate": state.selectedCandidate,
        "rows": controller.reading.rows(),
        "busy": controller.busy,
        "heatmap_threshold": display_node.GetLowerThreshold() if display_node else None,
        "analysis": None if job is None else {"status": job.state.status, "fraction": job.state.fraction},
        "views": views,
    }


def _zipped(folder: Path) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for path in sorted(folder.rglob("*")):
            if path.is_file():
                archive.write(path, Path(folder.name) / path.relative_to(folder))
    return buffer.getvalue()


class Attendance:
    """Whether a browser is connected, and since when none is (a session ends after ``idle_timeout_s`` alone).

    A spare session (started ahead of a browser) waits unclaimed and never ends for idleness; the
    front claims it for a browser (``POST lesionai/claim``), which also names who it is for the access log.
    Until a browser first connects, the session waits at least :data:`FIRST_CONNECTION_S` (the page loads).
    """

    FIRST_CONNECTION_S = 60.0

    def __init__(self, idle_timeout_s: float, claimed: bool):
        self.idle_timeout_s = float(idle_timeout_s)
        self.claimed = claimed
        self.connected = 0
        self.ever_connected = False
        self.alone_since = time.monotonic()

    def join(self) -> None:
        self.connected += 1
        self.ever_connected = True

    def leave(self) -> None:
        self.connected -= 1
        self.alone_since = time.monotonic()

    def claim(self) -> None:
        self.claimed = True
        self.alone_since = time.monotonic()

    @property
    def idle(self) -> bool:
        if not self.claimed or self.connected:
            return False
        wait = self.idle_timeout_s if self.ever_connected else max(self.idle_timeout_s, self.FIRST_CONNECTION_S)
        return time.monotonic() - self.alone_since > wait


def _protect(app, key: str, reading, display, attendance: Attendance, studies_file: Path) -> None:
    """Every request needs the worker key; count connected browsers; add the claim, inspection and download routes."""
    from aiohttp import web

    @web.middleware
    async def require_key(request, handler):
        if not hmac.compare_digest(request.headers.get(KEY_HEADER, ""), key):
            return web.Response(status=403, text="forbidden\n")
        if request.headers.get("Upgrade", "").lower() != "websocket":
            return await handler(request)
        attendance.join()  # a websocket's handler runs as long as the browser stays connected
        try:
            return await handler(request)
        finally:
            attendance.leave()

    async def claim(request):
        client = await request.json()
        reading.log.always.update({name: str(value)[:200] for name, value in client.items()})
        reading.setStudies(studies_of(studies_file))
        attendance.claim()
        return web.json_response({"claimed": True})

    async def inspect(_request):
        return web.json_response(inspection(reading, display), dumps=lambda value: json.dumps(value, default=str))

    async def download(_request):
        folder = reading.resultFolder()
        if folder is None:
            return web.Response(status=404, text="no analysis result for the study on screen\n")
        reading.noteDownload()
        return web.Response(
            body=_zipped(folder),
            content_type="application/zip",
            headers={"Content-Disposition": f'attachment; filename="{folder.name}-lesionai-result.zip"'},
        )

    app.middlewares.append(require_key)
    app.router.add_post("/lesionai/claim", claim)
    app.router.add_get("/lesionai/inspect", inspect)
    app.router.add_get("/lesionai/result.zip", download)


def studies_of(path: Path) -> list[dict]:
    """The study list the front server wrote (``studies_file``); empty until it has."""
    return json.loads(path.read_text(encoding="utf-8")) if path.exists() else []


def _slice_slider(server, _view_id, view) -> None:
    """Under each view: its slice slider (the only control trame-slicer's gutter offers that reading needs)."""
    from trame.widgets import html
    from trame_slicer.app.logic.slice_view_logic import connect_slice_view_slider_to_state
    from trame_slicer.app.ui.slider import Slider

    with html.Div(style="position: absolute; bottom: 0; left: 0; width: 100%;"):
        Slider(typed_state=connect_slice_view_slider_to_state(server, view), theme="dark", dense=True)


def run(config: dict, key: str) -> None:
    """Serve one session until it ends (see the module docstring)."""
    import slicer
    from LesionAILogic import display
    from LesionAILogic.logic import LesionAILogic
    from LesionAILogic.panel.controller import PanelController
    from LesionAILogic.panel.state import PanelState
    from trame.app import get_server
    from trame_server.utils.asynchronous import create_task
    from trame_slicer.core import LayoutManager, SlicerApp
    from trame_slicer.rca_view import register_rca_factories
    from trame_slicer.views import Layout, LayoutDirection, ViewLayoutDefinition

    from .access_log import AccessLog
    from .confinement import StudiesRoot
    from .page import build_page
    from .session import TICK_S, WebHost, WebReading

    work = Path(config["session_folder"])
    server = get_server(client_type="vue3")
    app = SlicerApp()
    register_rca_factories(app.view_manager, server, slice_view_ui_f=_slice_slider)
    layouts = LayoutManager(app.scene, app.view_manager, server)
    views = [ViewLayoutDefinition.slice_view("Axial", label=name) for name, _ in display.READING_VIEWS]
    layouts.register_layout("reading", Layout(LayoutDirection.Horizontal, views))
    layouts.set_layout("reading")

    root = StudiesRoot(config["studies"])
    logic = LesionAILogic(app.scene, app.segmentations_logic, config.get("store"), work / "jobs")
    controller = PanelController(logic, PanelState(logic.getParameterNode()), WebHost(root.display))
    controller.reading.resultsFolder = work / "results"
    controller.state.device = config.get("device", "auto")
    points = app.scene.AddNewNodeByClass("vtkMRMLMarkupsFiducialNode", "LesionAI points")
    controller.state.points = points
    log = AccessLog(config["access_log"], session=config["session"], **(config.get("client") or {}))
    attendance = Attendance(config.get("idle_timeout_s", 300), claimed=config.get("client") is not None)
    loop_tasks = []

    def later(action) -> None:
        async def run_later():
            await asyncio.sleep(0.05)  # let the page receive what changed first (e.g. "Opening …")
            with server.state:
                action()
                draw(scene_changed=True)

        loop_tasks.append(create_task(run_later()))

    studies_file = Path(config["studies_file"])
    studies = studies_of(studies_file) if config.get("client") is not None else []
    reading = WebReading(controller, root, studies, Path(config["locks"]), log,
                         lambda node: app.markups_logic.place_node(node, False), later)
    shown: dict = {}

    def draw(scene_changed: bool = False) -> None:
        """Send the page what changed; render the views again when the scene may have changed (an opacity or
        threshold change reaches the slice pipelines without asking trame-slicer's views for a render)."""
        changed = {name: value for name, value in reading.pageState().items() if shown.get(name) != value}
        shown.update(changed)
        server.state.update(changed)
        if scene_changed:
            for view in app.view_manager.get_slice_views():
                view.schedule_render()

    def bound(action):
        def call(*args):
            action(*args)
            draw(scene_changed=True)

        return call

    actions = type("Actions", (), {name: staticmethod(bound(getattr(reading, name))) for name in (
        "openStudy", "analyze", "select", "shortcut", "setHeatmapVisible", "setOpacity", "setThreshold",
        "placePoint", "clearError")})
    markups = slicer.vtkMRMLMarkupsNode
    for event in (markups.PointPositionDefinedEvent, markups.PointEndInteractionEvent):
        points.AddObserver(event, lambda *_: (reading.pointsChanged(), draw(scene_changed=True)))
    with server.state:
        draw()
    build_page(server, layouts, actions)

    async def follow_jobs():
        parent = os.getppid()
        while True:
            await asyncio.sleep(TICK_S)
            if os.getppid() != parent or attendance.idle:  # the front server is gone, or the browser
                await server.stop()
                return
            with server.state:
                running = set(controller.jobs)
                reading.tick()
                draw(scene_changed=bool(running - set(controller.jobs)))  # a job ended: its result is shown

    def ready(**_):
        attendance.alone_since = time.monotonic()  # serving from now on: the browser can connect
        loop_tasks.append(create_task(follow_jobs()))
        print(json.dumps({"event": "ready", "port": server.port}), flush=True)

    server.controller.on_server_bind.add(
        lambda web_server: _protect(web_server.app, key, reading, display, attendance, studies_file)
    )
    server.controller.on_server_ready.add(ready)
    try:
        server.start(
            port=0, host="127.0.0.1", open_browser=False, show_connection_info=False,
            timeout=0, disable_logging=True,  # idleness is the Attendance's
        )
    finally:
        reading.stop()
        log.write("session_process_ended")


def main() -> None:
    config = json.loads(Path(os.environ[CONFIG_VARIABLE]).read_text(encoding="utf-8"))
    key = os.environ.pop(KEY_VARIABLE)
    sys.argv = sys.argv[:1]  # trame parses sys.argv: nothing there is for it
    run(config, key)


if __name__ == "__main__":
    main()

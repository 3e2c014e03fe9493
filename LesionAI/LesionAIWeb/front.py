"""The front server: the per-run token, one session process per browser, and the proxy to it. No slicer, no vtk.

Routes (every one needs the token, as ``?token=`` once — answered with a cookie and a redirect that
drops it from the address — then the cookie, or an ``Authorization: Bearer`` header):

=====================  ==============================================================================
``/``                  the browser's session (cookie ``lesionai_session``), started if it has none
                       (``/?new=1``: a new one); redirects to ``/s/<session>/``
``/s/<session>/...``   the session's page, websocket, ``lesionai/result.zip`` and ``lesionai/inspect``
``/api/sessions``      the running sessions (id, pid, port, age) as JSON
``/api/studies``       the study list as JSON
=====================  ==============================================================================

One session process (``spare_sessions``) is started ahead, so the first browser does not wait for
one. A request without the token gets 401 and a line in the access log; a websocket whose ``Origin``
is not this server's address gets 403 (no other site can drive a session through a reader's
browser). At most ``max_sessions`` run at once (503 beyond).
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import secrets
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

import aiohttp
from aiohttp import web

from LesionAILib.atomic_io import write_json_atomic

from .access_log import AccessLog
from .proxy import forward_http, forward_websocket
from .worker import KEY_HEADER
from .workers import Worker, start_worker, stop_worker_process

AUTH_COOKIE = "lesionai_token"
SESSION_COOKIE = "lesionai_session"
SECURITY_HEADERS = {
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-store",
}


@dataclass
class FrontSettings:
    """What the front server needs (built by :func:`LesionAIWeb.serve.serve`)."""

    token: str
    studies_root: Path
    find_studies: Callable[[], list[dict]]  # run once, in a thread, while the first session process starts
    work: Path
    store: str | None
    device: str
    max_sessions: int
    idle_timeout_s: int
    environment: dict[str, str]  # for session processes (e.g. the off-screen OpenGL window)
    spare_sessions: int = 1  # session processes started ahead, so a browser need not wait for one


def _client_fields(request: web.Request) -> dict:
    """Who is asking, for the access log: the peer, and what a reverse proxy says about the user."""
    fields = {"remote": request.remote}
    for header, name in (("X-Forwarded-For", "forwarded_for"), ("X-Forwarded-User", "user"),
                         ("X-Remote-User", "user")):
        if header in request.headers:
            fields[name] = request.headers[header][:200]
    fields["user_agent"] = request.headers.get("User-Agent", "")[:200]
    return fields


class FrontServer:
    """The aiohttp application of ``lesionai serve`` (see the module docstring)."""

    def __init__(self, settings: FrontSettings):
        self.settings = settings
        self.log = AccessLog(settings.work / "access.jsonl")
        self.sessions: dict[str, Worker] = {}
        self._cookie = hmac.new(settings.token.encode(), b"lesionai-cookie", hashlib.sha256).hexdigest()
        self._client: aiohttp.ClientSession | None = None
        self._starting = 0
        self._spares: list[asyncio.Task] = []
        self._studies: asyncio.Future | None = None
        self.studies_file = settings.work / "studies.json"
        self.app = web.Application(middlewares=[self._authorize])
        self.app.router.add_get("/", self.index)
        self.app.router.add_get("/api/sessions", self.list_sessions)
        self.app.router.add_get("/api/studies", self.list_studies)
        self.app.router.add_route("*", "/s/{session}/{tail:.*}", self.forward)
        self.app.on_startup.append(self._open_client)
        self.app.on_startup.append(self._find_studies)
        self.app.on_startup.append(self._start_spares)
        self.app.on_shutdown.append(self._stop_sessions)

    # ------------------------------------------------------------------ authorization
    def _authorized(self, request: web.Request) -> bool:
        cookie = request.cookies.get(AUTH_COOKIE, "")
        bearer = request.headers.get("Authorization", "")
        bearer = bearer[7:] if bearer.startswith("Bearer ") else ""
        return hmac.compare_digest(cookie, self._cookie) or hmac.compare_digest(bearer, self.settings.token)

    @web.middleware
    async def _authorize(self, request: web.Request, handler):
        given = request.query.get("token")
        if given is not None and hmac.compare_digest(given, self.settings.token):
            query = {name: value for name, value in request.query.items() if name != "token"}
            target = request.rel_url.with_query(query)
            answer = web.HTTPFound(str(target))
            secure = request.secure or request.headers.get("X-Forwarded-Proto") == "https"
            answer.set_cookie(AUTH_COOKIE, self._cookie, httponly=True, samesite="Strict", secure=secure, path="/")
            raise answer
        if not self._authorized(request):
            self.log.write("denied", path=request.path[:200], **_client_fields(request))
            return web.Response(
                status=401, text="LesionAI: open the address `lesionai serve` printed (it carries the access token).\n",
                headers=SECURITY_HEADERS,
            )
        answer = await handler(request)
        for name, value in SECURITY_HEADERS.items():
            answer.headers.setdefault(name, value)
        return answer

    # ------------------------------------------------------------------ sessions
    async def index(self, request: web.Request):
        session = request.cookies.get(SESSION_COOKIE, "")
        worker = self.sessions.get(session)
        if worker is None or not worker.alive or "new" in request.query:
            if len(self.sessions) + self._starting >= self.settings.max_sessions:
                return web.Response(status=503, text=f"LesionAI: {self.settings.max_sessions} sessions are open "
                                    "already; close one or try again later.\n")
            worker = await self._open_session(_client_fields(request))
        answer = web.HTTPFound(f"/s/{worker.session}/")
        answer.set_cookie(SESSION_COOKIE, worker.session, httponly=True, samesite="Strict", path="/")
        raise answer

    async def _open_session(self, client: dict) -> Worker:
        """A session for a browser: a spare one claimed for it, else a new one (the spares are refilled)."""
        self._starting += 1
        try:
            await self._studies  # the session reads the study list from studies_file
            worker = self._take_spare()
            if worker is not None:
                async with self._client.post(f"http://127.0.0.1:{worker.port}/lesionai/claim", json=client,
                                             headers={KEY_HEADER: worker.key}) as answer:
                    answer.raise_for_status()
            else:
                worker = await self._spawn(client)
        finally:
            self._starting -= 1
        self.sessions[worker.session] = worker
        self.log.write("session_started", session=worker.session, pid=worker.process.pid, **client)
        asyncio.ensure_future(self._follow(worker))
        self._refill()
        return worker

    async def _spawn(self, client: dict | None) -> Worker:
        """Start a session process; ``client`` ``None``: a spare, claimed later."""
        session = secrets.token_urlsafe(16)
        folder = self.settings.work / "sessions" / session
        config = {
            "session": session,
            "session_folder": str(folder),
            "studies": str(self.settings.studies_root),
            "studies_file": str(self.studies_file),
            "locks": str(self.settings.work / "locks"),
            "access_log": str(self.log.path),
            "store": self.settings.store,
            "device": self.settings.device,
            "idle_timeout_s": self.settings.idle_timeout_s,
            "client": client,
        }
        return await start_worker(session, folder, config, self.settings.environment)

    @staticmethod
    def _started(task: asyncio.Task) -> Worker | None:
        """The worker a finished spare task started (None while starting, or when it failed)."""
        if not task.done() or task.cancelled() or task.exception() is not None:
            return None
        return task.result()

    def _take_spare(self) -> Worker | None:
        for task in list(self._spares):
            worker = self._started(task)
            if worker is not None and worker.alive:
                self._spares.remove(task)
                return worker
        return None

    async def _start_spares(self, _app) -> None:
        self._refill()

    def _refill(self) -> None:
        self._spares = [task for task in self._spares if not task.done() or self._started(task) is not None]
        while len(self._spares) < self.settings.spare_sessions:
            self._spares.append(asyncio.ensure_future(self._spawn(None)))

    async def _follow(self, worker: Worker) -> None:
        """Forget a session when its process ends (idle, or stopped)."""
        returncode = await worker.process.wait()
        self.sessions.pop(worker.session, None)
        self.log.write("session_ended", session=worker.session, returncode=returncode)

    async def forward(self, request: web.Request):
        worker = self.sessions.get(request.match_info["session"])
        if worker is None or not worker.alive:
            return web.Response(status=404, text="LesionAI: this session has ended; open / for a new one.\n")
        tail = request.match_info["tail"]
        if request.headers.get("Upgrade", "").lower() == "websocket":
            origin = request.headers.get("Origin")
            if origin is not None and urlsplit(origin).netloc != request.host:
                self.log.write("denied", path=request.path[:200], reason="websocket from another origin",
                               origin=origin[:200], **_client_fields(request))
                return web.Response(status=403, text="LesionAI: websocket from another site refused.\n")
            return await forward_websocket(request, self._client, worker.port, worker.key, tail)
        return await forward_http(request, self._client, worker.port, worker.key, tail)

    async def list_sessions(self, _request: web.Request):
        import time

        rows = [
            {"session": w.session, "pid": w.process.pid, "port": w.port, "age_s": round(time.time() - w.started, 1)}
            for w in self.sessions.values() if w.alive
        ]
        return web.json_response({"sessions": rows, "starting": self._starting})

    async def list_studies(self, _request: web.Request):
        return web.json_response({"studies": await self._studies})

    # ------------------------------------------------------------------ life cycle
    async def _find_studies(self, _app) -> None:
        async def find() -> list[dict]:
            studies = await asyncio.to_thread(self.settings.find_studies)
            write_json_atomic(self.studies_file, studies)
            return studies

        self._studies = asyncio.ensure_future(find())

    async def _open_client(self, _app) -> None:
        self._client = aiohttp.ClientSession(auto_decompress=True, timeout=aiohttp.ClientTimeout(total=None))

    async def _stop_sessions(self, _app) -> None:
        spares = [worker for worker in map(self._started, self._spares) if worker is not None]
        for task in self._spares:
            task.cancel()  # a spare still starting stops its process (start_worker)
        workers = [*self.sessions.values(), *spares]
        await asyncio.gather(*(stop_worker_process(worker.process) for worker in workers))
        if self._client is not None:
            await self._client.close()

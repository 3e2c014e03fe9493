"""One browser session's reading: the page's actions as calls into the panel controller on this process's scene.

:class:`WebReading` is to the page what ``LesionAI.py`` is to the Qt panel: each action is one call
into :class:`~LesionAILogic.panel.controller.PanelController` (plus what only a server needs: the
studies root, the per-study analysis queue, the access log), and :meth:`WebReading.pageState`
turns the controller's view into what the page shows. The worker calls :meth:`WebReading.tick`
every :data:`TICK_S` seconds (the Qt panel's ``QTimer``), so jobs are followed without blocking.
"""

from __future__ import annotations

import textwrap
from collections.abc import Callable
from pathlib import Path

from LesionAILib.studies.roles import ROLES

from . import drawing
from .access_log import AccessLog
from .confinement import StudiesRoot, StudyAccessError
from .study_locks import StudyLock

TICK_S = 0.25
WAITING = "Waiting: another session is analysing this study; this analysis starts when that one ends."


class WebHost:
    """The controller's questions and messages in the page: errors become the page's one-line banner.

    The page never installs anything on the server: a question (the dependency gate's "install PyTorch?")
    is answered No and shown as what the server's operator has to do.
    """

    def __init__(self, shown: Callable[[str], str]):
        self.errors: list[str] = []
        self._shown = shown

    def confirm(self, message: str) -> bool:
        first = textwrap.shorten(" ".join(str(message).split()), 200)
        self.errors.append(f"The server cannot do this yet: {first} Install it on the server, restart lesionai serve.")
        return False

    def showError(self, message: str) -> None:
        self.errors.append(" ".join(self._shown(message).split()))


class WebReading:
    """The page's actions and state for one session (one scene, one controller).

    Args:
        controller: the session's :class:`PanelController` (its host a :class:`WebHost`).
        root: the studies root; studies: the discovered studies (``FoundStudy.to_dict()`` records; a spare
            session gets them when claimed, :meth:`setStudies`).
        locks: folder of the per-study analysis locks (shared by every session).
        log: the access log with this session's fields.
        placePoints: ``placePoints(markups_node)`` puts the views in point-placing mode (trame-slicer).
        later: ``later(action)`` runs ``action`` soon on the server loop (after the page got what changed).
    """

    def __init__(self, controller, root: StudiesRoot, studies: list[dict], locks: Path, log: AccessLog,
                 placePoints: Callable, later: Callable[[Callable], None]):
        self.controller = controller
        self.root = root
        self.setStudies(studies)
        self.locks = Path(locks)
        self.log = log
        self._placePoints = placePoints
        self._later = later
        self.study: dict | None = None  # {"key", "folder": Path} of the study on screen
        self.busyMessage = ""
        self._lock: StudyLock | None = None
        self._queued = False
        self._job = None  # the analysis job this session started (for the lock and the log)
        self._lastAnalysis = ""  # how the last analysis ended ("finished", "cancelled", "failed")

    @property
    def host(self) -> WebHost:
        return self.controller.host

    @property
    def reading(self):
        return self.controller.reading

    # ------------------------------------------------------------------ studies
    def setStudies(self, studies: list[dict]) -> None:
        """The study list the page offers (``FoundStudy.to_dict()`` records)."""
        self.studies = {study["key"]: study for study in studies}
        self.studyList = drawing.study_list(studies)

    def openStudy(self, name: str) -> None:
        """Open a study of the list (its key) or a folder typed in the page (relative to the studies root)."""
        self.host.errors.clear()
        if self.controller.job("analysis") is not None or self._queued:
            self.host.showError("Cancel the running analysis before opening another study.")
            return
        key, _, case = str(name).partition("#")
        entry = self.studies.get(str(name))
        try:
            folder = self.root.resolve(key)
        except StudyAccessError as error:
            self.log.write("study_refused", study=str(name)[:300], reason=str(error))
            self.host.showError(f"Cannot load the study: {error}")
            return
        files = None
        if entry is not None and entry["files"]:
            files = {role: str(self.root.resolve(entry["files"][role])) for role in ROLES}
        elif case:
            self.host.showError(f"Cannot load the study: '{name}' is not in the list (choose a study from the list)")
            return
        self.busyMessage = f"Opening {entry['name'] if entry else key}…"
        self._later(lambda: self._load(str(name), folder, files))

    def _load(self, name: str, folder: Path, files: dict | None) -> None:
        self.busyMessage = ""
        state, before = self.controller.state, self.controller.state.roleNodes()
        self.reading.loadStudy(str(folder), files=files)
        if state.t2Volume is None or state.t2Volume is before["t2w"]:
            self.log.write("study_refused", study=name[:300], reason=" ".join(self.host.errors)[:500])
            return
        self._forget(before)
        self.study = {"key": name, "folder": folder}
        self.log.write("study_opened", study=name, case=state.caseId)

    def _forget(self, volumes: dict) -> None:
        """Remove the previous study's volumes and what LesionAI made for them (the session's memory stays bounded)."""
        logic, scene = self.controller.logic, self.controller.logic.scene
        stale = self.controller.job("points")
        if stale is not None:
            stale.cancel(grace_s=0)
            self.controller.jobs.pop("points", None)
        if volumes["t2w"] is not None:
            made = [*logic.resultNodes(volumes["t2w"]).values(), *logic.heatmapNodes(volumes["t2w"]).values()]
            for node in {id(node): node for node in [*volumes.values(), *made] if node is not None}.values():
                if node.GetScene() is scene:
                    scene.RemoveNode(node)
        points = self.controller.state.points
        if points is not None:
            points.RemoveAllControlPoints()
        self.reading.pointResult = ""

    # ------------------------------------------------------------------ analysis, one at a time per study
    def analyze(self) -> None:
        """Analyze the study on screen, queued behind another session's analysis of it; or cancel / stop waiting."""
        self.host.errors.clear()
        if self.controller.job("analysis") is not None:
            self.reading.analyze()  # the same button cancels (the status line says so)
            self.log.write("analysis_cancel_requested", study=self.study["key"] if self.study else None)
            return
        if self._queued:
            self._queued = False
            self.reading.status = "Stopped waiting; nothing was analysed."
            return
        if self.study is None:
            return
        self._lock = StudyLock(self.locks, self.study["folder"])
        if self._lock.try_acquire():
            self._start()
        else:
            self._queued = True
            self.log.write("analysis_queued", study=self.study["key"])

    def _start(self) -> None:
        self.reading.analyze()
        self._job = self.controller.job("analysis")
        if self._job is None:
            self._lock.release()
            return
        self.log.write("analysis_started", study=self.study["key"], case=self.controller.state.caseId)

    def tick(self) -> None:
        """Start a queued analysis once its study is free; follow running jobs (the panel's timer)."""
        if self._queued and self._lock.try_acquire():
            self._queued = False
            self._start()
        if self.controller.busy:
            self.controller.poll()
        if self._job is not None and self.controller.job("analysis") is None:
            self._lock.release()
            self._lastAnalysis = self._job.state.status
            self.log.write("analysis_ended", study=self.study["key"], status=self._lastAnalysis)
            self._job = None

    # ------------------------------------------------------------------ reading
    def select(self, candidateId) -> None:
        self.reading.selectCandidate(int(candidateId))

    def shortcut(self, keys: str) -> None:
        from LesionAILogic.panel.controller import SHORTCUTS

        if keys in SHORTCUTS:
            self.controller.shortcut(keys)

    def setHeatmapVisible(self, visible) -> None:
        self.controller.state.heatmapVisible = bool(visible)
        self.reading.applyDisplay()

    def setOpacity(self, opacity) -> None:
        self.controller.state.heatmapOpacity = round(min(1.0, max(0.0, float(opacity))), 2)
        self.reading.applyDisplay()

    def setThreshold(self, threshold) -> None:
        self.controller.state.heatmapThreshold = round(min(1.0, max(0.0, float(threshold))), 2)
        self.reading.applyDisplay()

    def placePoint(self) -> None:
        """The next click in a view places a point; it is then classified (:meth:`pointsChanged`)."""
        points = self.controller.state.points
        if points is not None and self.controller.state.inputsReady():
            self._placePoints(points)
            self.reading.pointResult = "Click the point to classify in a view."

    def pointsChanged(self, *_) -> None:
        self.reading.pointsChanged()

    def clearError(self, *_) -> None:
        self.host.errors.clear()

    # ------------------------------------------------------------------ what the page shows
    def resultFolder(self) -> Path | None:
        """The kept result folder of the study on screen (for the download), or None."""
        kept = self.reading.keptResult
        case = self.controller.state.caseId
        if kept is None or self.study is None or not case or kept.name != case or not (kept / "result.json").exists():
            return None
        return kept

    def noteDownload(self) -> None:
        self.log.write("result_downloaded", study=self.study["key"] if self.study else None,
                       case=self.controller.state.caseId)

    def pageState(self) -> dict:
        finished = self._lastAnalysis == "finished" and self.resultFolder() is not None
        state = drawing.reading_state(self.controller.view().reading, self._queued, finished)
        if self._queued:
            state["status"] = WAITING
        kept = self.resultFolder()
        state.update(
            studies=self.studyList,
            study_open=self.study["key"] if self.study else "",
            error_message=self.host.errors[-1] if self.host.errors else "",
            busy_message=self.busyMessage,
            download_url=f"lesionai/result.zip?case={kept.name}&v={int((kept / 'result.json').stat().st_mtime_ns)}"
            if kept else "",
        )
        return state

    def stop(self) -> None:
        """Cancel every job and wait for its process tree (the session ends)."""
        self.controller.stopAll()
        if self._lock is not None:
            self._lock.release()

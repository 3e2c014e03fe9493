"""The panel controller: every user action, the jobs it starts, and the view a front end draws.

A front end makes one :class:`PanelController` per scene (``PanelController(logic, PanelState(node),
host)``), calls an action method per click or key, calls :meth:`PanelController.poll` from a timer
while :attr:`PanelController.busy` is true, and draws :meth:`PanelController.view` after each call.

Errors never escape an action: a :class:`LesionAIError` (a user mistake or bad input) or an
unexpected exception goes to ``host.showError`` as one message, the action stops there and the
panel stays usable (Slicer's ``tryWithErrorDisplay`` would re-raise into the Qt callback).
"""

from __future__ import annotations

import logging
import subprocess
from collections.abc import Callable
from typing import Protocol

from LesionAILib.errors import LesionAIError

from .. import dependencies
from .abnormality import AbnormalitySection
from .annotating import AnnotationSection
from .glanding import GlandSection
from .modelling import ModelSection
from .reading import ReadingSection
from .state import PanelState
from .views import PanelView

# keyboard shortcuts of the reading layout: key sequence (Qt's notation) -> controller action
SHORTCUTS = {
    "Alt+Down": "nextCandidate",
    "Alt+Up": "previousCandidate",
    "Alt+H": "toggleHeatmap",
    "Alt+Right": "increaseOpacity",
    "Alt+Left": "decreaseOpacity",
}


class PanelHost(Protocol):
    """What a front end offers the controller: questions and messages to the user."""

    def confirm(self, message: str) -> bool:
        """Ask an OK/Cancel question; True for OK."""

    def showError(self, message: str) -> None:
        """Show an error message (a dialog in Slicer, a banner in the browser)."""


class DependencyGate:
    """Checks what LesionAI's jobs need in this Python and offers to install it (Slicer only installs).

    ``describe`` returns "" when everything is there; ``installTorch``/``installPackages`` take a
    confirm callback and return False when the user declined. Failures of the installers (pip's
    ``CalledProcessError``, an ``ImportError`` of a broken wheel, a missing PyTorch extension) become
    one message saying what failed and what to do.
    """

    def __init__(
        self,
        describe: Callable[[], str] = dependencies.describe_missing,
        torchReady: Callable[[], bool] = dependencies.torch_ready,
        installTorch: Callable = dependencies.install_torch,
        installPackages: Callable = dependencies.install_missing_packages,
    ):
        self.describe = describe
        self._torchReady = torchReady
        self._installTorch = installTorch
        self._installPackages = installPackages

    def ensure(self, host: PanelHost) -> bool:
        """True when the jobs can run; else asks to install, and shows what failed."""
        if not self.describe():
            return True
        try:
            if not self._torchReady() and not self._installTorch(host.confirm):
                return False
            self._installPackages(host.confirm)
        except LesionAIError as error:
            host.showError(f"LesionAI cannot install what it needs: {error}")
            return False
        except subprocess.CalledProcessError as error:
            host.showError(
                f"Installing LesionAI's Python packages failed (pip exit status {error.returncode}). "
                "Check the internet connection and the Python console's pip messages, then restart Slicer "
                "and press Analyze again."
            )
            return False
        except (ImportError, OSError) as error:
            host.showError(
                f"Installing LesionAI's Python packages failed: {type(error).__name__}: {error}. "
                "Restart Slicer and try again; if it fails again, install the PyTorch extension's torch "
                f"({dependencies.TORCH_REQUIREMENT}) from the PyTorch Utils module."
            )
            return False
        missing = self.describe()
        if missing:
            host.showError(f"LesionAI cannot run yet: {missing}. Restart Slicer and try again.")
            return False
        return True


class PanelController:
    """The panel's state (a :class:`PanelState`) and decisions; see the module docstring.

    Args:
        logic: the :class:`LesionAILogic.logic.LesionAILogic` of the scene.
        state: the panel's fields on the module's parameter node.
        host: the front end's questions and messages.
        gate: what the jobs need and how to install it (default: this Python's packages).
    """

    def __init__(self, logic, state: PanelState, host: PanelHost, gate: DependencyGate | None = None):
        self.logic = logic
        self.state = state
        self.host = host
        self.gate = gate or DependencyGate()
        self.jobs: dict[str, tuple[object, object]] = {}  # kind -> (JobRunner, context)
        self.reading = ReadingSection(self)
        self.annotation = AnnotationSection(self)
        self.models = ModelSection(self)
        self.gland = GlandSection(self)
        self.abnormality = AbnormalitySection(self)
        self._finishers = {
            "gland": self.gland.glandFinished,
            "analysis": self.reading.analysisFinished,
            "points": self.reading.pointsFinished,
            "synthesis-view": self.abnormality.viewFinished,
            "next-case": self.annotation.nextCaseFinished,
            "finetune": self.models.finetuneFinished,
        }

    # ------------------------------------------------------------------ plumbing used by the sections
    def attempt(self, what: str, action: Callable, *args, **kwargs):
        """Run ``action``; on failure show ``"<what>: <error>"`` and return None (never raises)."""
        try:
            return action(*args, **kwargs)
        except LesionAIError as error:
            self.host.showError(f"{what}: {error}")
        except Exception as error:  # a bug: say so, keep the panel alive, keep the traceback in the log
            logging.exception("LesionAI: %s", what)
            self.host.showError(f"{what}: unexpected {type(error).__name__}: {error} (details in the Python console)")
        return None

    def succeeds(self, what: str, action: Callable, *args, **kwargs) -> bool:
        """:meth:`attempt` for actions that return nothing: True when ``action`` did not fail."""
        done = object()
        return self.attempt(what, lambda: (action(*args, **kwargs), done)[1]) is done

    def startJob(self, kind: str, job, context=None) -> None:
        self.jobs[kind] = (job, context)

    def job(self, kind: str):
        """The running job of ``kind`` (``"analysis"``, ``"points"``, ``"synthesis-view"``, ``"gland"``,
        ``"next-case"``, ``"finetune"``) or None."""
        entry = self.jobs.get(kind)
        return entry[0] if entry else None

    def dependenciesReady(self) -> bool:
        return self.gate.ensure(self.host)

    # ------------------------------------------------------------------ for the front end
    @property
    def busy(self) -> bool:
        """A job is running: call :meth:`poll` every ~200 ms."""
        return bool(self.jobs)

    def poll(self) -> bool:
        """Read every running job's progress; hand finished jobs to their section. True while jobs remain."""
        for kind, (job, context) in list(self.jobs.items()):
            self.attempt("Cannot follow the job", job.poll)
            if job.state.finished:
                del self.jobs[kind]
            self.attempt(f"Cannot show the {kind} result", self._finishers[kind], job, context)
        return self.busy

    def view(self) -> PanelView:
        return PanelView(
            self.reading.view(), self.annotation.view(), self.models.view(), self.gland.view(), self.abnormality.view()
        )

    def shortcut(self, keys: str) -> None:
        """Run the action of a keyboard shortcut (:data:`SHORTCUTS`)."""
        getattr(self.reading, SHORTCUTS[keys])()

    def stopAll(self, wait_s: float = 10.0) -> None:
        """Cancel every job and wait until its whole process tree is gone (module cleanup, reload, scene close)."""
        for job, _ in self.jobs.values():
            job.cancel()
        for job, _ in self.jobs.values():
            job.wait(timeout_s=wait_s)
        self.jobs.clear()

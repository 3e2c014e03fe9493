"""The model section: versions offered, adding a model file, fine-tuning/cancel, activating a version, rollback.

Listing versions reads the model store's JSON and the safetensors headers only: no torch in the
Slicer process (a test imports the whole panel package and lists models with torch made unimportable).
"""

from __future__ import annotations

from .views import ModelLine, ModelView


class ModelSection:
    """Model versions and local fine-tuning: see :mod:`LesionAILogic.panel.controller` for the calling convention."""

    def __init__(self, panel):
        self.panel = panel
        self.finetuneStatus = ""
        self.validation = ""
        self.progress = 0
        self.activateEnabled = False
        self._models: list[ModelLine] | None = None
        self._unavailable = ""

    @property
    def _logic(self):
        return self.panel.logic

    def refresh(self) -> None:
        """Read the model versions again (after a switch, a rollback, an added file or fine-tuning)."""
        self._models = None

    def _list(self) -> list[ModelLine]:
        if self._models is None:
            missing = self.panel.gate.describe()
            self._unavailable = f"({missing}: press Analyze to install)" if missing else ""
            self._models = []
            if not missing:
                versions = self.panel.attempt("Cannot list the models", self._logic.modelVersions)
                if versions is None:
                    self._unavailable = "(no model: see the message)"
                for version in versions or []:
                    self._models.append(ModelLine(version["label"], version["version"], bool(version["active"])))
        return self._models

    def chooseModel(self, version: str) -> None:
        """Make ``version`` (``"demo"``, ``"v3"``) the active model."""
        self.panel.attempt("Cannot switch the model", self._logic.activateModelVersion, version)
        self.refresh()

    def addModel(self, path: str) -> None:
        """Copy a model file into the store as a new, inactive version."""
        version = self.panel.attempt("Cannot add the model", self._logic.addModelFile, path, note=f"added from {path}")
        if version is not None:
            self.finetuneStatus = f"Model added as version {version}; choose it above to use it."
        self.refresh()

    def finetune(self) -> None:
        """Start fine-tuning on the deployment dataset, or cancel the running one (the same button)."""
        running = self.panel.job("finetune")
        if running is not None:
            running.cancel()
            self.finetuneStatus = "Cancelling fine-tuning…"
            return
        if not self.panel.dependenciesReady():
            return
        state = self.panel.state
        job = self.panel.attempt(
            "Cannot start fine-tuning",
            self._logic.startFinetuning,
            state.datasetFolder,
            state.finetuneEpochs,
            state.classifierEpochs,
            state.device,
        )
        if job is not None:
            self.panel.startJob("finetune", job)
            self.progress = 0
            self.activateEnabled = False
            self.finetuneStatus = "Fine-tuning started…"

    def finetuneFinished(self, job, _context) -> None:
        state = job.state
        self.progress = int(100 * state.epoch_fraction)
        if state.validation_score is not None:
            self.validation = f"{state.validation_score:.3f} (held-out cases)"
        if not state.finished:
            if state.status != "cancelling":
                self.finetuneStatus = state.describe()
            return
        if state.status == "finished" and state.result:
            result = state.result
            before, after = result["validation_before"]["score"], result["validation_after"]["score"]
            activated = "now active" if result["activated"] else "saved but not activated (it validated worse)"
            self.validation = (
                f"version {result['version']}: {after:.3f} on held-out cases vs {before:.3f} for "
                f"{result['base']} — {activated}"
            )
            self.finetuneStatus = "Fine-tuning finished."
            self.panel.state.lastFinetunedVersion = result["version"]
            self.activateEnabled = not result["activated"]
        elif state.status == "cancelled":
            self.finetuneStatus = "Fine-tuning cancelled; the model store is unchanged."
        else:
            self.finetuneStatus = f"Fine-tuning failed: {state.error}"
            self.panel.host.showError(f"Fine-tuning failed: {state.error}")
        self.refresh()

    def activateNewVersion(self) -> None:
        """Activate the version the last fine-tuning made (when it was not activated because it validated worse)."""
        version = self.panel.state.lastFinetunedVersion
        if version and self.panel.succeeds("Cannot switch the model", self._logic.activateModelVersion, version):
            self.activateEnabled = False
            self.validation = f"active model: {version}"
        self.refresh()

    def rollback(self) -> None:
        """Re-activate the previously active version."""
        version = self.panel.attempt("Cannot roll back", self._logic.rollbackModel)
        if version is not None:
            self.validation = f"active model: {version}"
        self.refresh()

    def view(self) -> ModelView:
        models = self._list()
        running = self.panel.job("finetune") is not None
        return ModelView(
            models=list(models),
            unavailable=self._unavailable,
            finetuneEnabled=running or self.panel.annotation.annotatedCases > 0,
            finetuneLabel="Cancel fine-tuning" if running else "Start fine-tuning",
            finetuneRunning=running,
            finetuneProgress=self.progress,
            finetuneStatus=self.finetuneStatus,
            validation=self.validation,
            activateEnabled=self.activateEnabled and not running,
        )

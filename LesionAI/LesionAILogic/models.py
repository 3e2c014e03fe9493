"""The model versions the panel offers: the versioned model store, and the in-process analyzer of one version."""

from __future__ import annotations

import re
from pathlib import Path


class SceneModels:
    """The model store at ``storeFolder`` (default ``$LESIONAI_HOME/models``) and a cached in-process analyzer."""

    def __init__(self, storeFolder: str | Path | None = None):
        self._storeFolder = Path(storeFolder) if storeFolder else None
        self._analyzer = None
        self._analyzerKey = None

    @property
    def modelStore(self):
        """The :class:`LesionAILib.models.store.ModelStore` this logic uses."""
        from LesionAILib.models.store import ModelStore

        return ModelStore(self._storeFolder)

    def modelVersions(self) -> list[dict]:
        """Every model version: ``{"version", "path", "active", "validation_score", "note", "label"}``."""
        rows = []
        for version in self.modelStore.versions():
            score = (version.validation or {}).get("after", {}).get("score")
            if version.version == "demo":
                kind = "bundled demo model (synthetic data)"
            else:
                kind = f"fine-tuned from {version.parent}" if version.parent else "added model"
            label = f"{version.version} — {kind}"
            if score is not None:
                label += f" — validation {score:.3f}"
            if version.active:
                label += " (active)"
            rows.append({**version.to_dict(), "validation_score": score, "label": label})
        return rows

    def activeModelPath(self) -> Path:
        """The active model version's file."""
        return self.modelStore.active_path()

    def activateModelVersion(self, version: str) -> None:
        """Make ``version`` the active model (atomic; :meth:`rollbackModel` undoes it)."""
        self.modelStore.activate(version)

    def rollbackModel(self) -> str:
        """Re-activate the previously active model version; returns it."""
        return self.modelStore.rollback()

    def addModelFile(self, path: str | Path, note: str = "user model") -> str:
        """Copy a model file into the store as a new (inactive) version; returns the version name."""
        return self.modelStore.add(path, note=note)

    def modelPath(self, model: str | Path | None) -> Path:
        """The file of ``model``: a path, a version name (``"demo"``, ``"v3"``) or ``None`` (the active version)."""
        if model is None:
            return self.activeModelPath()
        path = Path(model)
        if not path.exists() and re.fullmatch(r"demo|v\d+", str(model)):
            return self.modelStore.path(str(model))
        return path

    def analyzerFor(self, model: str | Path | None, device: str):
        """An :class:`~LesionAILib.inference.analyzer.Analyzer` of ``model`` in this process (reused while the file
        is unchanged; loads torch)."""
        from LesionAILib.inference.analyzer import Analyzer

        path = self.modelPath(model)
        key = (str(path), path.stat().st_mtime if path.exists() else None, device)
        if self._analyzerKey != key:
            self._analyzer, self._analyzerKey = Analyzer(path, device=device), key
        return self._analyzer

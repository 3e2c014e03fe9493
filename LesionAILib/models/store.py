"""Versioned model store: fine-tuning adds versions, never overwrites; switching is atomic and reversible.

Layout::

    <store>/
      store.json                  # {"format": "lesionai-model-store", "active": "v3",
                                  #  "history": ["demo", "v2", "v3"],   # activations, oldest first
                                  #  "versions": {"v2": {"file", "parent", "created", "validation", "note"}}}
      versions/v2.safetensors     # immutable once written

The bundled demo model is the implicit version ``demo`` (read from ``Resources/Models``, never
copied). :meth:`ModelStore.activate` and :meth:`ModelStore.rollback` rewrite ``store.json``
atomically, so a crash leaves the previous active version in place. The store folder defaults
to ``$LESIONAI_HOME/models`` (``~/.lesionai/models``).
"""

from __future__ import annotations

import json
import os
import shutil
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

from LesionAILib.atomic_io import atomic_path, write_json_atomic
from LesionAILib.errors import ModelFileError
from LesionAILib.models import bundled

FORMAT = "lesionai-model-store"
DEMO_VERSION = "demo"


def default_store() -> Path:
    return Path(os.environ.get("LESIONAI_HOME", Path.home() / ".lesionai")) / "models"


@dataclass
class ModelVersion:
    version: str
    path: Path
    parent: str | None
    created: str
    validation: dict
    note: str
    active: bool

    def to_dict(self) -> dict:
        return {
            "version": self.version,
            "path": str(self.path),
            "parent": self.parent,
            "created": self.created,
            "validation": self.validation,
            "note": self.note,
            "active": self.active,
        }


class ModelStore:
    """A folder of immutable model versions and a pointer to the active one."""

    def __init__(self, root: str | Path | None = None):
        self.root = Path(root) if root else default_store()

    # ------------------------------------------------------------------ state
    @property
    def _index_path(self) -> Path:
        return self.root / "store.json"

    def _index(self) -> dict:
        if not self._index_path.exists():
            return {"format": FORMAT, "active": DEMO_VERSION, "history": [DEMO_VERSION], "versions": {}}
        try:
            index = json.loads(self._index_path.read_text(encoding="utf-8"))
        except json.JSONDecodeError:
            raise ModelFileError("model store index is damaged", self._index_path, "restore store.json") from None
        if index.get("format") != FORMAT:
            raise ModelFileError("not a LesionAI model store", self._index_path)
        return index

    def _write(self, index: dict) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        write_json_atomic(self._index_path, index)

    # ------------------------------------------------------------------ queries
    def path(self, version: str) -> Path:
        """The model file of ``version`` (``demo`` is the bundled model)."""
        if version == DEMO_VERSION:
            return bundled.bundled_model_path()
        entry = self._index()["versions"].get(version)
        if entry is None:
            known = ", ".join([DEMO_VERSION, *self._index()["versions"]])
            raise ModelFileError(f"no model version {version!r} (versions: {known})", self.root)
        return self.root / entry["file"]

    @property
    def active(self) -> str:
        return self._index()["active"]

    def active_path(self) -> Path:
        return self.path(self.active)

    def versions(self) -> list[ModelVersion]:
        index = self._index()
        items = [
            ModelVersion(
                DEMO_VERSION,
                bundled.DEMO_MODEL,
                None,
                "",
                {},
                "bundled demo model",
                index["active"] == DEMO_VERSION,
            )
        ]
        for version, entry in index["versions"].items():
            items.append(
                ModelVersion(
                    version,
                    self.root / entry["file"],
                    entry.get("parent"),
                    entry.get("created", ""),
                    entry.get("validation", {}),
                    entry.get("note", ""),
                    index["active"] == version,
                )
            )
        return items

    # ------------------------------------------------------------------ changes
    def add(
        self, model_file: str | Path, parent: str | None = None, validation: dict | None = None, note: str = ""
    ) -> str:
        """Copy a model file into the store as a new version (not activated); returns its name."""
        model_file = Path(model_file)
        from LesionAILib.models.modelfile import read_metadata  # torch: only when a file is added

        read_metadata(model_file)  # refuse anything that is not a LesionAI model
        index = self._index()
        number = 1 + max([int(v[1:]) for v in index["versions"] if v[1:].isdigit()] or [1])
        version = f"v{number}"
        relative = f"versions/{version}.safetensors"
        with atomic_path(self.root / relative) as temporary:
            shutil.copyfile(model_file, temporary)
        index = self._index()  # re-read: the copy may have taken a while
        index["versions"][version] = {
            "file": relative,
            "parent": parent,
            "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            "validation": validation or {},
            "note": note,
        }
        self._write(index)
        return version

    def activate(self, version: str) -> None:
        """Make ``version`` the active model (atomic)."""
        self.path(version)  # raises for an unknown version
        index = self._index()
        if index["active"] != version:
            index["active"] = version
            index["history"].append(version)
            self._write(index)

    def rollback(self) -> str:
        """Re-activate the version that was active before the current one; returns it."""
        index = self._index()
        history = index["history"]
        if len(history) < 2:
            raise ModelFileError("nothing to roll back to: no earlier active version", self.root)
        history.pop()
        index["active"] = history[-1]
        self._write(index)
        return index["active"]

"""The studies root: what a browser may open is a study folder inside it, named relative to it, and nothing else.

A name from the page is refused (:class:`StudyAccessError`, one line) when it is empty, absolute,
contains ``..`` or a NUL byte, does not exist, resolves (through symbolic links) outside the root, or
holds a file or folder that links outside the root. Messages name the path as the page gave it, never
the server's absolute paths.
"""

from __future__ import annotations

import os
from pathlib import Path, PurePosixPath

from LesionAILib.errors import LesionAIError

HINT = "choose a study from the list"


class StudyAccessError(LesionAIError):
    """A study name from the page that does not name a study inside the studies root."""


class StudiesRoot:
    """The folder ``lesionai serve --studies`` was given (resolved once, at start)."""

    def __init__(self, root: str | Path):
        self.root = Path(root).resolve(strict=True)
        if not self.root.is_dir():
            raise LesionAIError("is not a folder", root, "give the folder that holds the studies")

    def contains(self, path: Path) -> bool:
        """Whether ``path`` (resolved) is the root or inside it."""
        return path == self.root or self.root in path.parents

    def resolve(self, name: str) -> Path:
        """The study folder (or file) ``name`` (relative to the root, POSIX or native separators) names.

        Raises :class:`StudyAccessError` for anything outside the root (see the module docstring).
        """
        text = str(name).strip()
        shown = text or "(empty)"
        if not text:
            raise StudyAccessError("no study given", hint=HINT)
        if "\0" in text:
            raise StudyAccessError(f"'{shown}' is not a valid study name", hint=HINT)
        parts = PurePosixPath(text.replace("\\", "/"))
        if parts.is_absolute() or Path(text).is_absolute() or (len(text) > 1 and text[1] == ":"):
            raise StudyAccessError(f"'{shown}' is an absolute path; only studies inside the studies folder open",
                                   hint=HINT)
        if ".." in parts.parts:
            raise StudyAccessError(f"'{shown}' leaves the studies folder ('..' is not accepted)", hint=HINT)
        candidate = self.root.joinpath(*parts.parts)
        if not os.path.lexists(candidate):
            raise StudyAccessError(f"'{shown}' does not exist in the studies folder", hint=HINT)
        resolved = candidate.resolve()
        if not self.contains(resolved):
            raise StudyAccessError(f"'{shown}' links outside the studies folder", hint=HINT)
        self._check_links_inside(resolved, shown)
        return resolved

    def _check_links_inside(self, folder: Path, shown: str) -> None:
        """Refuse a study holding a symbolic link (file or folder) that points outside the root."""
        if not folder.is_dir():
            return
        for directory, subdirectories, names in os.walk(folder):
            for name in (*subdirectories, *names):
                path = Path(directory) / name
                if path.is_symlink() and not self.contains(path.resolve()):
                    inside = Path(os.path.relpath(path, folder)).as_posix()
                    raise StudyAccessError(f"'{shown}' holds a link to outside the studies folder ({inside})",
                                           hint=HINT)

    def display(self, text: str) -> str:
        """``text`` with the root's absolute path replaced by ``<studies>`` (for messages shown in the page)."""
        return str(text).replace(str(self.root), "<studies>")

"""User-facing errors.

Every error a user can cause (a missing sequence, an unreadable series, a wrong model file)
is a :class:`LesionAIError` whose ``str()`` is one line that names the path and what to do.
The command line prints that line and exits non-zero; it never shows a traceback for them.
"""

from __future__ import annotations

from pathlib import Path


class LesionAIError(Exception):
    """Base class for mistakes a user can fix. ``str(error)`` is a single line."""

    def __init__(self, message: str, path: str | Path | None = None, hint: str | None = None):
        self.message = " ".join(str(message).split())
        self.path = None if path is None else str(path)
        self.hint = None if hint is None else " ".join(str(hint).split())
        super().__init__(str(self))

    def __str__(self) -> str:
        text = self.message if self.path is None else f"{self.path}: {self.message}"
        return text if not self.hint else f"{text} ({self.hint})"


class StudyError(LesionAIError):
    """A study, series or image file cannot be used as it is."""


class StudyWarning(UserWarning):
    """A study can be used, but something in it is suspect; ``str()`` is one line naming the file."""

    def __init__(self, message: str, path: str | Path | None = None, hint: str | None = None):
        super().__init__(str(LesionAIError(message, path, hint)))


class ModelFileError(LesionAIError):
    """A model file is missing, truncated, tampered with or of an unknown format."""


class ConfigError(LesionAIError):
    """A configuration value is out of range or inconsistent."""


class DicomOutputError(LesionAIError):
    """Results cannot be written as DICOM objects or sent to a DICOM node (no DICOM source, refused association)."""

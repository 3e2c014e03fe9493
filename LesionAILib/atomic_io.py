"""Atomic file writes: nothing a user made is ever left half-written under its final name."""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import SimpleITK as sitk


@contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; on success it is renamed onto ``path`` (atomic on POSIX).

    The temporary name keeps ``path``'s suffixes, so writers that choose a format by extension
    (SimpleITK, matplotlib) behave as for the final name. On error the temporary file is removed
    and ``path`` is untouched.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    suffix = "".join(path.suffixes) or ".tmp"
    handle, temporary = tempfile.mkstemp(prefix=f".{path.name.split('.')[0]}-", suffix=suffix, dir=path.parent)
    os.close(handle)
    temporary = Path(temporary)
    try:
        yield temporary
        os.chmod(temporary, 0o666 & ~_umask())  # mkstemp creates 0600; give the file the usual mode
        os.replace(temporary, path)
    finally:
        if temporary.exists():
            temporary.unlink()


@contextmanager
def atomic_folder(path: str | Path) -> Iterator[Path]:
    """Yield a new empty folder beside ``path``; on success it takes ``path``'s place, on error it is removed.

    A folder already at ``path`` is moved aside, the new one renamed onto ``path``, and the old one then
    deleted, so ``path`` is at every moment either the old folder or the complete new one. Whether an
    existing ``path`` may be replaced at all is the caller's decision (check before entering).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = Path(tempfile.mkdtemp(prefix=f".{path.name}-", dir=path.parent))
    try:
        yield temporary
        os.chmod(temporary, 0o777 & ~_umask())  # mkdtemp creates 0700; give the folder the usual mode
        if path.exists():
            previous = Path(tempfile.mkdtemp(prefix=f".{path.name}-previous-", dir=path.parent))
            os.replace(path, previous / path.name)
            os.replace(temporary, path)
            shutil.rmtree(previous)
        else:
            os.replace(temporary, path)
    finally:
        if temporary.exists():
            shutil.rmtree(temporary)


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def write_atomic(path: str | Path, writer: Callable[[Path], None]) -> Path:
    """Call ``writer(temporary_path)`` and move the result onto ``path`` atomically."""
    with atomic_path(path) as temporary:
        writer(temporary)
    return Path(path)


def write_text_atomic(path: str | Path, text: str) -> Path:
    return write_atomic(path, lambda p: p.write_text(text, encoding="utf-8"))


def write_json_atomic(path: str | Path, data) -> Path:
    return write_text_atomic(path, json.dumps(data, indent=2, sort_keys=False) + "\n")


def write_image_atomic(image: sitk.Image, path: str | Path, compress: bool = True) -> Path:
    """Write a SimpleITK image (format by extension: .nii.gz, .mha, .nrrd, ...) atomically."""
    return write_atomic(path, lambda p: sitk.WriteImage(image, str(p), compress))


def write_npy_atomic(path: str | Path, array) -> Path:
    """Write a numpy array as ``.npy`` atomically."""
    import numpy as np

    return write_atomic(path, lambda p: np.save(p, array))

"""Atomic file writes: nothing a user made is ever left half-written under its final name."""

from __future__ import annotations

import json
import os
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

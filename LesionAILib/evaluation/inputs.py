"""Checks of evaluation inputs: detection maps and labels as PI-CAI defines them.

A detection map is [Z, Y, X], numeric, finite, with values in [0, 1] (0 background, one constant
value per candidate blob); a label is [Z, Y, X], finite and non-negative, lesion where > 0. Both
lie on the same grid. Every refusal is a one-line :class:`LesionAIError` naming ``source`` (the
file, or "case <id>" for arrays).
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from LesionAILib.errors import LesionAIError


def checked_detection_map(array: np.ndarray, source: str) -> np.ndarray:
    """The detection map as an array, after checking it is [Z, Y, X], numeric, finite and in [0, 1]."""
    array = np.asarray(array)
    if array.ndim != 3:
        raise LesionAIError(f"detection map is {array.ndim}D with shape {array.shape}; need [Z, Y, X]", source)
    if not np.issubdtype(array.dtype, np.number) and array.dtype != bool:
        raise LesionAIError(f"detection map has non-numeric type {array.dtype}", source)
    if not np.all(np.isfinite(array)):
        raise LesionAIError("detection map contains NaN or infinite values", source)
    low, high = float(array.min()), float(array.max())
    if low < 0.0 or high > 1.0:
        raise LesionAIError(
            f"detection map values must lie in [0, 1], found [{low:.4g}, {high:.4g}]",
            source,
            "scale the candidate scores into [0, 1] (e.g. divide percentages by 100, or apply a sigmoid to logits)",
        )
    return array


def binary_label(array: np.ndarray, source: str) -> np.ndarray:
    """A [Z, Y, X] label checked (finite, non-negative) and binarised: uint8, 1 where > 0 (lesion)."""
    array = np.asarray(array)
    if array.ndim != 3:
        raise LesionAIError(f"label is {array.ndim}D with shape {array.shape}; need [Z, Y, X]", source)
    if not np.all(np.isfinite(array)):
        raise LesionAIError("label contains NaN or infinite values", source)
    if array.min() < 0:
        raise LesionAIError(f"label has negative values (min {array.min()})", source, "use 0 for background")
    return (array > 0).astype(np.uint8)


def check_same_shape(detection_map: np.ndarray, label: np.ndarray, source: str) -> None:
    """Refuse a detection map whose [Z, Y, X] shape differs from its label's."""
    if detection_map.shape != label.shape:
        raise LesionAIError(
            f"detection map shape {detection_map.shape} differs from its label's {label.shape} (Z, Y, X)",
            source,
            "detection maps must be on the label grid",
        )


class CheckedCase(NamedTuple):
    """One case ready for matching: [Z, Y, X] detection map in [0, 1] and binary label on the same grid."""

    case_id: str
    detection_map: np.ndarray
    label: np.ndarray
    source: str  # named in error messages: the detection map file, or "case <id>"

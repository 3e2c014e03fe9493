"""Discrepancy → abnormality: robust z-scores against normal tissue, per sequence, combined across sequences.

A discrepancy ``d`` (per voxel or per finding, one value per sequence) is turned into a robust
z-score against the discrepancies measured on **normal tissue** (lesion-free region voxels of the
calibration cases, stored in the model file)::

    z = (d - median) / (1.4826 · MAD)        MAD = median |d - median|

(1.4826 makes the MAD a consistent estimate of the standard deviation for Gaussian data), so a
value means the same on every site: "this many normal-tissue spreads above typical". The
sequences are combined by the mean of their z-scores (:func:`combine`). For candidate extraction,
which expects a map in [0, 1], :func:`candidate_scale` maps z linearly, z = :data:`Z_AT_ONE` → 1.
No torch here (results are read in the Slicer process).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from LesionAILib.errors import ConfigError

MAD_TO_SD = 1.4826
Z_AT_ONE = 10.0  # combined z that the [0, 1] candidate map saturates at
_SMALLEST_SPREAD = 1e-6


@dataclass(frozen=True)
class NormalTissueStatistics:
    """Median and MAD of normal-tissue discrepancies, per sequence (roles in channel order)."""

    roles: tuple[str, ...]
    median: tuple[float, ...]
    mad: tuple[float, ...]
    samples: int = 0

    def __post_init__(self):
        object.__setattr__(self, "roles", tuple(self.roles))
        object.__setattr__(self, "median", tuple(float(v) for v in self.median))
        object.__setattr__(self, "mad", tuple(float(v) for v in self.mad))
        if not len(self.roles) == len(self.median) == len(self.mad):
            raise ConfigError("normal-tissue statistics need one median and one MAD per sequence")

    @classmethod
    def fit(cls, roles: Sequence[str], discrepancies: np.ndarray) -> NormalTissueStatistics:
        """From normal-tissue discrepancies ``[C, N]`` (C sequences in ``roles`` order, N voxels or findings)."""
        values = np.asarray(discrepancies, np.float64).reshape(len(roles), -1)
        if values.shape[1] < 2:
            raise ConfigError("at least two normal-tissue samples are needed to normalise discrepancies")
        median = np.median(values, 1)
        mad = np.median(np.abs(values - median[:, None]), 1)
        return cls(tuple(roles), tuple(median), tuple(mad), int(values.shape[1]))

    def zscores(self, discrepancies: np.ndarray) -> np.ndarray:
        """Robust z-scores of ``[C, ...]`` discrepancies (channel axis first), float32 of the same shape."""
        values = np.asarray(discrepancies, np.float64)
        if values.shape[0] != len(self.roles):
            raise ConfigError(f"discrepancies have {values.shape[0]} sequences; the statistics have {len(self.roles)}")
        shape = (len(self.roles),) + (1,) * (values.ndim - 1)
        median = np.asarray(self.median).reshape(shape)
        spread = np.maximum(MAD_TO_SD * np.asarray(self.mad), _SMALLEST_SPREAD).reshape(shape)
        return ((values - median) / spread).astype(np.float32)

    def to_dict(self) -> dict:
        return {"roles": list(self.roles), "median": list(self.median), "mad": list(self.mad), "samples": self.samples}

    @classmethod
    def from_dict(cls, data: Mapping) -> NormalTissueStatistics:
        return cls(tuple(data["roles"]), tuple(data["median"]), tuple(data["mad"]), int(data.get("samples", 0)))


def combine(zscores: np.ndarray) -> np.ndarray:
    """The joint abnormality: mean of the per-sequence z-scores ``[C, ...]`` → ``[...]`` float32."""
    return np.asarray(zscores, np.float32).mean(0)


def candidate_scale(combined_z: np.ndarray) -> np.ndarray:
    """Combined z → [0, 1] for candidate extraction: ``clip(z / Z_AT_ONE, 0, 1)`` (float32)."""
    return np.clip(np.asarray(combined_z, np.float32) / Z_AT_ONE, 0.0, 1.0)

"""Checkpoints and resume: what a run folder keeps so that a killed run continues where it stopped.

A checkpoint is one safetensors file (model and optimizer tensors, never pickle) whose metadata
holds a JSON document: the :class:`PhaseState` fields, the phase (``"1"`` or ``"2"``), the
configuration digest, the epoch history and the optimizer's parameter groups. It is rewritten
atomically after every epoch, so a kill at any moment leaves the previous epoch's checkpoint.
A finished phase 1 is recorded in ``phase1.json`` (digest and state).
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass
from pathlib import Path

import torch
from safetensors import safe_open
from safetensors.torch import save_file

from LesionAILib.atomic_io import atomic_path, write_json_atomic
from LesionAILib.dataclass_dicts import DictSerialisable
from LesionAILib.errors import ConfigError

CHECKPOINT = "checkpoint.safetensors"
PHASE1_SUMMARY = "phase1.json"


@dataclass
class PhaseState(DictSerialisable):
    """Where a training phase stands.

    Attributes:
        epoch: the last finished epoch (1-based; 0 before the first).
        best: the best validation score so far (-1 before any; without validation, the last epoch's -1).
        best_epoch: the epoch of ``best`` (whose weights are the phase's best model file).
        done: the phase has finished (last epoch or early stop).
        best_metrics: the validation metrics of ``best_epoch`` (``None`` before any epoch).
    """

    epoch: int = 0
    best: float = -1.0
    best_epoch: int = 0
    done: bool = False
    best_metrics: dict[str, float] | None = None

    @classmethod
    def from_document(cls, document: dict) -> PhaseState:
        """The state fields of a checkpoint document (which holds more than the state)."""
        names = {f.name for f in dataclasses.fields(cls)}
        return cls.from_dict({k: v for k, v in document.items() if k in names})


def save_checkpoint(path: Path, model: torch.nn.Module, optimizer: torch.optim.Optimizer, document: dict) -> None:
    """Model and optimizer tensors in safetensors, ``document`` (JSON-ready) in its metadata."""
    tensors = {f"model.{k}": v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    optimizer_state = optimizer.state_dict()
    for index, values in optimizer_state["state"].items():
        for key, value in values.items():
            tensor = value if torch.is_tensor(value) else torch.tensor(value)
            tensors[f"optimizer.{index}.{key}"] = tensor.detach().cpu().contiguous()
    document = {**document, "optimizer_groups": optimizer_state["param_groups"]}
    with atomic_path(path) as temporary:
        save_file(tensors, str(temporary), metadata={"checkpoint": json.dumps(document)})


def read_checkpoint_document(path: Path) -> dict:
    """The JSON document of a checkpoint, without reading its tensors."""
    with safe_open(str(path), framework="pt") as handle:
        return json.loads(handle.metadata()["checkpoint"])


def load_checkpoint(path: Path, model: torch.nn.Module) -> tuple[dict, dict]:
    """Load model weights; return (document, optimizer state_dict) for :meth:`Optimizer.load_state_dict`."""
    with safe_open(str(path), framework="pt") as handle:
        document = json.loads(handle.metadata()["checkpoint"])
        tensors = {name: handle.get_tensor(name) for name in handle.keys()}
    model.load_state_dict({k[6:]: v for k, v in tensors.items() if k.startswith("model.")})
    optimizer_state: dict = {"state": {}, "param_groups": document.pop("optimizer_groups")}
    for name, tensor in tensors.items():
        if name.startswith("optimizer."):
            _, index, key = name.split(".", 2)
            optimizer_state["state"].setdefault(int(index), {})[key] = tensor
    return document, optimizer_state


class RunCheckpoints:
    """The checkpoint and the phase-1 record of one run folder, for one configuration ``digest``.

    Only the ``writer`` (rank 0 of a distributed run) writes; every rank reads.
    """

    def __init__(self, run_dir: Path, digest: str, writer: bool = True):
        self.run_dir = Path(run_dir)
        self.digest = digest
        self.writer = writer

    @property
    def path(self) -> Path:
        return self.run_dir / CHECKPOINT

    def document(self) -> dict | None:
        """The last checkpoint's document, or ``None`` when the run has none yet."""
        return read_checkpoint_document(self.path) if self.path.exists() else None

    def save(
        self,
        model: torch.nn.Module,
        optimizer: torch.optim.Optimizer,
        phase: str,
        state: PhaseState,
        history: list[dict],
    ) -> None:
        if self.writer:
            document = {**state.to_dict(), "phase": phase, "config": self.digest, "history": history}
            save_checkpoint(self.path, model, optimizer, document)

    def resume(
        self, model: torch.nn.Module, optimizer: torch.optim.Optimizer, phase: str
    ) -> tuple[PhaseState, list[dict]] | None:
        """Load the checkpoint of ``phase`` into ``model`` and ``optimizer``: (state, history), or
        ``None`` to start the phase fresh. A checkpoint of another configuration is an error."""
        document = self.document()
        if document is None:
            return None
        if document.get("config") != self.digest:
            raise ConfigError(
                "the run folder holds a checkpoint of a different configuration",
                self.run_dir,
                "use a new --run folder, or delete the old checkpoint to start over",
            )
        if document.get("phase") != phase:
            return None
        document, optimizer_state = load_checkpoint(self.path, model)
        optimizer.load_state_dict(optimizer_state)
        return PhaseState.from_document(document), document.get("history", [])

    def finished_phase1(self) -> PhaseState | None:
        """The final state of phase 1 when an earlier session of this configuration finished it."""
        path = self.run_dir / PHASE1_SUMMARY
        if not path.exists():
            return None
        summary = json.loads(path.read_text())
        return PhaseState.from_dict(summary["state"]) if summary.get("config") == self.digest else None

    def record_phase1(self, state: PhaseState) -> None:
        if self.writer:
            write_json_atomic(self.run_dir / PHASE1_SUMMARY, {"config": self.digest, "state": state.to_dict()})

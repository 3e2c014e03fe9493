"""Model files: safetensors weights plus a JSON metadata block. Nothing is ever unpickled.

A model file is one ``.safetensors`` file. Its header's ``__metadata__`` holds one entry,
``lesionai``, a JSON document with:

* ``format`` ("lesionai-model"), ``format_version`` (int) and ``kind`` — ``"detector"`` for the
  localization + classification models described here (files without ``kind`` are detectors),
  ``"patch-classifier"`` for the ProstateX patch classifier (:mod:`LesionAILib.prostatex.classifier`,
  which stores its own architecture and patch definition in the same container),
* ``name``, ``created`` (UTC ISO time), ``description``,
* ``architecture`` — the :class:`~LesionAILib.models.networks.ModelConfig` (so the file rebuilds itself),
* ``sequences`` (role order of the input channels) and ``preprocess`` — the target grid and
  normalisation (:class:`~LesionAILib.preprocessing.pipeline.PreprocessConfig`),
* ``class_names``, ``grade_names`` and ``score_by_grade`` (what the map values mean),
* ``training`` (data description, command, seed, phases), ``metrics`` (validation numbers),
* ``intended_use`` and ``synthetic_training_data`` (true for the demo model),
* ``sha256`` — of the canonical metadata (without this field) and every tensor's name, dtype,
  shape and bytes. Loading recomputes it and refuses a file whose weights or metadata changed.

Truncated or foreign files are refused with a one-line :class:`~LesionAILib.errors.ModelFileError`.
The container (:func:`write_container`, :func:`read_document`, :func:`read_container`) is shared by
every kind; a file of the wrong kind is refused with a message that says what it is.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

import torch
from safetensors import safe_open
from safetensors.torch import save_file

from LesionAILib.atomic_io import atomic_path
from LesionAILib.errors import ModelFileError
from LesionAILib.models.networks import LesionModel, ModelConfig
from LesionAILib.preprocessing.pipeline import PreprocessConfig
from LesionAILib.training.targets import SCORE_BY_GRADE

FORMAT = "lesionai-model"
FORMAT_VERSION = 1
DETECTOR = "detector"
KIND_USES = {
    DETECTOR: "a LesionAI detector (use it with `lesionai analyze --model`)",
    "patch-classifier": "a patch classifier (use it with `lesionai classify --model` or `--classifier-model`)",
    "synthesis": "a synthesis model for the abnormality map (use it with `lesionai analyze --abnormality-model`)",
}
CLASS_NAMES = ("not clinically significant", "clinically significant (ISUP grade group >= 2)")
GRADE_NAMES = ("GG0 benign", "GG1", "GG2", "GG3", "GG4", "GG5")
DEMO_NOTICE = "demo model — synthetic training data, not for clinical use"
@dataclass
class ModelMetadata:
    """The JSON block of a model file (see module docstring)."""

    name: str
    architecture: ModelConfig
    preprocess: PreprocessConfig
    description: str = ""
    created: str = field(default_factory=lambda: datetime.now(timezone.utc).isoformat(timespec="seconds"))
    class_names: tuple[str, ...] = CLASS_NAMES
    grade_names: tuple[str, ...] = GRADE_NAMES
    score_by_grade: tuple[float, ...] = SCORE_BY_GRADE
    training: dict = field(default_factory=dict)
    metrics: dict = field(default_factory=dict)
    intended_use: str = "research use only; not for clinical use"
    synthetic_training_data: bool = False
    sha256: str = ""

    @property
    def sequences(self) -> tuple[str, ...]:
        return self.preprocess.roles

    @property
    def display_name(self) -> str:
        """Name plus, for models trained on synthetic data, the notice every score must carry."""
        return f"{self.name} ({DEMO_NOTICE})" if self.synthetic_training_data else self.name

    def to_dict(self) -> dict:
        return {
            "format": FORMAT,
            "format_version": FORMAT_VERSION,
            "kind": DETECTOR,
            "name": self.name,
            "created": self.created,
            "description": self.description,
            "architecture": self.architecture.to_dict(),
            "sequences": list(self.sequences),
            "preprocess": self.preprocess.to_dict(),
            "class_names": list(self.class_names),
            "grade_names": list(self.grade_names),
            "score_by_grade": list(self.score_by_grade),
            "training": self.training,
            "metrics": self.metrics,
            "intended_use": self.intended_use,
            "synthetic_training_data": self.synthetic_training_data,
            "sha256": self.sha256,
        }

    @classmethod
    def from_dict(cls, data: dict) -> ModelMetadata:
        return cls(
            name=data["name"],
            architecture=ModelConfig.from_dict(data["architecture"]),
            preprocess=PreprocessConfig.from_dict(data["preprocess"]),
            description=data.get("description", ""),
            created=data.get("created", ""),
            class_names=tuple(data.get("class_names", CLASS_NAMES)),
            grade_names=tuple(data.get("grade_names", GRADE_NAMES)),
            score_by_grade=tuple(data.get("score_by_grade", SCORE_BY_GRADE)),
            training=data.get("training", {}),
            metrics=data.get("metrics", {}),
            intended_use=data.get("intended_use", ""),
            synthetic_training_data=bool(data.get("synthetic_training_data", False)),
            sha256=data.get("sha256", ""),
        )


def _digest(metadata: dict, tensors: dict[str, torch.Tensor]) -> str:
    canonical = {k: v for k, v in metadata.items() if k != "sha256"}
    digest = hashlib.sha256(json.dumps(canonical, sort_keys=True, separators=(",", ":")).encode())
    for name in sorted(tensors):
        tensor = tensors[name].detach().cpu().contiguous()
        digest.update(f"{name}|{tensor.dtype}|{tuple(tensor.shape)}".encode())
        digest.update(tensor.reshape(-1).view(torch.uint8).numpy().tobytes() if tensor.numel() else b"")
    return digest.hexdigest()


# --------------------------------------------------------------------------- the container (every kind)
def write_container(tensors: dict[str, torch.Tensor], document: dict, path: str | Path) -> str:
    """Write ``tensors`` and the JSON ``document`` to ``path`` atomically; fills and returns ``document["sha256"]``."""
    tensors = {name: t.detach().cpu().contiguous() for name, t in tensors.items()}
    document["sha256"] = _digest(document, tensors)
    with atomic_path(path) as temporary:
        save_file(tensors, str(temporary), metadata={"lesionai": json.dumps(document)})
    return document["sha256"]


def read_document(path: str | Path, kind: str | None = DETECTOR) -> dict:
    """The JSON document of a model file (no weights, no integrity check); refuses a file of another ``kind``.

    ``kind=None`` accepts any kind. A document without ``kind`` is a detector (files written before
    kinds existed).
    """
    path = Path(path)
    if not path.exists():
        raise ModelFileError("model file does not exist", path, "check the path or list models with `lesionai models`")
    try:
        with safe_open(str(path), framework="pt") as handle:
            header = handle.metadata() or {}
            document = json.loads(header["lesionai"])
    except (KeyError, json.JSONDecodeError):
        raise ModelFileError("not a LesionAI model file (no LesionAI metadata)", path) from None
    except Exception as error:  # safetensors reports truncation and garbage as generic errors
        raise ModelFileError(
            f"not a readable safetensors file, or truncated ({type(error).__name__})",
            path,
            "copy the model file again",
        ) from None
    if document.get("format") != FORMAT:
        raise ModelFileError(f"unknown model format {document.get('format')!r}", path)
    if int(document.get("format_version", 0)) > FORMAT_VERSION:
        raise ModelFileError(
            f"model format version {document['format_version']} is newer than this LesionAI understands "
            f"({FORMAT_VERSION})",
            path,
            "update LesionAI",
        )
    found = document.get("kind", DETECTOR)
    if kind is not None and found != kind:
        raise ModelFileError(
            f"this is {KIND_USES.get(found, f'a {found!r} model')}, not {KIND_USES.get(kind, kind).split(' (')[0]}",
            path,
        )
    return document


def read_container(path: str | Path, kind: str | None = DETECTOR) -> tuple[dict, dict[str, torch.Tensor]]:
    """``(document, tensors)`` of a model file after checking its integrity (sha256 over metadata and weights).

    Raises :class:`ModelFileError` for a missing, truncated, foreign, tampered or wrong-kind file.
    """
    path = Path(path)
    document = read_document(path, kind)
    try:
        with safe_open(str(path), framework="pt") as handle:
            tensors = {name: handle.get_tensor(name) for name in handle.keys()}
    except Exception as error:
        raise ModelFileError(f"weights cannot be read, the file is damaged ({type(error).__name__})", path) from None
    if _digest(document, tensors) != document.get("sha256"):
        raise ModelFileError(
            "checksum mismatch: the weights or metadata were changed after the model was saved",
            path,
            "use an unmodified copy of the model",
        )
    return document, tensors


def load_weights(module: torch.nn.Module, tensors: dict[str, torch.Tensor], path: str | Path) -> None:
    """``module.load_state_dict(tensors, strict=True)``, a mismatch reported as a one-line :class:`ModelFileError`."""
    try:
        module.load_state_dict(tensors, strict=True)
    except RuntimeError as error:
        first = str(error).splitlines()[0]
        raise ModelFileError(f"weights do not fit the stored architecture ({first})", path) from None


# --------------------------------------------------------------------------- detectors
def save_model(model: LesionModel, metadata: ModelMetadata, path: str | Path) -> Path:
    """Write ``model``'s weights and ``metadata`` to ``path`` atomically; fills ``metadata.sha256``."""
    metadata.architecture = model.config
    metadata.sha256 = write_container(model.state_dict(), metadata.to_dict(), path)
    return Path(path)


def read_metadata(path: str | Path) -> ModelMetadata:
    """Read only a detector's metadata block (fast; no weights, no integrity check)."""
    return ModelMetadata.from_dict(read_document(path))


def load_model(path: str | Path, device: str | torch.device = "cpu") -> tuple[LesionModel, ModelMetadata]:
    """Rebuild a detector from its file and load its weights, after checking the file's integrity.

    Returns the model in eval mode on ``device`` and its metadata. Raises
    :class:`ModelFileError` for a missing, truncated, foreign, tampered or wrong-kind file.
    """
    document, tensors = read_container(path)
    metadata = ModelMetadata.from_dict(document)
    model = LesionModel(metadata.architecture)
    load_weights(model, tensors, path)
    return model.to(device).eval(), metadata

"""Which torch device a computation runs on: ``"auto"`` is CUDA when there is a GPU, else the CPU."""

from __future__ import annotations

import torch

from LesionAILib.errors import ConfigError


def resolve_device(device: str | torch.device = "auto") -> torch.device:
    """``"auto"`` → CUDA when available, else CPU; ``"gpu"`` means ``"cuda"``; anything else is
    passed to :class:`torch.device`. Asking for CUDA without a GPU is a :class:`ConfigError`."""
    if isinstance(device, torch.device):
        return device
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device == "gpu":
        device = "cuda"
    resolved = torch.device(device)
    if resolved.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError("device 'cuda' requested but no CUDA GPU is available", hint="use --device cpu or auto")
    return resolved

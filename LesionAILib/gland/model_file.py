"""The TAPS model file: found inside the installed ``lavlab-taps`` package, checked by sha256, read into torch.

The weights are never copied into LesionAI and never downloaded at run time: the pinned PyPI
package ``lavlab-taps`` (:data:`TAPS_VERSION`, MIT licence) ships them as ``taps/resources/model_v1.onnx``.
The package's Python code is not imported (it pulls MONAI, nibabel and onnxruntime); only its
file is read: its bytes must hash to :data:`TAPS_SHA256`, then the ``onnx`` package parses the graph
and its initializers fill :class:`~LesionAILib.gland.network.GlandNetwork`, so one runtime (torch)
serves the CPU and CUDA (docs/decisions/0009-gland-runtime.md).

GroupNorm is exported as reshape → InstanceNormalization → reshape → Mul(γ) → Add(β) with
unnamed γ/β initializers; each is found by walking back from the convolution it feeds
(``…convN.weight`` ← Mish ← Add(β) ← Mul(γ)), which names it ``…normN``.
"""

from __future__ import annotations

import functools
import hashlib
import importlib.metadata
from dataclasses import dataclass
from pathlib import Path

import torch

from LesionAILib.errors import ModelFileError
from LesionAILib.gland.network import GlandNetwork

TAPS_DISTRIBUTION = "lavlab-taps"
TAPS_VERSION = "1.1.2"
TAPS_MODEL_FILE = "taps/resources/model_v1.onnx"
TAPS_SHA256 = "1e39be9d19f6f71810cb0931a7fe895441cfd318d6002730c918ee99b9d79b91"
MODEL_NAME = "TAPS prostate gland segmentation (lavlab-taps 1.1.2, model_v1)"
INSTALL_HINT = f"install it with: pip install --no-deps {TAPS_DISTRIBUTION}=={TAPS_VERSION}"


@dataclass(frozen=True)
class GlandModelInfo:
    """Which weights a gland mask came from."""

    name: str
    version: str
    sha256: str
    path: str


def installed_model_path() -> Path:
    """The ONNX file inside the installed ``lavlab-taps`` package (one-line error: missing, or another version)."""
    try:
        distribution = importlib.metadata.distribution(TAPS_DISTRIBUTION)
    except importlib.metadata.PackageNotFoundError:
        missing = f"the TAPS gland model package {TAPS_DISTRIBUTION} is not installed"
        raise ModelFileError(missing, hint=INSTALL_HINT) from None
    if distribution.version != TAPS_VERSION:
        raise ModelFileError(
            f"{TAPS_DISTRIBUTION} {distribution.version} is installed; LesionAI uses exactly {TAPS_VERSION}",
            hint=INSTALL_HINT,
        )
    path = Path(str(distribution.locate_file(TAPS_MODEL_FILE)))
    if not path.is_file():
        raise ModelFileError(f"{TAPS_DISTRIBUTION} is installed without its model file", path, INSTALL_HINT)
    return path


def read_checked(path: str | Path, expected_sha256: str = TAPS_SHA256) -> bytes:
    """The bytes of ``path``; a one-line :class:`ModelFileError` unless they hash to ``expected_sha256``."""
    path = Path(path)
    try:
        content = path.read_bytes()
    except OSError as error:
        raise ModelFileError(f"cannot read the gland model ({error.strerror})", path, INSTALL_HINT) from None
    digest = hashlib.sha256(content).hexdigest()
    if digest != expected_sha256:
        raise ModelFileError(
            f"gland model sha256 {digest[:12]}… does not match the pinned TAPS model ({expected_sha256[:12]}…); "
            "the file is damaged or not the released one",
            path,
            f"reinstall it: pip install --force-reinstall --no-deps {TAPS_DISTRIBUTION}=={TAPS_VERSION}",
        )
    return content


def _norm_parameters(graph, initializers: dict) -> dict[str, torch.Tensor]:
    """γ and β of every GroupNorm, named after the convolution each feeds (``….convN.weight`` → ``….normN``)."""
    producer = {output: node for node in graph.node for output in node.output}
    parameters = {}
    for node in graph.node:
        weight = node.input[1] if node.op_type == "Conv" and len(node.input) > 1 else ""
        if not weight.endswith((".conv1.weight", ".conv2.weight")):
            continue
        activation = producer[node.input[0]]  # Mish = x · tanh(softplus(x)), exported as Mul(x, Tanh(...))
        shift = producer[activation.input[0]]
        scale = producer[shift.input[0]]
        if (activation.op_type, shift.op_type, scale.op_type) != ("Mul", "Add", "Mul"):
            raise ValueError(f"unexpected graph before {weight}")
        norm = weight[: -len("conv1.weight")] + "norm" + weight[-len("1.weight")]
        parameters[f"{norm}.weight"] = initializers[scale.input[1]].reshape(-1)
        parameters[f"{norm}.bias"] = initializers[shift.input[1]].reshape(-1)
    return parameters


def network_from_onnx(content: bytes, source: str | Path = "gland model") -> GlandNetwork:
    """A :class:`GlandNetwork` (eval mode, CPU) holding the weights of the TAPS ONNX graph in ``content``."""
    import onnx
    from onnx import numpy_helper

    try:
        graph = onnx.load_from_string(content).graph
        initializers = {t.name: torch.from_numpy(numpy_helper.to_array(t).copy()) for t in graph.initializer}
        state = {name: value for name, value in initializers.items() if not name.startswith("onnx::")}
        state.update(_norm_parameters(graph, initializers))
    except (KeyError, ValueError, IndexError, onnx.onnx_cpp2py_export.checker.ValidationError) as error:
        raise ModelFileError(f"not the TAPS network graph ({error})", source) from None
    network = GlandNetwork().eval()
    expected = network.state_dict()
    wrong = [name for name in expected if name not in state or state[name].shape != expected[name].shape]
    if wrong or len(state) != len(expected):
        raise ModelFileError(f"the ONNX graph does not fit the TAPS network ({len(wrong)} parameters differ)", source)
    network.load_state_dict(state)
    return network


@functools.lru_cache(maxsize=2)
def _load(path: str, device: str) -> tuple[GlandNetwork, GlandModelInfo]:
    content = read_checked(path)
    network = network_from_onnx(content, path).to(torch.device(device))
    return network, GlandModelInfo(MODEL_NAME, TAPS_VERSION, TAPS_SHA256, path)


def load_gland_network(device: torch.device, path: str | Path | None = None) -> tuple[GlandNetwork, GlandModelInfo]:
    """The checked TAPS network on ``device`` and what it is (cached per file and device).

    Args:
        device: where the network runs.
        path: an ONNX file to use instead of the installed package's (it must still be the pinned model).
    """
    return _load(str(Path(path) if path else installed_model_path()), str(device))

"""What LesionAI needs inside Slicer's Python, how to check it, and how to install it safely.

* **torch** comes from the PyTorch extension (``PyTorchUtils``, an extension dependency of
  LesionAI): it picks a CUDA build when the machine has a supported NVIDIA driver, else the CPU
  build. LesionAI asks before installing (a download of up to a few GB) and checks the version.
* **Other packages** (:data:`REQUIREMENTS`) are pip-installed with a constraints file that pins
  the versions of numpy, SimpleITK and torch already installed (:func:`protected_constraints`):
  pip then either installs the missing packages *around* Slicer's own numpy/SimpleITK/torch or
  fails with a clear conflict — it never replaces them. (``--no-deps`` would also protect them but
  silently skips dependencies the new packages really need.)

The checks are plain Python and run anywhere; the installers use ``slicer.util.pip_install`` and
``PyTorchUtils`` and therefore only run inside the Slicer application (imported when called).
"""

from __future__ import annotations

import importlib.metadata
import importlib.util
import tempfile
from collections.abc import Callable
from pathlib import Path

from LesionAILib.errors import LesionAIError

# torch range. Lower bound 2.2: the newest torch with wheels for every platform Slicer 5.10 (Python
# 3.12) runs on — Intel macOS stops at 2.2.x (SlicerDMRI issue 257: "from versions: 2.2.0, 2.2.1,
# 2.2.2"), and 2.2 has what the engine uses (safetensors loading, inference_mode, SDPA-free 3D convs).
# Upper bound: below the next minor release after the newest version the test suite ran on (2.13), so
# the PyTorch extension never installs a torch no one has tested; raise it after a green run.
# (The extension picks a CUDA build when it finds a supported NVIDIA driver; for CUDA 12.8-only cards
# users install the cu128 build themselves, see README.)
MINIMUM_TORCH = (2, 2)
TORCH_BELOW = (2, 14)
TORCH_REQUIREMENT = ">=2.2,<2.14"
# import name -> pip requirement: LesionAILib's dependencies (pyproject.toml) besides torch, numpy and
# SimpleITK. Slicer bundles some (scipy, pydicom). picai-eval (fine-tuning validation) pulls in
# report-guided-annotation, scikit-learn, mlxtend, scipy, tqdm, numpy and SimpleITK: the last four are
# protected below, so pip adds only scikit-learn (with joblib and threadpoolctl) and mlxtend
# (with pandas and matplotlib).
REQUIREMENTS = {
    "pydicom": "pydicom>=3.0.1",
    "scipy": "scipy>=1.10",
    "safetensors": "safetensors>=0.4",
    "matplotlib": "matplotlib>=3.7",
    "tqdm": "tqdm>=4.60",
    "report_guided_annotation": "report-guided-annotation>=0.3.4",
    "picai_eval": "picai-eval>=1.4.13",
    "highdicom": "highdicom>=0.28.2,<0.29",  # Export to DICOM (Slicer 5.10 ships pydicom 3.0.1, which it needs)
    "pynetdicom": "pynetdicom>=3.0.4,<4",  # lesionai send (the job side)
    "onnx": "onnx>=1.16",  # the gland job reads the TAPS model file's weights with it
}
# installed without their declared dependencies (pip --no-deps): import name -> requirement
NO_DEPS_REQUIREMENTS = {
    "taps": "lavlab-taps==1.1.2",  # the TAPS gland model file; its onnxruntime-gpu/MONAI are not needed
}
# Packages Slicer ships (or the PyTorch extension installed): pip must never replace them, or Slicer's own
# modules break (a new numpy under VTK's numpy support, another SimpleITK under SimpleFilters, ...).
PROTECTED = (
    "numpy",
    "scipy",
    "SimpleITK",
    "pydicom",
    "torch",
    "torchvision",
    "requests",
    "urllib3",
    "certifi",
    "idna",
    "charset-normalizer",
    "Pillow",
    "packaging",
    "six",
    "dicomweb-client",
    "GitPython",
    "pip",
    "setuptools",
    "wheel",
)


def _version_tuple(version: str) -> tuple[int, ...]:
    numbers = []
    for part in version.split("+")[0].split("."):
        digits = "".join(ch for ch in part if ch.isdigit())
        if not digits:
            break
        numbers.append(int(digits))
    return tuple(numbers)


def torch_status(check_cuda: bool = False) -> dict:
    """``{"installed", "version", "in_range", "cuda"}`` from package metadata.

    torch itself is imported only with ``check_cuda`` (``cuda`` is ``None`` otherwise): the check is
    instant, and a broken torch installation cannot break it.
    """
    try:
        version = importlib.metadata.version("torch")
    except importlib.metadata.PackageNotFoundError:
        return {"installed": False, "version": None, "in_range": False, "cuda": False}
    cuda = None
    if check_cuda:
        import torch

        cuda = bool(torch.cuda.is_available())
    return {
        "installed": True,
        "version": version,
        "in_range": MINIMUM_TORCH <= _version_tuple(version)[:2] < TORCH_BELOW,
        "cuda": cuda,
    }


def torch_ready() -> bool:
    """torch is installed and inside :data:`TORCH_REQUIREMENT` (from package metadata; torch is not imported)."""
    status = torch_status()
    return status["installed"] and status["in_range"]


def missing_packages() -> list[str]:
    """Pip requirements of :data:`REQUIREMENTS` whose module cannot be found."""
    importlib.invalidate_caches()
    wanted = {**REQUIREMENTS, **NO_DEPS_REQUIREMENTS}
    return [requirement for module, requirement in wanted.items() if importlib.util.find_spec(module) is None]


def protected_constraints() -> str:
    """A pip constraints file pinning the installed versions of :data:`PROTECTED` packages."""
    lines = []
    for name in PROTECTED:
        try:
            lines.append(f"{name}=={importlib.metadata.version(name)}")
        except importlib.metadata.PackageNotFoundError:
            continue
    return "\n".join(lines) + "\n"


def describe_missing() -> str:
    """A one-paragraph message saying what is missing ("" when everything is there)."""
    torch = torch_status()
    problems = []
    if not torch["installed"]:
        problems.append("PyTorch is not installed")
    elif not torch["in_range"]:
        problems.append(f"PyTorch {torch['version']} is outside the tested range (LesionAI needs {TORCH_REQUIREMENT})")
    missing = missing_packages()
    if missing:
        problems.append("missing Python packages: " + ", ".join(missing))
    return "; ".join(problems)


def install_torch(confirm: Callable[[str], bool]) -> bool:
    """Install or upgrade torch through the PyTorch extension after ``confirm(message)``; Slicer only.

    Returns ``False`` when the user declined. Raises :class:`LesionAIError` when the PyTorch
    extension is missing.
    """
    try:
        import PyTorchUtils
    except ImportError:
        raise LesionAIError(
            "the PyTorch extension is not installed",
            hint="install 'PyTorch' from the Extensions Manager, restart Slicer, then try again",
        ) from None
    status = torch_status()
    action = "upgraded" if status["installed"] else "installed"
    message = (
        f"LesionAI needs PyTorch {TORCH_REQUIREMENT}. It will be {action} now by the PyTorch extension "
        "(a CUDA build if this computer has a supported NVIDIA GPU, else the CPU build). "
        "The download can take several minutes. Continue?"
    )
    if not confirm(message):
        return False
    torch = PyTorchUtils.PyTorchUtilsLogic().installTorch(
        askConfirmation=False, torchVersionRequirement=TORCH_REQUIREMENT
    )
    if torch is None:
        raise LesionAIError("PyTorch could not be installed", hint="see the Python console for pip's messages")
    return True


def install_missing_packages(confirm: Callable[[str], bool]) -> bool:
    """Pip-install :func:`missing_packages` without replacing numpy/SimpleITK/torch; Slicer only.

    Returns ``False`` when the user declined (or nothing was missing).
    """
    missing = missing_packages()
    if not missing or not confirm(
        "LesionAI needs these Python packages: " + ", ".join(missing) + ". Install them now with pip? "
        "(Slicer's numpy, SimpleITK and PyTorch are kept as they are.)"
    ):
        return False
    import slicer

    with tempfile.TemporaryDirectory(prefix="LesionAI-pip-") as folder:
        constraints = Path(folder) / "constraints.txt"
        constraints.write_text(protected_constraints(), encoding="utf-8")
        no_deps = set(NO_DEPS_REQUIREMENTS.values())
        regular = [requirement for requirement in missing if requirement not in no_deps]
        if regular:
            slicer.util.pip_install(["-c", str(constraints), *regular])
        if no_deps & set(missing):
            slicer.util.pip_install(["--no-deps", *sorted(no_deps & set(missing))])
    still_missing = [r for r in missing if r in missing_packages()]
    if still_missing:
        raise LesionAIError(f"pip did not install {', '.join(still_missing)}", hint="see the Python console")
    return True

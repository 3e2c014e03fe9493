"""Where the bundled models lie (``Resources/Models``), without torch: the Slicer panel lists models with it."""

from __future__ import annotations

from pathlib import Path

from LesionAILib.errors import ModelFileError

RESOURCES = Path(__file__).resolve().parents[2] / "Resources"
DEMO_MODEL = RESOURCES / "Models" / "lesionai-demo-phantom.safetensors"
# the abnormality map's 2D inpainting, trained on real ProstateX patches (synthesis.prostatex_model)
SYNTHESIS_PROSTATEX_MODEL = RESOURCES / "Models" / "lesionai-synthesis-prostatex-2d.safetensors"


def bundled_model_path() -> Path:
    """The demo model shipped with LesionAI (trained on synthetic phantoms only)."""
    if not DEMO_MODEL.exists():
        raise ModelFileError("the bundled demo model is missing", DEMO_MODEL, "reinstall LesionAI or pass --model")
    return DEMO_MODEL

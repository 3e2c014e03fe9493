"""LesionAILogic: the LesionAI Slicer module's scene logic — no Qt, runs in Slicer and on ``slicer-core``.

=====================  ================================================================
module                 concern
=====================  ================================================================
``logic``              :class:`LesionAILogic`, the scripting API: a facade over the parts below
``inputs``             studies into volume nodes, their roles, volume nodes into an engine case
``models``             the versioned model store the panel offers
``results``            heatmap, candidate table and outlines of a T2; result folders; reading
``points``             point and classify (ProstateX patch classifier) into the candidate table
``dataset``            annotation segmentations and the deployment dataset
``jobs``               the ``lesionai`` commands the panel runs in separate processes
``volumes``            SimpleITK images ↔ volume nodes with exact geometry (LPS ↔ RAS)
``roles``              which loaded volume is T2 / ADC / high-b
``display``            heat colour node, heatmap window/threshold, slice-view layers, jumping
``candidates``         candidate table node and candidate outline segmentation
``annotation``         lesion segmentations with grades → deployment lesion mask
``dependencies``       torch and pip packages inside Slicer: checks and safe installation
``offscreen``          headless slice-view screenshots (slicer-core + trame-slicer)
=====================  ================================================================

Names are imported lazily, so ``import LesionAILogic`` costs nothing until a name is used. The
job processes run the engine's own command line (``python -m LesionAILib.cli``), never this package.

Where the engine is: installed in Slicer, ``LesionAILib`` sits next to this package (on Slicer's
module path). Run from a source checkout (Slicer's "Additional module paths" pointing at
``<checkout>/LesionAI``) it is one folder up, and is added to ``sys.path`` if no other
``LesionAILib`` is importable.
"""

from __future__ import annotations

import importlib
import importlib.util
import sys
from pathlib import Path

if importlib.util.find_spec("LesionAILib") is None:
    _CHECKOUT = Path(__file__).resolve().parents[2]
    if (_CHECKOUT / "LesionAILib" / "__init__.py").is_file():
        sys.path.append(str(_CHECKOUT))

_EXPORTS = {
    "LesionAILogic": "logic",
    "SceneAnalysis": "results",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
    if name in _EXPORTS:
        return getattr(importlib.import_module(f".{_EXPORTS[name]}", __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")

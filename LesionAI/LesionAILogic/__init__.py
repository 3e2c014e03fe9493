"""LesionAILogic: the LesionAI Slicer module's scene logic — no Qt, runs in Slicer and on ``slicer-core``.

=====================  ================================================================
module                 concern
=====================  ================================================================
``logic``              :class:`LesionAILogic`, the scripting API: a facade over the parts below
``panel``              the panel's state and decisions (:class:`~.panel.controller.PanelController`), no Qt
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
``compatibility``      which Slicer runs LesionAI (checked first, in Python 3.9 syntax)
``offscreen``          headless slice-view screenshots (slicer-core + trame-slicer)
``gland``              the prostate gland segment of a T2 (a ``lesionai gland`` job), volume and PSA density
``abnormality``        the abnormality map of a result folder as a volume node on its T2 (own colour map)
``abnormality_layer``  the abnormality map as a slice-view layer, its value at a point, the box viewer job
``dicom_export``       a result folder as DICOM SEG, Parametric Map and SR (Export to DICOM)
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


def forgetForReload() -> list[str]:
    """Drop LesionAILogic and LesionAILib from ``sys.modules`` so that Slicer's Reload imports them afresh.

    Returns the module names dropped. Called by the panel's Reload after every job has stopped.
    """
    names = [name for name in sys.modules if name.split(".")[0] in ("LesionAILogic", "LesionAILib")]
    for name in names:
        del sys.modules[name]
    return sorted(names)


def __getattr__(name: str):
    if name in _EXPORTS:
        return getattr(importlib.import_module(f".{_EXPORTS[name]}", __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")

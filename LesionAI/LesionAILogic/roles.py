"""Decide which loaded volume is the T2, the ADC map and the high-b DWI, from names, attributes and geometry.

For volumes LesionAI loaded itself the role is recorded on the node (:data:`ROLE_ATTRIBUTE`, set from
the engine's DICOM rules in :mod:`LesionAILib.studies.study`) and wins. For other volumes (Slicer's DICOM
browser names them ``"<series number>: <description>"``, files are named as the user chose) the
role is guessed from the name and the ``DICOM.SeriesDescription`` attribute:

* **adc** — mentions ADC or "apparent";
* **hbv** — mentions a computed b-value (calc, bval), high-b, ``b1400``-style b-values, or DWI/diffusion/trace;
* **t2w** — mentions T2 and is not a localizer/scout.

Among several candidates for a role: axial before other planes (slice normal closest to S), then a
computed high-b series before acquired DWI, the higher b-value in the name, the finer in-plane
spacing, the lower series number. Explicit overrides always win.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence

import numpy as np

from LesionAILib.errors import LesionAIError
from LesionAILib.studies.study import ADC_PATTERN as _ADC
from LesionAILib.studies.study import DWI_PATTERN as _DWI
from LesionAILib.studies.study import LOCALIZER_PATTERN as _LOCALIZER
from LesionAILib.studies.study import ROLE_NAMES, ROLES
from LesionAILib.studies.study import T2_PATTERN as _T2

from .volumes import ijk_to_ras_of_node

ROLE_ATTRIBUTE = "LesionAI.Role"
ROLE_REASON_ATTRIBUTE = "LesionAI.RoleReason"
OUTPUT_ATTRIBUTE = "LesionAI.Output"  # set on volumes LesionAI computed (heatmaps): never an input

# Volume names add "high-b", "hbv" and "b1400"-style names to the engine's DICOM description patterns.
_CALC = re.compile(r"calc|bval|high[-_ ]?b|hbv|\bb[-_ ]?\d{3,4}\b", re.IGNORECASE)
_B_VALUE = re.compile(r"\bb[-_ ]?(\d{3,4})\b", re.IGNORECASE)
_SERIES_NUMBER = re.compile(r"^\s*(\d+)\s*:")


def _label(node) -> str:
    return f"{node.GetName()} {node.GetAttribute('DICOM.SeriesDescription') or ''}"


def guess_role(node) -> str | None:
    """The role a volume node looks like from its name/description (``None`` if none)."""
    text = _label(node)
    if _ADC.search(text):
        return "adc"
    if _CALC.search(text) or _DWI.search(text):
        return "hbv"
    if _T2.search(text) and not _LOCALIZER.search(text):
        return "t2w"
    return None


def _axialness(node) -> float:
    """|cos| of the angle between the slice normal and the S axis (1 for a true axial volume)."""
    normal = ijk_to_ras_of_node(node)[:3, 2]
    return float(abs(normal[2]) / (np.linalg.norm(normal) or 1.0))


def _rank(node, role: str) -> tuple:
    text = _label(node)
    spacing = node.GetSpacing()
    b_values = [int(b) for b in _B_VALUE.findall(text)]
    number = _SERIES_NUMBER.match(node.GetName())
    return (
        -round(_axialness(node), 2),
        role == "hbv" and not _CALC.search(text),
        -max(b_values, default=0),
        round(float(np.mean(spacing[:2])), 3),
        int(number.group(1)) if number else 10**6,
        node.GetName(),
    )


def assign_roles(volume_nodes: Sequence, overrides: Mapping[str, object] | None = None) -> tuple[dict, dict]:
    """Choose a volume node for each role.

    Args:
        volume_nodes: candidate scalar volume nodes (nodes LesionAI computed are ignored).
        overrides: ``{role: node}``; always wins.

    Returns:
        ``(nodes, reasons)``: ``{role: node}`` and ``{role: why it was chosen}``.

    Raises:
        LesionAIError: a role cannot be filled (the message lists the volumes seen).
    """
    overrides = {role: node for role, node in (overrides or {}).items() if node is not None}
    unknown = set(overrides) - set(ROLES)
    if unknown:
        raise LesionAIError(f"unknown role(s) {', '.join(sorted(unknown))}; roles are {', '.join(ROLES)}")
    inputs = [n for n in volume_nodes if n is not None and not n.GetAttribute(OUTPUT_ATTRIBUTE)]
    chosen, reasons = {}, {}
    for role, node in overrides.items():
        chosen[role], reasons[role] = node, "chosen by the user"
    taken = {node.GetID() for node in chosen.values()}
    for role in ROLES:
        if role in chosen:
            continue
        recorded = [n for n in inputs if n.GetAttribute(ROLE_ATTRIBUTE) == role and n.GetID() not in taken]
        guessed = [n for n in inputs if guess_role(n) == role and n.GetID() not in taken]
        if recorded:
            node = sorted(recorded, key=lambda n: _rank(n, role))[0]
            reason = node.GetAttribute(ROLE_REASON_ATTRIBUTE) or "role recorded when LesionAI loaded the study"
        elif guessed:
            node = sorted(guessed, key=lambda n: _rank(n, role))[0]
            reason = f"name '{node.GetName()}' looks like the {ROLE_NAMES[role]}"
            if len(guessed) > 1:
                reason += f" (chosen among {len(guessed)}: axial first, then the finest spacing)"
        else:
            seen = ", ".join(f"'{n.GetName()}'" for n in inputs) or "no volumes loaded"
            raise LesionAIError(
                f"no volume looks like the {ROLE_NAMES[role]} ({seen})",
                hint=f"choose the {ROLE_NAMES[role]} volume explicitly",
            )
        chosen[role], reasons[role] = node, reason
        taken.add(node.GetID())
    return chosen, reasons

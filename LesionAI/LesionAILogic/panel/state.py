"""The panel's fields, stored on the module's parameter node exactly as Slicer's parameterNodeWrapper stores them.

Slicer's ``parameterNodeWrapper`` (not in the ``slicer-core`` wheel) writes ``str`` as is, numbers
as ``str(value)``, ``bool`` as ``"True"``/``"False"`` and nodes as a node reference whose role is the
field name. :class:`PanelState` reads and writes the same parameters, so the Qt panel's wrapper (which
binds the widgets) and the controller (which decides) share one node, and a scene saved by either
reopens in both. :data:`PANEL_FIELDS` is the one list of fields; the wrapper class in ``LesionAI.py``
declares the same names (a static test compares them).
"""

from __future__ import annotations

from dataclasses import dataclass

NODE = "node"  # the type of a field that references an MRML node


@dataclass(frozen=True)
class PanelField:
    """One field: its parameter name, Python type (or :data:`NODE`), default and, for numbers, its range."""

    name: str
    type: object
    default: object = None
    minimum: float | None = None
    maximum: float | None = None
    choices: tuple[str, ...] = ()


PANEL_FIELDS = (
    PanelField("studyFolder", str, ""),
    PanelField("t2Volume", NODE),
    PanelField("adcVolume", NODE),
    PanelField("hbvVolume", NODE),
    PanelField("device", str, "auto", choices=("auto", "cpu", "cuda")),
    PanelField("heatmapOpacity", float, 0.6, 0.0, 1.0),
    PanelField("heatmapThreshold", float, 0.2, 0.0, 1.0),
    PanelField("heatmapVisible", bool, True),
    PanelField("selectedCandidate", int, 0),
    PanelField("annotation", NODE),
    PanelField("points", NODE),
    PanelField("prefillFromCandidates", bool, True),
    PanelField("datasetFolder", str, ""),
    PanelField("caseId", str, ""),
    PanelField("annotator", str, ""),
    PanelField("finetuneEpochs", int, 8, 1, 200),
    PanelField("classifierEpochs", int, 4, 0, 200),
    PanelField("lastFinetunedVersion", str, ""),
    PanelField("synthesisModel", str, ""),
    PanelField("analyzeWithAbnormality", bool, False),
    PanelField("abnormalityVisible", bool, True),
    PanelField("abnormalityOpacity", float, 0.5, 0.0, 1.0),
)
_BY_NAME = {field.name: field for field in PANEL_FIELDS}


class PanelState:
    """Attribute access to :data:`PANEL_FIELDS` on a ``vtkMRMLScriptedModuleNode`` (``state.t2Volume = node``).

    Reading a field that was never written gives its default. Writing checks the type and range
    (a wrong value raises ``ValueError``: a bug in a front end, not a user mistake). Each write
    that changes a value fires the node's ``ModifiedEvent``, which the front ends observe.
    """

    def __init__(self, parameterNode):
        object.__setattr__(self, "node", parameterNode)

    def __getattr__(self, name: str):
        field = _BY_NAME.get(name)
        if field is None:
            raise AttributeError(f"the LesionAI panel has no field {name!r}")
        node = self.node
        if field.type is NODE:
            return node.GetNodeReference(name)
        text = node.GetParameter(name)
        if not text:
            return field.default
        if field.type is bool:
            return text == "True"
        return field.type(text)

    def __setattr__(self, name: str, value) -> None:
        field = _BY_NAME.get(name)
        if field is None:
            raise AttributeError(f"the LesionAI panel has no field {name!r}")
        node = self.node
        if field.type is NODE:
            node.SetNodeReferenceID(name, value.GetID() if value is not None else None)
            return
        if field.type is bool:
            node.SetParameter(name, "True" if value else "False")
            return
        if field.type in (int, float):
            wrong_int = field.type is int and isinstance(value, float) and value != int(value)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or wrong_int:
                raise ValueError(f"{name} must be a {field.type.__name__}, not {value!r}")
            value = field.type(value)
            if (field.minimum is not None and value < field.minimum) or (
                field.maximum is not None and value > field.maximum
            ):
                raise ValueError(f"{name} must lie in [{field.minimum}, {field.maximum}], not {value}")
        elif field.choices and value not in field.choices:
            raise ValueError(f"{name} must be one of {', '.join(field.choices)}, not {value!r}")
        node.SetParameter(name, str(value))

    def inputsReady(self) -> bool:
        """The T2, ADC and high-b volumes are all chosen."""
        return bool(self.t2Volume and self.adcVolume and self.hbvVolume)

    def roleNodes(self) -> dict:
        """``{"t2w", "adc", "hbv"}`` volume nodes (``None`` where not chosen)."""
        return {"t2w": self.t2Volume, "adc": self.adcVolume, "hbv": self.hbvVolume}

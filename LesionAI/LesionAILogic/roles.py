"""Which loaded volume is the T2, the ADC map and the high-b DWI: nodes become descriptors, the engine's rules choose.

The rules are the engine's (:mod:`LesionAILib.studies.roles`), the same ones ``lesionai inspect``
applies to a DICOM folder; this module only gathers the facts they read, for each node, from the
best source it has:

1. **DICOM headers.** A volume Slicer's DICOM module loaded carries ``DICOM.instanceUIDs``; the files
   are looked up in Slicer's DICOM database and their headers read with pydicom
   (:func:`~LesionAILib.studies.dicom_study.series_of_files`) — exactly what ``lesionai inspect`` reads.
2. **What the node carries** (volumes loaded from files, or DICOM volumes whose files cannot be
   found): the name (``"<series number>: <description>"`` as the DICOM module names volumes), the
   ``DICOM.*`` attributes LesionAI sets when it loads a study, b-values written in the name
   (``b1400``), and the geometry (plane of the slice normal, in-plane spacing, slice count).
   Facts neither gives (image type, sequence, acquisition time, ...) are reported as missing.

Explicit overrides win, then roles recorded on the nodes (:data:`ROLE_ATTRIBUTE`: set when LesionAI
loaded the study, or by an earlier assignment); both go to the engine as its overrides, so the
other roles are still chosen relative to them (e.g. the ADC acquired closest to the chosen T2).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import slicer

from LesionAILib.errors import LesionAIError
from LesionAILib.geometry import LPS_TO_RAS
from LesionAILib.studies import roles as engine_roles
from LesionAILib.studies.dicom_study import series_of_files
from LesionAILib.studies.roles import ROLE_NAMES, ROLES, MissingRoleError, SeriesDescriptor

from .volumes import ijk_to_ras_of_node

ROLE_ATTRIBUTE = "LesionAI.Role"
ROLE_REASON_ATTRIBUTE = "LesionAI.RoleReason"
OUTPUT_ATTRIBUTE = "LesionAI.Output"  # set on volumes LesionAI computed (heatmaps): never an input
INSTANCE_UIDS_ATTRIBUTE = "DICOM.instanceUIDs"  # Slicer's DICOM module: the SOPInstanceUIDs of the loaded files
# what LesionAILogic.loadStudy records on the volumes it adds (LesionAILogic.inputs.DICOM_ATTRIBUTES)
_SERIES_NUMBER_ATTRIBUTE = "DICOM.SeriesNumber"
_SERIES_DESCRIPTION_ATTRIBUTE = "DICOM.SeriesDescription"
_SERIES_UID_ATTRIBUTE = "DICOM.SeriesInstanceUID"
_B_VALUE_ATTRIBUTE = "DICOM.DiffusionBValue"
# facts only DICOM headers give
_HEADER_ONLY_FACTS = ("image type", "sequence name", "scanning sequence", "echo train length", "acquisition time")

# SOPInstanceUID -> file path ("" when unknown), as ctkDICOMDatabase.fileForInstance answers
InstanceFile = Callable[[str], str]


@dataclass(frozen=True)
class NodeFacts:
    """What the role rules know about one volume node.

    Attributes:
        node: the volume node.
        descriptor: the facts, keyed by the node's ID.
        source: where they came from (``"DICOM headers of 19 files"`` or ``"name and geometry"``, and why).
        missing: facts the rules read that were not known for this node (e.g. ``"acquisition time"``).
    """

    node: object
    descriptor: SeriesDescriptor
    source: str
    missing: tuple[str, ...]


@dataclass(eq=False)
class RoleAssignment(Mapping):
    """``{role: node}`` for t2w, adc and hbv (compares equal to a plain dict of the same nodes), with why.

    Attributes:
        nodes: ``{role: volume node}``.
        reasons: ``{role: why this node}``.
        missing: ``{role: facts the chosen node lacked}`` (empty when its DICOM headers were read).
        facts: ``{node ID: NodeFacts}`` for every volume offered.
    """

    nodes: dict[str, object]
    reasons: dict[str, str]
    missing: dict[str, tuple[str, ...]]
    facts: dict[str, NodeFacts]

    def __getitem__(self, role: str):
        return self.nodes[role]

    def __iter__(self) -> Iterator[str]:
        return iter(self.nodes)

    def __len__(self) -> int:
        return len(self.nodes)


def _dicom_database_lookup() -> InstanceFile | None:
    database = getattr(slicer, "dicomDatabase", None)
    return database.fileForInstance if database is not None else None


def _facts_from_headers(node, instance_file: InstanceFile | None) -> NodeFacts | str:
    """The node's facts from its DICOM files' headers, or why they cannot be read."""
    if instance_file is None:
        return "no DICOM database to find its files"
    uids = node.GetAttribute(INSTANCE_UIDS_ATTRIBUTE).split()
    paths = [path for path in (instance_file(uid) for uid in uids) if path and Path(path).is_file()]
    series = series_of_files(paths) if paths else None
    if series is None:
        return f"none of its {len(uids)} DICOM files found in the database"
    descriptor = dataclasses.replace(series.descriptor(), key=node.GetID())
    return NodeFacts(node, descriptor, f"DICOM headers of {len(series.files)} files", ())


def _number_and_description(node) -> tuple[int | None, str]:
    """Series number and description from LesionAI's attributes, else from a ``"<number>: <description>"`` name."""
    name = node.GetName()
    prefix, colon, rest = name.partition(":")
    named_number = int(prefix) if colon and prefix.strip().isdigit() else None
    recorded_number = node.GetAttribute(_SERIES_NUMBER_ATTRIBUTE) or ""
    number = int(recorded_number) if recorded_number.isdigit() else named_number
    named_description = rest.strip() if named_number is not None else name
    description = node.GetAttribute(_SERIES_DESCRIPTION_ATTRIBUTE) or named_description
    return number, description


def _facts_from_node(node, why_not_headers: str) -> NodeFacts:
    """The node's facts from its name, attributes and geometry (LPS mm)."""
    number, description = _number_and_description(node)
    recorded_b = node.GetAttribute(_B_VALUE_ATTRIBUTE)
    b_values = (float(recorded_b),) if recorded_b else engine_roles.b_values_in_text(description)
    image_data = node.GetImageData()
    missing = list(_HEADER_ONLY_FACTS)
    if number is None:
        missing.insert(0, "series number")
    if not b_values:
        missing.append("b-values")
    plane, in_plane, slices = "unknown", None, 0
    if image_data is None:
        missing += ["slice orientation", "pixel spacing", "slices"]
    else:
        columns = LPS_TO_RAS @ ijk_to_ras_of_node(node)[:3, :3]  # RAS -> LPS; columns: i, j, k steps in mm
        spacing = np.linalg.norm(columns, axis=0)
        plane = engine_roles.plane_of_normal(columns[:, 2])
        in_plane = (float(spacing[1]), float(spacing[0]))  # DICOM PixelSpacing order: row (j), column (i)
        slices = int(image_data.GetDimensions()[2])
    descriptor = SeriesDescriptor(
        key=node.GetID(),
        number=number,
        description=description,
        b_values=b_values,
        plane=plane,
        in_plane_mm=in_plane,
        slices=slices,
        uid=node.GetAttribute(_SERIES_UID_ATTRIBUTE) or "",
    )
    return NodeFacts(node, descriptor, f"name and geometry: {why_not_headers}", tuple(missing))


def node_facts(node, instance_file: InstanceFile | None = None) -> NodeFacts:
    """The facts the engine's role rules read about a volume node, and which of them were missing.

    Args:
        node: a scalar volume node.
        instance_file: SOPInstanceUID → file path (Slicer: ``slicer.dicomDatabase.fileForInstance``);
            ``None`` when there is no DICOM database.
    """
    if not node.GetAttribute(INSTANCE_UIDS_ATTRIBUTE):
        return _facts_from_node(node, "not loaded from DICOM")
    from_headers = _facts_from_headers(node, instance_file)
    return from_headers if isinstance(from_headers, NodeFacts) else _facts_from_node(node, from_headers)


def _given_roles(inputs: Sequence, user: Mapping[str, object]) -> dict[str, tuple[object, str]]:
    """``{role: (node, reason)}`` the user chose or a node records; the user first, then the last node recording it."""
    given = {role: (node, "chosen by the user") for role, node in user.items()}
    taken = {node.GetID() for node in user.values()}
    for node in inputs:
        role = node.GetAttribute(ROLE_ATTRIBUTE)
        if role in ROLES and role not in user and node.GetID() not in taken:
            reason = node.GetAttribute(ROLE_REASON_ATTRIBUTE) or "role recorded when LesionAI loaded the study"
            given[role] = (node, reason)
    return given


def _missing_text(missing: Sequence[str]) -> str:
    return f"; not known for this volume: {', '.join(missing)}" if missing else ""


def assign_roles(
    volume_nodes: Sequence,
    overrides: Mapping[str, object] | None = None,
    instance_file: InstanceFile | None = None,
) -> RoleAssignment:
    """Choose a volume node for each role by the engine's role rules.

    Args:
        volume_nodes: candidate scalar volume nodes (nodes LesionAI computed are ignored).
        overrides: ``{role: node}``; always wins (it must be axial, as for ``lesionai inspect``).
        instance_file: SOPInstanceUID → file path; default: Slicer's DICOM database, when there is one.

    Raises:
        LesionAIError: a role cannot be filled (the message lists the volumes seen, as the rules saw
            them), or an override is not axial.
    """
    user = {role: node for role, node in (overrides or {}).items() if node is not None}
    inputs = [n for n in volume_nodes if n is not None and not n.GetAttribute(OUTPUT_ATTRIBUTE)]
    inputs += [n for n in user.values() if all(n.GetID() != other.GetID() for other in inputs)]
    lookup = instance_file if instance_file is not None else _dicom_database_lookup()
    facts = {node.GetID(): node_facts(node, lookup) for node in inputs}
    given = _given_roles(inputs, user)
    try:
        decision = engine_roles.assign_roles(
            [f.descriptor for f in facts.values()], None, {role: node.GetID() for role, (node, _) in given.items()}
        )
    except MissingRoleError as error:
        name = ROLE_NAMES[error.role]
        raise LesionAIError(
            f"no volume looks like the {name} ({error.detail})", hint=f"choose the {name} volume explicitly"
        ) from None
    nodes, reasons, missing = {}, {}, {}
    for role, choice in decision.chosen.items():
        chosen = facts[choice.series.key]
        nodes[role], missing[role] = chosen.node, chosen.missing
        if role in given:
            reasons[role] = given[role][1]
        else:
            reasons[role] = (
                f"'{chosen.node.GetName()}' looks like the {ROLE_NAMES[role]}: {choice.reason} "
                f"(facts from {chosen.source}){_missing_text(chosen.missing)}"
            )
    return RoleAssignment(nodes, reasons, missing, facts)

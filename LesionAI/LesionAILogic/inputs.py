"""The input volumes: studies read by the engine into volume nodes, their roles, and volume nodes back into a ``Case``.

Every volume LesionAI adds carries, as node attributes, its role and why it was chosen
(:data:`~LesionAILogic.roles.ROLE_ATTRIBUTE`, :data:`~LesionAILogic.roles.ROLE_REASON_ATTRIBUTE`),
its case id and source, and the DICOM facts the engine read (:data:`DICOM_ATTRIBUTES`), so a
saved scene, the role rules and the deployment dataset see them again.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from pathlib import Path

import SimpleITK as sitk

from LesionAILib.errors import LesionAIError
from LesionAILib.studies.case import Case, SeriesSource, make_case
from LesionAILib.studies.files import open_files
from LesionAILib.studies.opening import open_case
from LesionAILib.studies.roles import ROLE_NAMES, ROLES

from . import display, volumes
from .roles import ROLE_ATTRIBUTE, ROLE_REASON_ATTRIBUTE, RoleAssignment, assign_roles

ROLE_LABELS = {"t2w": "T2", "adc": "ADC", "hbv": "high-b"}
CASE_ID_ATTRIBUTE = "LesionAI.CaseId"
SOURCE_ATTRIBUTE = "LesionAI.Source"
DICOM_ATTRIBUTES = {
    "series_number": "DICOM.SeriesNumber",
    "series_description": "DICOM.SeriesDescription",
    "series_uid": "DICOM.SeriesInstanceUID",
    "b_value": "DICOM.DiffusionBValue",
}


def _safe_case_id(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", text).strip("._") or "case"


class SceneInputs:
    """Loads studies into ``scene`` and turns volume nodes into engine cases (LPS ↔ RAS in :mod:`.volumes`)."""

    def __init__(self, scene):
        self.scene = scene

    def loadStudy(
        self,
        folder: str | Path | None = None,
        overrides: Mapping[str, str | int] | None = None,
        files: Mapping[str, str | Path] | None = None,
    ) -> dict:
        """Read a study with the engine and add its T2, ADC and high-b volumes to the scene.

        Args:
            folder: DICOM study folder (any nesting) or PI-CAI case folder.
            overrides: ``{role: series number or SeriesInstanceUID}`` (DICOM); always wins.
            files: ``{role: image file}``, replacing that role of ``folder`` (or all three without it).

        Returns:
            ``{"t2w", "adc", "hbv": vtkMRMLScalarVolumeNode}`` with exact geometry (IJKToRAS from the
            SimpleITK image after LPS→RAS), named ``"<patient> <role> (<series>: <description>)"``, and
            attributes: role and why it was chosen, DICOM series number/description/UID, b-value,
            case id and source. The ADC is in µm²/s (rescaled by the engine if stored in mm²/s).
        """
        return self._addCase(open_case(folder, overrides, files))

    def loadDeploymentCase(self, datasetFolder: str | Path, caseId: str) -> dict:
        """Add the three volumes of a case of a deployment dataset to the scene (as :meth:`loadStudy`)."""
        folder = Path(datasetFolder) / "cases" / caseId
        paths = {role: folder / f"{role}.nii.gz" for role in ROLES}
        return self._addCase(open_files(paths["t2w"], paths["adc"], paths["hbv"], patient_id=caseId))

    def _addCase(self, case: Case) -> dict:
        nodes = {}
        for role in ROLES:
            source = case.sources[role]
            series = f" ({source.series_number}: {source.series_description})" if source.series_number else ""
            attributes = {
                ROLE_REASON_ATTRIBUTE: source.reason,
                CASE_ID_ATTRIBUTE: case.case_id,
                "DICOM.PatientID": case.patient_id,
                "DICOM.StudyID": case.study_id,
                SOURCE_ATTRIBUTE: source.to_dict()["source"],
            }
            for key, attribute in DICOM_ATTRIBUTES.items():
                value = getattr(source, key)
                if value not in (None, ""):
                    attributes[attribute] = f"{value:g}" if isinstance(value, float) else str(value)
            name = f"{case.patient_id} {ROLE_LABELS[role]}{series}"
            nodes[role] = self.addVolumeFromImage(case.image(role), name, role, attributes)
        return nodes

    def addVolumeFromImage(self, image: sitk.Image, name: str, role: str | None = None, attributes=None):
        """Add a 3D SimpleITK image (LPS geometry) as a scalar volume node with exact geometry."""
        node = self.scene.AddNewNodeByClass("vtkMRMLScalarVolumeNode", name)
        volumes.set_node_from_image(node, image)
        if role:
            node.SetAttribute(ROLE_ATTRIBUTE, role)
        for key, value in (attributes or {}).items():
            node.SetAttribute(key, str(value))
        node.CreateDefaultDisplayNodes()
        node.GetScalarVolumeDisplayNode().AutoWindowLevelOn()
        return node

    def assignRoles(
        self, volumeNodes: Sequence | None = None, overrides: Mapping[str, object] | None = None
    ) -> RoleAssignment:
        """Pick T2/ADC/high-b among ``volumeNodes`` (default: every scalar volume in the scene).

        The engine's role rules decide, as for ``lesionai inspect``, on the facts of each node (its
        DICOM headers when Slicer's DICOM database has its files, else its name and geometry; see
        :mod:`LesionAILogic.roles`); ``overrides`` (``{role: node}``) win, then roles recorded by
        :meth:`loadStudy`. The chosen nodes get the role and the reason as attributes. Returns
        ``{role: node}`` (a :class:`~LesionAILogic.roles.RoleAssignment`, with ``reasons`` and the
        ``missing`` facts per role).
        """
        if volumeNodes is None:
            volumeNodes = display.nodes_of_class(self.scene, "vtkMRMLScalarVolumeNode")
            volumeNodes = [n for n in volumeNodes if n.GetClassName() == "vtkMRMLScalarVolumeNode"]
        assignment = assign_roles(volumeNodes, overrides)
        for role, node in assignment.items():
            node.SetAttribute(ROLE_ATTRIBUTE, role)
            node.SetAttribute(ROLE_REASON_ATTRIBUTE, assignment.reasons[role])
        return assignment

    def caseFromNodes(self, t2, adc, hbv) -> Case:
        """An engine :class:`~LesionAILib.studies.case.Case` from three volume nodes (exact geometry, RAS→LPS).

        Raises :class:`LesionAIError` for a missing role, the same volume in two roles, a non-scalar
        volume, or sequences that cannot belong together (e.g. an ADC far from the T2).
        """
        given = {"t2w": t2, "adc": adc, "hbv": hbv}
        missing = [ROLE_NAMES[role] for role, node in given.items() if node is None]
        if missing:
            raise LesionAIError(
                f"missing {', '.join(missing)}", hint="load a study or choose the T2, ADC and high-b volumes"
            )
        ids = {}
        for role, node in given.items():
            if node.GetID() in ids:
                raise LesionAIError(
                    f"'{node.GetName()}' is selected as both {ROLE_NAMES[ids[node.GetID()]]} and {ROLE_NAMES[role]}"
                )
            ids[node.GetID()] = role
        images, sources = {}, {}
        for role, node in given.items():
            images[role] = volumes.image_from_node(node)
            b_value = node.GetAttribute(DICOM_ATTRIBUTES["b_value"])
            number = node.GetAttribute(DICOM_ATTRIBUTES["series_number"])
            sources[role] = SeriesSource(
                role=role,
                reason=node.GetAttribute(ROLE_REASON_ATTRIBUTE) or f"Slicer volume '{node.GetName()}'",
                paths=[node.GetName()],
                series_number=int(number) if number and number.isdigit() else None,
                series_description=node.GetAttribute(DICOM_ATTRIBUTES["series_description"]) or "",
                series_uid=node.GetAttribute(DICOM_ATTRIBUTES["series_uid"]) or "",
                b_value=float(b_value) if b_value else None,
            )
        patient = t2.GetAttribute("DICOM.PatientID") or t2.GetAttribute(CASE_ID_ATTRIBUTE) or t2.GetName()
        study = t2.GetAttribute("DICOM.StudyID") or ""
        return make_case(images, patient, study, sources, None)

    def suggestedCaseId(self, t2) -> str:
        """A deployment-dataset case id for the study of ``t2`` (letters, digits, ``-``, ``_``, ``.``)."""
        return _safe_case_id(t2.GetAttribute(CASE_ID_ATTRIBUTE) or t2.GetName())

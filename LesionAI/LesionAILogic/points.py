"""Point and classify: the ProstateX-trained patch classifier at RAS points and markups control points.

A classified control point becomes a row of its T2's candidate table (id :data:`POINT_ROW_ID_BASE`
+ control point number, 1-based; no grade, volume or peak) and its description says the
probability and the model. The panel classifies in a separate process (``lesionai classify``,
:meth:`ScenePoints.startPointClassification`); scripts may classify in this process
(:meth:`ScenePoints.classifyPoint`, which loads torch).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np

from LesionAILib.jobs.runner import JobRunner
from LesionAILib.studies.roles import ROLES

from . import candidates, volumes
from .results import TABLE_REFERENCE

POINT_ROW_ID_BASE = 1000  # candidate-table ids of classified points: 1000 + control point number (1, 2, ...)


def _role_nodes(volumeNodes) -> tuple:
    """``(t2, adc, hbv)`` from ``{"t2w", "adc", "hbv": node}`` or a triple."""
    if isinstance(volumeNodes, Mapping):
        return tuple(volumeNodes.get(role) for role in ROLES)
    return tuple(volumeNodes)


class ScenePoints:
    """Classifies points of the scene's volumes and shows the probabilities in the candidate table."""

    def __init__(self, inputs, results, jobs):
        self._inputs = inputs
        self._results = results
        self._jobs = jobs
        self._classifier = None
        self._classifierKey = None
        self._extractor = None
        self._extractorKey = None

    # ------------------------------------------------------------------ in this process
    def _classifierFor(self, model):
        from LesionAILib.prostatex.classifier import bundled_classifier_path
        from LesionAILib.prostatex.point_classification import PointClassifier

        path = Path(model) if model is not None else bundled_classifier_path()
        key = (str(path), path.stat().st_mtime if path.exists() else None)
        if self._classifierKey != key:
            self._classifier, self._classifierKey = PointClassifier(path), key
        return self._classifier

    def _extractorFor(self, t2, adc, hbv):
        """A patch extractor of the three volumes, reused while their voxels and geometry stay the same."""
        from LesionAILib.prostatex.patches import PatchExtractor

        nodes = (t2, adc, hbv)
        key = None  # a missing volume: caseFromNodes says which
        if all(node is not None and node.GetImageData() is not None for node in nodes):
            key = tuple(
                (node.GetID(), node.GetImageData().GetMTime(), *np.round(volumes.ijk_to_ras_of_node(node), 6).ravel())
                for node in nodes
            )
        if key is None or self._extractorKey != key:
            self._extractor, self._extractorKey = PatchExtractor(self._inputs.caseFromNodes(*nodes)), key
        return self._extractor

    def classifyPoint(self, volumeNodes, rasPoint: Sequence[float], model: str | Path | None = None, zone=None):
        """Probability of clinically significant cancer at a RAS point (mm), from the ProstateX-trained classifier.

        Args:
            volumeNodes: ``{"t2w", "adc", "hbv": volume node}`` (as :meth:`loadStudy` returns) or ``(t2, adc, hbv)``.
            rasPoint: the point in world RAS millimetres.
            model: a patch-classifier file (default: the bundled ProstateX classifier).
            zone: ``"PZ"``, ``"TZ"``, ``"AS"``, ``"SV"`` or ``None`` (unknown: averaged over the zones).

        Returns:
            :class:`LesionAILib.prostatex.point_classification.PointClassification` (``probability``,
            ``model_name``, ``intended_use``, the ``patches`` with the point in LPS and RAS). Raises
            :class:`LesionAIError` (one line) for a missing volume or a point outside a volume.
        """
        extractor = self._extractorFor(*_role_nodes(volumeNodes))
        return self._classifierFor(model).classify(extractor, rasPoint, ras=True, zone=zone)

    def classifyControlPoint(self, volumeNodes, markupsNode, index: int, model: str | Path | None = None, zone=None):
        """Classify control point ``index`` of ``markupsNode`` (its world position) and show it in the candidate table.

        The T2's candidate table (created if the T2 has not been analysed) gets a row with id
        ``POINT_ROW_ID_BASE + index + 1`` (replaced when the point is classified again): the probability,
        the point in RAS and the model name; the control point's description becomes the probability and
        the model. Returns the :meth:`classifyPoint` result.
        """
        position = [0.0, 0.0, 0.0]
        markupsNode.GetNthControlPointPositionWorld(index, position)
        result = self.classifyPoint(volumeNodes, position, model, zone)
        t2 = _role_nodes(volumeNodes)[0]
        self._showPoint(t2, markupsNode, index, result.probability, position, result.model_name)
        return result

    def putPointInTable(self, t2, rowId: int, probability: float, rasPoint: Sequence[float], modelName: str) -> None:
        """Add or replace row ``rowId`` of ``t2``'s candidate table for a classified point (no grade, volume, peak)."""
        table = self._results.referenced(t2, TABLE_REFERENCE, "vtkMRMLTableNode", f"{t2.GetName()} LesionAI candidates")
        if table.GetTable().GetColumnByName("id") is None:
            candidates.fill_table(table, [], modelName)
        candidates.set_row(table, candidates.point_row(rowId, probability, rasPoint, modelName))

    def _showPoint(self, t2, markupsNode, index: int, probability: float, rasPoint, modelName: str) -> None:
        self.putPointInTable(t2, POINT_ROW_ID_BASE + index + 1, probability, rasPoint, modelName)
        markupsNode.SetNthControlPointDescription(index, f"p = {probability:.2f} ({modelName})")

    # ------------------------------------------------------------------ in a separate process
    def startPointClassification(
        self,
        volumeNodes,
        markupsNode,
        model: str | Path | None = None,
        zone: str | None = None,
        device: str = "cpu",
        python: str | None = None,
    ) -> JobRunner | None:
        """``lesionai classify`` of every placed control point of ``markupsNode`` in a separate process.

        Returns the started job (``None`` when no point is placed); when it has finished,
        :meth:`putPointClassifications` shows its probabilities. The volumes are checked and written
        to the job's folder first (errors raise here).
        """
        indices = [
            index
            for index in range(markupsNode.GetNumberOfControlPoints())
            if markupsNode.GetNthControlPointPositionStatus(index) == markupsNode.PositionDefined
        ]
        if not indices:
            return None
        nodes = _role_nodes(volumeNodes)
        case = self._inputs.caseFromNodes(*nodes)
        arguments = ["--ras", "--out", "patches", "--device", device]
        for index in indices:
            position = [0.0, 0.0, 0.0]
            markupsNode.GetNthControlPointPositionWorld(index, position)
            arguments.append("--point=" + ",".join(repr(float(v)) for v in position))
        if model is not None:
            arguments += ["--model", str(model)]
        if zone is not None:
            arguments += ["--zone", zone]
        context = {"t2": nodes[0], "markups": markupsNode, "indices": indices}
        return self._jobs.start("classify", arguments, python, case=case, context=context)

    def putPointClassifications(self, job: JobRunner) -> list[dict]:
        """Show a finished :meth:`startPointClassification` job in the candidate table and on its control points.

        Returns one dict per point (``label``, ``probability``, ``model``, ``intended_use``, ``point_ras_mm``, ...).
        """
        context, scored = job.context, job.state.result["points"]
        markups = context["markups"]
        for index, point in zip(context["indices"], scored, strict=True):
            self._showPoint(context["t2"], markups, index, point["probability"], point["point_ras_mm"], point["model"])
            point["label"] = markups.GetNthControlPointLabel(index)
        return scored

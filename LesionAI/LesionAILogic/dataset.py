"""The site's deployment dataset from the scene: annotate a T2 with graded lesions, save the case, pick the next one.

Lesion segments and their grades are handled by :mod:`LesionAILogic.annotation`; the dataset on
disk by :mod:`LesionAILib.adaptation.deployment` (loaded on use: it needs torch).
"""

from __future__ import annotations

import logging
from pathlib import Path

from LesionAILib.errors import LesionAIError
from LesionAILib.geometry import Grid
from LesionAILib.studies.roles import ROLES

from . import annotation, candidates
from .inputs import SOURCE_ATTRIBUTE
from .results import ANNOTATION_REFERENCE, CANDIDATES_REFERENCE

log = logging.getLogger(__name__)


class SceneDataset:
    """Annotation segmentations in ``scene`` and the deployment dataset they are saved to."""

    def __init__(self, scene, inputs, models):
        self.scene = scene
        self._inputs = inputs
        self._models = models

    def createAnnotation(self, t2, prefillFromCandidates: bool = False):
        """A segmentation node on ``t2``'s geometry for outlining lesions (one segment per lesion).

        With ``prefillFromCandidates``, every candidate outline of ``t2``'s last analysis becomes a
        lesion with the predicted grade pre-filled (tagged as model-proposed until confirmed).
        """
        node = self.scene.AddNewNodeByClass(
            "vtkMRMLSegmentationNode", self.scene.GenerateUniqueName(f"{t2.GetName()} lesions")
        )
        node.SetReferenceImageGeometryParameterFromVolumeNode(t2)
        node.SetAttribute("LesionAI.Annotation", "1")
        t2.SetNodeReferenceID(ANNOTATION_REFERENCE, node.GetID())
        node.CreateDefaultDisplayNodes()
        if prefillFromCandidates:
            source = t2.GetNodeReference(CANDIDATES_REFERENCE)
            if source is None:
                raise LesionAIError(f"'{t2.GetName()}' has not been analysed", hint="press Analyze first")
            annotation.copy_candidates(node, source)
        return node

    def addLesion(self, segmentationNode, gradeGroup: int | None = None) -> str:
        """Add an empty lesion segment (to paint); returns its segment id."""
        return annotation.add_lesion(segmentationNode, gradeGroup)

    def setLesionGrade(self, segmentationNode, segmentId: str, gradeGroup: int | None, zone: str | None = None):
        """Set a lesion's ISUP grade group (0–5, ``None`` clears it) and optionally its zone."""
        annotation.set_grade(segmentationNode, segmentId, gradeGroup, zone)

    def lesionGrades(self, segmentationNode) -> list[dict]:
        """``[{"segmentId", "name", "gradeGroup" (or None), "proposedByModel"}]`` in segment order."""
        segmentation = segmentationNode.GetSegmentation()
        rows = []
        for index in range(segmentation.GetNumberOfSegments()):
            segment = segmentation.GetNthSegment(index)
            rows.append(
                {
                    "segmentId": segmentation.GetNthSegmentID(index),
                    "name": segment.GetName(),
                    "gradeGroup": annotation.grade_of(segment),
                    "proposedByModel": candidates.segment_tag(segment, annotation.GRADE_SOURCE_TAG) == "model",
                }
            )
        return rows

    def saveAnnotatedCase(
        self, datasetFolder: str | Path, caseId: str, t2, adc, hbv, segmentationNode, annotator: str = ""
    ) -> Path:
        """Write the case and its lesions into a deployment dataset (atomically; replaces that case).

        Each non-empty segment of ``segmentationNode`` is one lesion and must carry a grade group;
        the lesion mask is exported on exactly the T2 grid. ``segmentationNode=None`` adds the case
        unannotated (to the pool that :meth:`nextCaseToAnnotate` orders). Returns the case folder.
        """
        from LesionAILib.adaptation.deployment import save_case

        case = self._inputs.caseFromNodes(t2, adc, hbv)
        mask_image, lesions = None, None
        if segmentationNode is not None:
            mask, lesions, skipped = annotation.lesion_mask(segmentationNode, t2)
            if skipped:
                log.info("not saved (nothing painted): %s", ", ".join(skipped))
            mask_image = Grid.from_image(case.t2w).image_from_array(mask)
        sources = {
            role: node.GetAttribute(SOURCE_ATTRIBUTE) or node.GetName()
            for role, node in zip(ROLES, (t2, adc, hbv), strict=True)
        }
        folder = save_case(
            datasetFolder,
            caseId,
            dict(zip(ROLES, (case.t2w, case.adc, case.hbv), strict=True)),
            mask_image,
            lesions,
            annotator,
            sources,
        )
        if segmentationNode is not None:
            segmentationNode.SetAttribute("LesionAI.SavedTo", str(folder))
        return folder

    def datasetSummary(self, datasetFolder: str | Path) -> dict:
        """Counts of a deployment dataset (cases, annotated, unannotated, lesions, csPCa lesions) and its problems."""
        from LesionAILib.adaptation.deployment import read_deployment

        dataset = read_deployment(datasetFolder)
        return {**dataset.summary(), "problem_list": list(dataset.problems)}

    def nextCaseToAnnotate(
        self, poolFolder: str | Path, model: str | Path | None = None, device: str = "auto", samples: int = 8
    ) -> str | None:
        """The unannotated case of a deployment dataset the model is least sure about (``None`` if none left).

        Runs in this process (loads torch); the panel uses :meth:`startNextCaseSearch` instead.
        """
        from LesionAILib.adaptation.deployment import read_deployment
        from LesionAILib.adaptation.ordering import order_by_uncertainty

        pool = read_deployment(poolFolder).unannotated
        if not pool:
            return None
        ordered = order_by_uncertainty(self._models.analyzerFor(model, device), [c.record() for c in pool], samples)
        return ordered[0].case_id

"""The prostate gland in the scene: the segment "Prostate gland" of a T2 node, with its volume and PSA density.

The gland is computed out of the Slicer process (the panel never runs a network in Slicer):
:meth:`SceneGland.startGlandSegmentation` runs ``lesionai gland --t2w <T2> --out gland`` as a job,
and once it has finished :meth:`SceneGland.loadGlandJobResult` (or :meth:`SceneGland.loadGland` on
any ``lesionai gland`` folder, or an ``analyze --gland`` result folder) puts the mask into a
segmentation node the T2 node references (:data:`GLAND_REFERENCE`). The segment carries the
volume, the PSA and the PSA density as tags, so a saved scene shows them again; :meth:`setPsa`
recomputes the density when the user types a PSA value.
"""

from __future__ import annotations

import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import SimpleITK as sitk
import slicer

from LesionAILib.geometry import Grid
from LesionAILib.gland.outputs import GLAND_COLOR, GLAND_SEGMENT_NAME, mask_on_grid, psa_density, read_gland_folder

from . import display, volumes
from .candidates import segment_tag

GLAND_REFERENCE = "LesionAI.Gland"  # node reference from the T2 volume to its gland segmentation
GLAND_FOLDER = "gland"  # the `lesionai gland --out` folder inside a gland job's folder
VOLUME_TAG = "LesionAI.GlandVolumeMl"
PSA_TAG = "LesionAI.PsaNgMl"
PSA_DENSITY_TAG = "LesionAI.PsaDensityNgMl2"
MODEL_TAG = "LesionAI.GlandModel"
WARNINGS_TAG = "LesionAI.GlandWarnings"  # one warning per line


@dataclass
class SceneGlandSegment:
    """The gland of a T2 node in the scene.

    Attributes:
        segmentationNode: the segmentation node (referenced by the T2 node as :data:`GLAND_REFERENCE`).
        segmentId: the "Prostate gland" segment.
        volumeMl: gland volume; psaNgMl: serum PSA (``None`` until given); psaDensityNgMl2: PSA / volume.
        modelName: the gland model; warnings: its quality findings, one line each (show them to the user).
    """

    segmentationNode: object
    segmentId: str
    volumeMl: float
    psaNgMl: float | None
    psaDensityNgMl2: float | None
    modelName: str
    warnings: list[str] = field(default_factory=list)


def _optional_float(text: str | None) -> float | None:
    return None if text in (None, "") else float(text)


class SceneGland:
    """Gland jobs and gland segments of T2 nodes (no Qt; runs in Slicer and on slicer-core).

    Args:
        scene: the MRML scene.
        jobs: a :class:`~LesionAILogic.jobs.SceneJobs` (for :meth:`startGlandSegmentation`); ``None`` if unused.
    """

    def __init__(self, scene, jobs=None):
        self.scene = scene
        self._jobs = jobs

    # ------------------------------------------------------------------ the job
    def startGlandSegmentation(self, t2, psa: float | None = None, device: str = "auto", python: str | None = None):
        """Run ``lesionai gland`` on the T2 node in a separate process (returns the job at once).

        The T2 is written to a temporary folder first; poll the returned job and, once it has finished,
        call :meth:`loadGlandJobResult` on the main thread (it also removes that folder).
        """
        inputs = Path(tempfile.mkdtemp(prefix="LesionAI-gland-input-"))
        t2_file = inputs / "t2w.nrrd"
        sitk.WriteImage(volumes.image_from_node(t2), str(t2_file), False)
        arguments = ["--t2w", str(t2_file), "--out", GLAND_FOLDER, "--device", device, "--no-figure"]
        if psa is not None:
            arguments += ["--psa", f"{float(psa):g}"]
        return self._jobs.start("gland", arguments, python, context={"inputs": str(inputs)})

    def loadGlandJobResult(self, job, t2, psa: float | None = None) -> SceneGlandSegment:
        """Load a finished gland job's folder onto ``t2`` (see :meth:`loadGland`) and remove its input copy."""
        context = job.context if isinstance(job.context, dict) else {}
        try:
            return self.loadGland(Path(job.work_folder) / GLAND_FOLDER, t2, psa)
        finally:
            if context.get("inputs"):
                shutil.rmtree(context["inputs"], ignore_errors=True)

    # ------------------------------------------------------------------ the segment
    def loadGland(self, folder: str | Path, t2, psa: float | None = None) -> SceneGlandSegment:
        """Put the gland of a ``lesionai gland`` folder (or ``analyze --gland`` result folder) onto ``t2``.

        The mask must lie on the T2 node's grid (a quarter voxel); it then takes the node's exact
        geometry. ``psa`` (ng/ml) replaces the PSA stored in the folder. Replaces an earlier gland of ``t2``.
        """
        stored = read_gland_folder(folder)
        t2_image = volumes.image_from_node(t2)
        mask = mask_on_grid(stored.mask, Grid.from_image(t2_image))
        node = self._segmentation_of(t2)
        segment_id = self._put_mask(node, mask, t2)
        segment = node.GetSegmentation().GetSegment(segment_id)
        segment.SetTag(VOLUME_TAG, f"{stored.volume_ml:.4f}")
        segment.SetTag(MODEL_TAG, stored.model_name)
        segment.SetTag(WARNINGS_TAG, "\n".join(stored.warnings))
        self._set_psa_tags(segment, stored.volume_ml, stored.psa_ng_ml if psa is None else psa)
        display.outline_segmentation(node)
        return self.glandOf(t2)

    def setPsa(self, t2, psa: float | None) -> float | None:
        """Set (``None``: clear) the PSA in ng/ml of ``t2``'s gland; returns the new PSA density (ng/ml per ml)."""
        gland = self.glandOf(t2)
        if gland is None:
            return None
        segment = gland.segmentationNode.GetSegmentation().GetSegment(gland.segmentId)
        return self._set_psa_tags(segment, gland.volumeMl, psa)

    def glandOf(self, t2) -> SceneGlandSegment | None:
        """The gland segment of ``t2`` with its numbers (from the segment's tags), or ``None`` if it has none."""
        node = t2.GetNodeReference(GLAND_REFERENCE)
        if node is None:
            return None
        segmentation = node.GetSegmentation()
        segment_id = segmentation.GetSegmentIdBySegmentName(GLAND_SEGMENT_NAME)
        if not segment_id:
            return None
        segment = segmentation.GetSegment(segment_id)
        warnings = segment_tag(segment, WARNINGS_TAG) or ""
        return SceneGlandSegment(
            segmentationNode=node,
            segmentId=segment_id,
            volumeMl=float(segment_tag(segment, VOLUME_TAG) or 0.0),
            psaNgMl=_optional_float(segment_tag(segment, PSA_TAG)),
            psaDensityNgMl2=_optional_float(segment_tag(segment, PSA_DENSITY_TAG)),
            modelName=segment_tag(segment, MODEL_TAG) or "",
            warnings=[line for line in warnings.split("\n") if line],
        )

    # ------------------------------------------------------------------ helpers
    def _segmentation_of(self, t2):
        node = t2.GetNodeReference(GLAND_REFERENCE)
        if node is None or node.GetScene() is not self.scene:
            name = self.scene.GenerateUniqueName(f"{t2.GetName()} prostate gland")
            node = self.scene.AddNewNodeByClass("vtkMRMLSegmentationNode", name)
            t2.SetNodeReferenceID(GLAND_REFERENCE, node.GetID())
        return node

    def _put_mask(self, node, mask: np.ndarray, t2) -> str:
        """Replace the segments of ``node`` by one "Prostate gland" segment holding ``mask`` ([K, J, I] on ``t2``)."""
        labels = self.scene.AddNewNodeByClass("vtkMRMLLabelMapVolumeNode", "LesionAI gland labels (temporary)")
        try:
            volumes.set_node_from_array(labels, mask.astype(np.uint8), t2)
            segmentation = node.GetSegmentation()
            disabled = node.StartModify()
            segmentation.RemoveAllSegments()
            node.SetReferenceImageGeometryParameterFromVolumeNode(t2)
            if mask.any():
                slicer.vtkSlicerSegmentationsModuleLogic.ImportLabelmapToSegmentationNode(labels, node)
                segment_id = segmentation.GetNthSegmentID(0)
                segmentation.GetSegment(segment_id).SetName(GLAND_SEGMENT_NAME)
            else:  # no gland found: an empty segment still carries the warning and the model
                segment_id = segmentation.AddEmptySegment("", GLAND_SEGMENT_NAME)
            segmentation.GetSegment(segment_id).SetColor(*GLAND_COLOR)
            node.EndModify(disabled)
        finally:
            self.scene.RemoveNode(labels)
        return segment_id

    @staticmethod
    def _set_psa_tags(segment, volume_ml: float, psa: float | None) -> float | None:
        density = psa_density(psa, volume_ml)
        segment.SetTag(PSA_TAG, "" if psa is None else f"{float(psa):g}")
        segment.SetTag(PSA_DENSITY_TAG, "" if density is None else f"{density:.5f}")
        return density

"""The abnormality map (synthesis) as a layer of the reading views, its value at a point, and the box viewer job.

The layer sits *beside* the heatmap: every slice view keeps T2/ADC/high-b as background and the
heatmap as foreground, and shows the T2's abnormality node (:mod:`LesionAILogic.abnormality`, its own
colour map, z below 3 transparent) in the first additional layer of its composite node
(:data:`ABNORMALITY_LAYER`, Slicer ≥ 5.10's ``SetNthLayerVolumeID``) with its own opacity.

Coordinates: points are RAS mm (the scene's frame); the ``lesionai synthesis-view`` job the viewer
runs is given them with ``--at-ras`` and converts to the engine's LPS (``L = -R, P = -A, S = S``).

In Slicer::

    logic.loadAbnormalityMap("out/case", t2)          # a `lesionai analyze --abnormality` folder
    logic.showAbnormality(t2, visible=True, opacity=0.5)
    logic.abnormalityAt(t2, (-25.7, -31.9, -38.5))      # robust z at a RAS point (mm), None outside
    job = logic.startSynthesisView(volumes, logic.cursorPosition(), "synthesis.safetensors")
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import slicer

from LesionAILib.jobs.runner import JobRunner

from . import volumes
from .abnormality import ABNORMALITY_FILE, ABNORMALITY_REFERENCE, load_abnormality
from .display import nodes_of_class

# vtkMRMLSliceCompositeNode.Layer_Last: the first layer above background (0), foreground (1) and label (2)
ABNORMALITY_LAYER = 3
RESULT_FOLDER_ATTRIBUTE = "LesionAI.ResultFolder"  # on the abnormality node: the folder it was loaded from
SYNTHESIS_VIEW_PNG = "synthesis-view.png"  # in the viewer job's folder


class SceneAbnormality:
    """Loads, shows and reads the abnormality map of a T2 node; starts the box viewer job."""

    def __init__(self, scene, inputs, jobs):
        self.scene = scene
        self._inputs = inputs
        self._jobs = jobs

    def loadAbnormalityMap(self, resultFolder: str | Path, t2):
        """Load ``abnormality.nii.gz`` of ``resultFolder`` onto ``t2`` (exactly its grid) and return the node.

        Raises :class:`LesionAIError` (one line) when the folder has no map or the map is not on ``t2``'s grid.
        """
        node = load_abnormality(resultFolder, t2)
        node.SetAttribute(RESULT_FOLDER_ATTRIBUTE, str(Path(resultFolder).resolve()))
        return node

    def hasAbnormalityMap(self, resultFolder: str | Path | None) -> bool:
        """``resultFolder`` holds an abnormality map (``lesionai analyze --abnormality`` wrote it)."""
        return resultFolder is not None and (Path(resultFolder) / ABNORMALITY_FILE).is_file()

    def abnormalityNode(self, t2):
        """The abnormality volume node of ``t2`` (``None`` when it has none in this scene)."""
        node = t2.GetNodeReference(ABNORMALITY_REFERENCE) if t2 is not None else None
        return node if node is not None and node.GetScene() is self.scene else None

    def removeAbnormalityMap(self, t2) -> None:
        """Remove ``t2``'s abnormality node (a newer analysis without a map: the old one would be stale)."""
        node = self.abnormalityNode(t2)
        if node is not None:
            self.showAbnormality(t2, False)
            self.scene.RemoveNode(node)

    def showAbnormality(self, t2, visible: bool = True, opacity: float = 0.5) -> bool:
        """Show (or hide) ``t2``'s abnormality map in every slice view at ``opacity`` (0–1), beside the heatmap.

        Returns whether a map is shown (False when hidden or ``t2`` has none).
        """
        node = self.abnormalityNode(t2)
        shown = bool(visible) and node is not None
        for composite in nodes_of_class(self.scene, "vtkMRMLSliceCompositeNode"):
            wanted = node.GetID() if shown else None
            if composite.GetNthLayerVolumeID(ABNORMALITY_LAYER) != wanted:
                composite.SetNthLayerVolumeID(ABNORMALITY_LAYER, wanted)
            if shown and composite.GetNthLayerOpacity(ABNORMALITY_LAYER) != float(opacity):
                composite.SetNthLayerOpacity(ABNORMALITY_LAYER, float(opacity))
        return shown

    def abnormalityAt(self, t2, rasPoint: Sequence[float]) -> float | None:
        """The abnormality (robust z against normal tissue, 0 outside the analysed region) of ``t2``'s map at the
        voxel nearest to ``rasPoint`` (RAS mm); ``None`` when there is no map or the point is outside it."""
        node = self.abnormalityNode(t2)
        if node is None:
            return None
        ras_to_ijk = np.linalg.inv(volumes.ijk_to_ras_of_node(node))
        ijk = ras_to_ijk @ np.array([*(float(v) for v in rasPoint), 1.0])
        k, j, i = (int(round(v)) for v in ijk[2::-1])
        values = slicer.util.arrayFromVolume(node)  # [K, J, I]
        if not all(0 <= index < size for index, size in zip((k, j, i), values.shape, strict=True)):
            return None
        return float(values[k, j, i])

    def cursorPosition(self) -> tuple[float, float, float] | None:
        """The crosshair's position (RAS mm; Shift+move places it in Slicer), ``None`` without a crosshair node."""
        crosshairs = nodes_of_class(self.scene, "vtkMRMLCrosshairNode")
        if not crosshairs:
            return None
        return tuple(float(v) for v in crosshairs[0].GetCrosshairRAS())

    def startSynthesisView(
        self,
        volumeNodes: dict,
        rasPoint: Sequence[float],
        model: str | Path,
        device: str = "cpu",
        python: str | None = None,
    ) -> JobRunner:
        """``lesionai synthesis-view`` at ``rasPoint`` (RAS mm) in a separate process (returns at once).

        ``volumeNodes``: ``{"t2w", "adc", "hbv": node}``; ``model``: a synthesis model file. When the job has
        finished, :meth:`synthesisViewPng` is the four-panel PNG and ``job.state.result`` has the box's
        ``difference`` per sequence, ``point_lps_mm``/``point_ras_mm`` and the model.
        """
        case = self._inputs.caseFromNodes(volumeNodes["t2w"], volumeNodes["adc"], volumeNodes["hbv"])
        arguments = ["--model", str(model), "--at-ras", *(repr(float(v)) for v in rasPoint)]
        arguments += ["--out", SYNTHESIS_VIEW_PNG, "--device", device]
        return self._jobs.start("synthesis-view", arguments, python, case=case, context=tuple(rasPoint))

    def synthesisViewPng(self, job: JobRunner) -> Path | None:
        """The PNG a finished :meth:`startSynthesisView` job wrote (``None`` when it wrote none)."""
        path = job.work_folder / SYNTHESIS_VIEW_PNG
        return path if path.is_file() else None

"""Abnormality analysis of a case: the synthesis model over the prostate region → map in T2 geometry and candidates.

>>> from LesionAILib.synthesis.analysis import AbnormalityAnalyzer
>>> result = AbnormalityAnalyzer("synthesis.safetensors").analyze(case, gland=gland_mask)   # mask on the T2 grid
>>> result.abnormality            # SimpleITK float32 image, exactly the T2 series' grid: combined robust z
>>> result.candidates             # peaks of the map (PI-CAI dynamic extraction), peak = z / 10 clipped to 1

The map is the combined robust z-score (:mod:`LesionAILib.synthesis.normalisation`) inside the region
and 0 outside it; ``sequence_maps`` hold the per-sequence z-scores. Candidates come from the same
extraction as the detector's (:func:`~LesionAILib.inference.candidates.extract_candidates`,
:func:`~LesionAILib.inference.candidate_regions.candidate_map_in_t2`) on the [0, 1]-scaled map.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import SimpleITK as sitk
import torch

from LesionAILib.devices import resolve_device
from LesionAILib.errors import ModelFileError
from LesionAILib.inference.candidate_regions import candidate_map_in_t2
from LesionAILib.inference.candidates import Candidate, extract_candidates
from LesionAILib.preprocessing.pipeline import to_t2_grid
from LesionAILib.studies.case import Case
from LesionAILib.synthesis.mapping import BoxSynthesis, discrepancy_map, synthesise_boxes
from LesionAILib.synthesis.masking import MaskBox
from LesionAILib.synthesis.model_file import SynthesisMetadata, load_synthesis_model
from LesionAILib.synthesis.network import InpaintingNet
from LesionAILib.synthesis.normalisation import candidate_scale
from LesionAILib.synthesis.volumes import SynthesisVolume, synthesis_volume


@dataclass
class AbnormalityResult:
    """The abnormality analysis of one case (images in the T2 series' geometry, LPS mm).

    Attributes:
        abnormality: combined robust z (float32), 0 outside the analysed region.
        sequence_maps: per role, that sequence's robust z (float32).
        candidate_map: uint8 labels of ``candidates`` (value = candidate id).
        candidates: peaks of the map, highest first; ``probability`` = ``peak`` = z / 10 clipped to [0, 1].
        views: per candidate, the hidden box at its centre: incomplete / synthesised / real crops.
        region_source: what the region was (the gland mask, or the FOV-centre fallback).
        volume: the case on the synthesis grid (for figures).
        map_description: what ``abnormality`` holds (written into ``abnormality.json``).
    """

    case_id: str
    model_name: str
    model_notice: str
    abnormality: sitk.Image
    sequence_maps: dict[str, sitk.Image]
    candidate_map: sitk.Image
    candidates: list[Candidate]
    views: list[BoxSynthesis]
    region_source: str
    boxes: int
    timings: dict[str, float] = field(default_factory=dict)
    volume: SynthesisVolume | None = field(default=None, repr=False)
    map_description: str = "combined robust z-score of |real − synthesised| against normal tissue; 0 outside the region"


class AbnormalityAnalyzer:
    """Runs a synthesis model on cases. ``model``: a file path or a loaded ``(InpaintingNet, SynthesisMetadata)``."""

    def __init__(
        self,
        model: str | Path | tuple[InpaintingNet, SynthesisMetadata],
        device: str | torch.device = "auto",
        max_candidates: int = 5,
    ):
        self.device = resolve_device(device)
        if isinstance(model, (str, Path)):
            self.net, self.metadata = load_synthesis_model(model, self.device)
        else:
            self.net, self.metadata = model[0].to(self.device).eval(), model[1]
        if self.metadata.preprocess is None or self.net.config.dimensions != 3:
            raise ModelFileError(
                "this synthesis model works on 2D ProstateX patches, not on whole studies",
                model if isinstance(model, (str, Path)) else self.metadata.name,
                "train a 3D model with `lesionai train-synthesis`",
            )
        self.max_candidates = max_candidates

    def map_volume(self, volume: SynthesisVolume) -> tuple[np.ndarray, np.ndarray, int]:
        """(combined z [Z, Y, X] inside the region, per-sequence z [C, Z, Y, X], boxes) on the synthesis grid."""
        masks = self.metadata.mask_settings
        discrepancy = discrepancy_map(self.net, volume.image, volume.region, volume.grid.spacing, masks, self.device)
        statistics = self.metadata.normal_tissue
        combined = np.where(volume.region, discrepancy.combined(statistics), 0.0).astype(np.float32)
        return combined, discrepancy.zscores(statistics), discrepancy.boxes

    def view_at(self, volume: SynthesisVolume, centre_index: tuple[float, ...]) -> BoxSynthesis:
        """The hidden box centred (as near as the volume allows) on a synthesis-grid voxel: what FIG 7 shows."""
        size = self.metadata.mask_settings.size
        shape = volume.image.shape[1:]
        start = tuple(
            int(min(max(round(c - (n - 1) / 2.0), 0), s - n)) for c, n, s in zip(centre_index, size, shape, strict=True)
        )
        box = MaskBox(start, tuple(size))
        return synthesise_boxes(self.net, volume.image, [box], self.metadata.mask_settings, self.device)[0]

    def analyze(self, case: Case, gland: sitk.Image | None = None) -> AbnormalityResult:
        """The abnormality map of ``case`` over ``gland`` (mask on the T2 grid; ``None``: FOV-centre ellipsoid)."""
        clock = time.perf_counter()
        volume = synthesis_volume(case, gland, self.metadata.preprocess)
        prepared = time.perf_counter()
        combined, zscores, boxes = self.map_volume(volume)
        mapped = time.perf_counter()
        candidates, labels = extract_candidates(
            candidate_scale(combined), volume.grid, max_candidates=self.max_candidates
        )
        for candidate in candidates:
            candidate.score_model = self.metadata.display_name
        views = [self.view_at(volume, c.center_index) for c in candidates]
        regions = candidate_map_in_t2(labels, candidates, volume.grid, volume.t2_grid)
        kept = {id(c) for c in regions.candidates}
        views = [v for v, c in zip(views, candidates, strict=True) if id(c) in kept]
        t2 = volume.t2_grid
        result = AbnormalityResult(
            case_id=case.case_id,
            model_name=self.metadata.display_name,
            model_notice=self.metadata.notice,
            abnormality=to_t2_grid(combined, volume.grid, t2, "linear"),
            sequence_maps={r: to_t2_grid(zscores[i], volume.grid, t2, "linear") for i, r in enumerate(volume.roles)},
            candidate_map=t2.image_from_array(regions.labels.astype(np.uint8)),
            candidates=regions.candidates,
            views=views,
            region_source=volume.region_source,
            boxes=boxes,
            volume=volume,
        )
        result.timings = {
            "preprocess": prepared - clock,
            "synthesis": mapped - prepared,
            "candidates": time.perf_counter() - mapped,
        }
        return result

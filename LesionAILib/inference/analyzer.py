"""Analyze a case: preprocess → localization maps → candidates → classification → results in T2 geometry.

>>> from LesionAILib.inference.analyzer import Analyzer
>>> from LesionAILib.studies.opening import open_case
>>> result = Analyzer().analyze(open_case("ProstateX-0000"))   # bundled demo model, CUDA if available
>>> result.case_score, [c.center_ras_mm for c in result.candidates]

With ``patch_classifier=True`` (or a classifier file) each candidate is rescored by the
ProstateX-trained patch classifier (:mod:`LesionAILib.prostatex.point_classification`) at its centre: its
``probability`` and ``score_model`` then come from that classifier, the detector's own
probability is kept in ``detector_probability``, and the grade group stays the detector's.

The :class:`Result` holds the combined heatmap, the per-sequence heatmaps and the detection and
candidate maps resampled back into the **original T2 geometry** (exactly the T2 series' size,
spacing, origin and direction), the candidate table and the case score (highest candidate
probability), plus per-stage timings.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from contextlib import nullcontext
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import SimpleITK as sitk
import torch

from LesionAILib.devices import resolve_device
from LesionAILib.errors import StudyError
from LesionAILib.inference.candidate_regions import candidate_map_in_t2
from LesionAILib.inference.candidates import Candidate, detection_map, extract_candidates, renumber
from LesionAILib.inference.tta import MIRROR_TTA, NO_TTA, Augmentation, augmented_batch, undo_augmentations
from LesionAILib.models.bundled import bundled_model_path
from LesionAILib.models.modelfile import DEMO_NOTICE, ModelMetadata, load_model
from LesionAILib.models.networks import LesionModel
from LesionAILib.preprocessing.crops import crop_tensor
from LesionAILib.preprocessing.pipeline import Preprocessed, preprocess, to_t2_grid
from LesionAILib.prostatex.patches import PatchExtractor
from LesionAILib.prostatex.point_classification import PointClassifier
from LesionAILib.studies.case import Case

if TYPE_CHECKING:  # the gland is made by the caller (LesionAILib.gland); only its mask is used here
    from LesionAILib.gland.confinement import GlandConfinement


@dataclass
class Result:
    """What analysis produced for one case. Images are in the original T2 geometry (LPS)."""

    case_id: str
    model_name: str
    model_notice: str
    heatmap: sitk.Image
    sequence_heatmaps: dict[str, sitk.Image]
    detection_map: sitk.Image
    candidate_map: sitk.Image
    candidates: list[Candidate]
    case_score: float
    device: str
    timings: dict[str, float] = field(default_factory=dict)
    model_grid: dict = field(default_factory=dict)
    classifier_name: str = ""
    classifier_notice: str = ""
    warnings: list[str] = field(default_factory=list)
    gland: GlandConfinement | None = None
    interpolation: str = "linear"

    def to_dict(self) -> dict:
        classifier = {"classifier": self.classifier_name, "classifier_notice": self.classifier_notice}
        return {
            "case_id": self.case_id,
            "model": self.model_name,
            "notice": self.model_notice,
            **(classifier if self.classifier_name else {}),
            "case_score": round(float(self.case_score), 4),
            "candidates": [c.to_dict() for c in self.candidates],
            "device": self.device,
            "timings_s": {k: round(v, 4) for k, v in self.timings.items()},
            "model_grid": self.model_grid,
            "preprocessing": {"interpolation": self.interpolation},
            "coordinates": "center_lps_mm: DICOM/ITK patient LPS; center_ras_mm: 3D Slicer RAS",
            "warnings": list(self.warnings),
            "gland": None if self.gland is None else self.gland.to_dict(),
        }


class Analyzer:
    """Runs a LesionAI model on cases.

    Args:
        model: a model file path, a loaded ``(LesionModel, ModelMetadata)`` pair, or ``None`` for
            the bundled demo model.
        device: ``"auto"`` (CUDA when available), ``"cpu"`` or ``"cuda"``.
        tta: test-time augmentation (average with the left-right mirrored prediction,
            :data:`~LesionAILib.inference.tta.MIRROR_TTA`).
        max_candidates: at most this many candidates per case.
        patch_classifier: rescore the candidates with a patch classifier: ``True`` for the bundled
            ProstateX-trained one, a classifier file, or a :class:`PointClassifier`; ``None``/``False``
            keeps the detector's probabilities.
        interpolation: how images are resampled into the model grid, ``"linear"`` or ``"bspline"``
            (:attr:`~LesionAILib.preprocessing.pipeline.PreprocessConfig.interpolation`); ``None``
            keeps the model's own (the one it was trained with).
    """

    def __init__(
        self,
        model: str | Path | tuple[LesionModel, ModelMetadata] | None = None,
        device: str | torch.device = "auto",
        tta: bool = False,
        max_candidates: int = 5,
        patch_classifier: bool | str | Path | PointClassifier | None = None,
        interpolation: str | None = None,
    ):
        self.device = resolve_device(device)
        if model is None or isinstance(model, (str, Path)):
            self.model, self.metadata = load_model(model or bundled_model_path(), self.device)
        else:
            self.model, self.metadata = model
            self.model = self.model.to(self.device).eval()
        if interpolation is not None:  # every caller preprocesses with metadata.preprocess: set it there
            preprocessing = replace(self.metadata.preprocess, interpolation=interpolation)
            self.metadata = replace(self.metadata, preprocess=preprocessing)
        self.tta = tta
        self.max_candidates = max_candidates
        if patch_classifier is None or patch_classifier is False or isinstance(patch_classifier, PointClassifier):
            self.point_classifier = patch_classifier or None
        else:
            self.point_classifier = PointClassifier(None if patch_classifier is True else patch_classifier)

    @property
    def notice(self) -> str:
        return DEMO_NOTICE if self.metadata.synthetic_training_data else self.metadata.intended_use

    def _autocast(self):
        if self.device.type == "cuda":
            return torch.autocast("cuda", dtype=torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16)
        return nullcontext()

    @torch.no_grad()
    def localize_augmented(
        self, images: torch.Tensor, augmentations: Sequence[Augmentation]
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """[C, Z, Y, X] preprocessed images → the maps of each of ``T`` test-time augmentations,
        undone (:mod:`LesionAILib.inference.tta`): combined [T, Z, Y, X] and per-sequence [T, C, Z, Y, X].

        The per-sequence maps are empty (size 0) for a plain U-Net model.
        """
        with self._autocast():
            output = self.model(augmented_batch(images, augmentations))
        combined = output["combined"][:, 0].float()
        sequences = output["sequence_maps"]
        sequences = combined[:, :0] if sequences is None else sequences.float()  # plain U-Net: none
        return undo_augmentations(combined, augmentations), undo_augmentations(sequences, augmentations)

    def localize(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """[C, Z, Y, X] preprocessed images → (combined [Z, Y, X], per-sequence [C, Z, Y, X]) maps,
        averaged over the test-time augmentations when ``tta``."""
        combined, sequences = self.localize_augmented(images, MIRROR_TTA if self.tta else NO_TTA)
        return combined.mean(0), sequences.mean(0)

    @torch.no_grad()
    def classify(self, images: torch.Tensor, combined: torch.Tensor, candidates: Sequence[Candidate]) -> None:
        """Fill each candidate's probability and grade from the classification network (in place)."""
        if not candidates:
            return
        if self.model.classifier is None:
            for candidate in candidates:
                candidate.score_model = f"{self.metadata.name} (localization peak)"
            return
        stacked = torch.cat([images, combined[None]], 0)
        crop = self.model.classifier.config.crop
        crops = torch.stack([crop_tensor(stacked, c.center_index, crop) for c in candidates])
        with self._autocast():
            output = self.model.classify(crops)
        probabilities = torch.sigmoid(output["logit"].float()).cpu().numpy()
        grades = torch.softmax(output["grade_logits"].float(), 1).cpu().numpy()
        for candidate, probability, grade in zip(candidates, probabilities, grades, strict=True):
            candidate.probability = float(probability)
            candidate.grade_probabilities = grade.tolist()
            candidate.grade_group = int(np.argmax(grade))
            candidate.score_model = self.metadata.name

    def rescore_with_patch_classifier(self, case: Case, candidates: list[Candidate]) -> None:
        """Replace each candidate's probability by the patch classifier's at its centre (in place, re-sorted).

        The detector's probability moves to ``detector_probability``. A candidate whose patches would
        leave a volume keeps the detector's probability, and its ``score_model`` says why.
        """
        if not candidates:
            return
        extractor = PatchExtractor(case)
        for candidate in candidates:
            try:
                patches = extractor.extract(candidate.center_lps_mm)
            except StudyError:
                candidate.score_model = f"{candidate.score_model} (outside the patch classifier's volumes)"
                continue
            (scored,) = self.point_classifier.classify_patches([patches], [candidate.zone])
            candidate.detector_probability = candidate.probability
            candidate.probability = scored.probability
            candidate.score_model = scored.model_name
        candidates.sort(key=lambda c: -c.probability)

    def analyze_prepared(
        self, prepared: Preprocessed, step: Callable[[str], None] | None = None
    ) -> tuple[torch.Tensor, torch.Tensor, list[Candidate], np.ndarray]:
        """Model-grid analysis of a preprocessed case.

        Returns (combined map [Z, Y, X] and per-sequence maps [C, Z, Y, X] as tensors on the
        device, candidates sorted by probability, candidate label map [Z, Y, X] numpy), all on the
        model grid. ``step(stage)`` is called after each stage (for timings).
        """
        step = step or (lambda stage: None)
        images = prepared.image.to(self.device)
        combined, sequences = self.localize(images)
        step("localization")
        # a candidate must lie where the T2 series has voxels: elsewhere the map is extrapolated from
        # the other sequences and no reader could see (or outline) what it points at
        on_t2 = combined.cpu().numpy() * prepared.fov[0].cpu().numpy()
        candidates, labels = extract_candidates(on_t2, prepared.grid, max_candidates=self.max_candidates)
        step("candidates")
        self.classify(images, combined, candidates)
        candidates.sort(key=lambda c: -c.probability)
        labels = renumber(candidates, labels)  # candidate 1 is the most probable
        step("classification")
        return combined, sequences, candidates, labels

    def analyze(
        self,
        case: Case,
        center_lps: Sequence[float] | None = None,
        progress: Callable[[str, float], None] | None = None,
        gland: GlandConfinement | None = None,
    ) -> Result:
        """Analyze one case (see module docstring). ``progress(stage, fraction)`` is called between stages.

        With ``gland`` (a mask on the T2 grid) the model grid is centred on the gland's centroid (unless
        ``center_lps`` is given) and each candidate is flagged ``in_gland``; those outside stay in the
        table and candidate map, while the detection map and the case score count only those inside.
        """
        if gland is not None and center_lps is None:
            center_lps = gland.centroid_lps_mm
        timings: dict[str, float] = {}
        fractions = {
            "preprocess": 0.25,
            "localization": 0.5,
            "candidates": 0.65,
            "classification": 0.8,
            "patch_classifier": 0.9,
            "resample_to_t2": 1.0,
        }
        clock = [time.perf_counter()]

        def step(stage: str) -> None:
            if self.device.type == "cuda":
                torch.cuda.synchronize()
            now = time.perf_counter()
            timings[stage] = now - clock[0]
            clock[0] = now
            if progress:
                progress(stage, fractions[stage])

        prepared = preprocess(case, self.metadata.preprocess, center_lps=center_lps, device=self.device)
        step("preprocess")
        combined, sequences, candidates, labels = self.analyze_prepared(prepared, step)
        if self.point_classifier is not None:
            self.rescore_with_patch_classifier(case, candidates)
            step("patch_classifier")
        heatmap = to_t2_grid(combined, prepared.grid, prepared.t2_grid, "linear")
        sequence_maps = {
            role: to_t2_grid(sequences[i], prepared.grid, prepared.t2_grid, "linear")
            for i, role in enumerate(prepared.roles[: sequences.shape[0]])
        }
        regions = candidate_map_in_t2(labels, candidates, prepared.grid, prepared.t2_grid)
        candidates = regions.candidates
        candidate_map = prepared.t2_grid.image_from_array(regions.labels.astype(np.uint8))
        if gland is not None:
            gland.flag(candidates)
        counted = [c for c in candidates if c.in_gland is not False]
        detection = prepared.t2_grid.image_from_array(detection_map(regions.labels, counted))
        step("resample_to_t2")
        timings["total"] = sum(timings.values())
        return Result(
            case_id=case.case_id,
            model_name=self.metadata.display_name,
            model_notice=self.notice,
            heatmap=heatmap,
            sequence_heatmaps=sequence_maps,
            detection_map=detection,
            candidate_map=candidate_map,
            candidates=candidates,
            case_score=max((c.probability for c in counted), default=0.0),
            device=str(self.device),
            timings=timings,
            model_grid=prepared.grid.to_dict(),
            interpolation=self.metadata.preprocess.interpolation,
            classifier_name=self.point_classifier.name if self.point_classifier else "",
            classifier_notice=self.point_classifier.metadata.intended_use if self.point_classifier else "",
            warnings=regions.dropped,
            gland=gland,
        )

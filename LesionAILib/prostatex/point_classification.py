"""Point and classify: the probability of clinically significant cancer at a point of a study.

>>> from LesionAILib.prostatex.point_classification import PointClassifier
>>> classifier = PointClassifier()                                   # the bundled ProstateX classifier
>>> result = classifier.classify(open_case("ProstateX-0000"), (25.7457, 31.8707, -38.511), zone="PZ")
>>> result.probability, result.model_name

The patches are made as the ProstateX findings dataset made them (:mod:`LesionAILib.prostatex.patches`) and
scored by a :class:`~LesionAILib.prostatex.classifier.PatchClassifier`. Without a zone the probability
is averaged over PZ, TZ and AS, weighted by their frequency among the training findings.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import SimpleITK as sitk
import torch

from LesionAILib.devices import resolve_device
from LesionAILib.errors import ConfigError
from LesionAILib.prostatex.classifier import (
    ZONES,
    ClassifierMetadata,
    PatchClassifier,
    PatchInputs,
    load_classifier,
)
from LesionAILib.prostatex.patches import FindingPatches, PatchExtractor
from LesionAILib.studies.case import Case

ACCEPTED_ZONES = (*ZONES, "SV")


@dataclass
class PointClassification:
    """The classifier's answer for one point.

    Attributes:
        probability: clinically significant cancer, 0–1.
        model_name: which model produced it; ``intended_use`` its notice.
        zone: the zone given (``None``: unknown, marginalised over PZ/TZ/AS).
        patches: the patches it saw (images, localization maps, windows; point in LPS and RAS).
    """

    probability: float
    model_name: str
    intended_use: str
    zone: str | None
    patches: FindingPatches

    def to_dict(self) -> dict:
        return {
            "probability": round(float(self.probability), 4),
            "model": self.model_name,
            "intended_use": self.intended_use,
            "zone": self.zone or "unknown (averaged over PZ/TZ/AS by their training frequency)",
            **self.patches.to_dict(),
            "coordinates": "point_lps_mm: DICOM/ITK patient LPS; point_ras_mm: 3D Slicer RAS",
        }


def _checked_zone(zone: str | None) -> str | None:
    if zone is None or zone == "":
        return None
    if zone.upper() not in ACCEPTED_ZONES:
        raise ConfigError(f"unknown prostate zone {zone!r}", hint=f"use one of {', '.join(ACCEPTED_ZONES)} or omit it")
    return zone.upper()


class PointClassifier:
    """Scores points of studies with a patch classifier.

    Args:
        model: a patch-classifier model file, a loaded ``(PatchClassifier, ClassifierMetadata)``
            pair, or ``None`` for the bundled ProstateX-trained classifier.
        device: ``"cpu"`` (default; the network is tiny), ``"cuda"`` or ``"auto"``.
    """

    def __init__(
        self,
        model: str | Path | tuple[PatchClassifier, ClassifierMetadata] | None = None,
        device: str | torch.device = "cpu",
    ):
        self.device = resolve_device(device)
        if model is None or isinstance(model, (str, Path)):
            self.classifier, self.metadata = load_classifier(model, self.device)
        else:
            classifier, self.metadata = model
            self.classifier = classifier.to(self.device).eval()

    @property
    def name(self) -> str:
        return self.metadata.display_name

    def classify_patches(
        self, patches: Sequence[FindingPatches], zones: Sequence[str | None]
    ) -> list[PointClassification]:
        """Score already extracted patches (one zone or ``None`` per finding)."""
        zones = [_checked_zone(zone) for zone in zones]
        if not patches:
            return []
        probabilities = self.classifier.probabilities(PatchInputs.from_patches(patches, zones), zones)
        return [
            PointClassification(float(p), self.name, self.metadata.intended_use, zone, finding)
            for p, zone, finding in zip(probabilities, zones, patches, strict=True)
        ]

    def classify_points(
        self,
        extractor: PatchExtractor,
        points_lps: Sequence[Sequence[float]],
        zones: Sequence[str | None] | None = None,
        heatmap: sitk.Image | None = None,
    ) -> list[PointClassification]:
        """Score several LPS points of one case (its volumes equalised once by ``extractor``)."""
        patches = [extractor.extract(point, heatmap=heatmap) for point in points_lps]
        return self.classify_patches(patches, zones if zones is not None else [None] * len(patches))

    def classify(
        self,
        case: Case | PatchExtractor,
        point: Sequence[float],
        ras: bool = False,
        zone: str | None = None,
        heatmap: sitk.Image | None = None,
    ) -> PointClassification:
        """Probability at ``point`` (mm; LPS, or RAS with ``ras=True``) of a case.

        Raises :class:`~LesionAILib.errors.StudyError` (one line) for a point outside a volume.
        """
        extractor = case if isinstance(case, PatchExtractor) else PatchExtractor(case)
        patches = extractor.extract(point, ras=ras, heatmap=heatmap)
        return self.classify_patches([patches], [zone])[0]

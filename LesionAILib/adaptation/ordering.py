"""Order cases by similarity to a reference dataset, or by the model's uncertainty.

**Similarity** (multi-site training). Each case gets a descriptor: the pretrained localization
encoder's bottleneck features pooled over the model grid (mean and max, per sequence for the
``per_sequence`` variant, fused otherwise) plus simple acquisition statistics — per sequence the
5th/25th/50th/75th/95th intensity percentiles inside the body (raw scanner values, log-scaled
for T2 and high-b, µm²/s × 10⁻³ for ADC), the voxel spacing of each series, and a noise level
(median absolute difference between neighbouring voxels in air). Descriptors are standardised
with the reference dataset's mean and standard deviation; a case's similarity is minus its mean
Euclidean distance to its ``k`` nearest reference cases (k = 5). Why k-nearest rather than a
Mahalanobis distance to the reference mean: a site is often several scanners or protocols (a
multi-modal distribution), and with tens of cases and hundreds of features a full covariance
cannot be estimated; the nearest-neighbour distance needs neither.

**Uncertainty** (deployment optimisation, active learning). Per case, with the components kept:

* ``mc_dropout``: Monte-Carlo dropout — the localization network is run ``samples`` times with its
  dropout active; the per-voxel standard deviation of the combined map, averaged over the
  voxels where the mean map exceeds 0.1 (or over the top 1 % of the mean map if none),
* ``tta``: the same standard deviation over the test-time augmentations the Analyzer uses
  (:data:`~LesionAILib.inference.tta.UNCERTAINTY_TTA`: identity, left-right mirror, 1-voxel
  shifts in-plane),
* ``entropy``: the largest binary entropy (bits) of the candidates' csPCa probabilities,
* ``score`` = mean(2 · mc_dropout, 2 · tta, entropy) — each term lies in [0, 1] (a [0, 1]-valued
  map has a standard deviation of at most 0.5).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np
import SimpleITK as sitk
import torch

from LesionAILib.inference.analyzer import Analyzer
from LesionAILib.inference.candidates import extract_candidates
from LesionAILib.inference.tta import UNCERTAINTY_TTA
from LesionAILib.preprocessing.pipeline import Preprocessed, preprocess
from LesionAILib.studies.case import Case
from LesionAILib.training.cohorts import CaseRecord


@dataclass
class OrderedCase:
    """A case's place in an ordering: higher ``score`` comes first."""

    case_id: str
    score: float
    components: dict[str, float] = field(default_factory=dict)

    def to_dict(self) -> dict:
        return {
            "case": self.case_id,
            "score": round(float(self.score), 6),
            **{k: round(float(v), 6) for k, v in self.components.items()},
        }


def _open(item: Case | CaseRecord) -> Case:
    return item.open() if isinstance(item, CaseRecord) else item


# --------------------------------------------------------------------------- uncertainty
def _enable_dropout(module: torch.nn.Module, enabled: bool) -> None:
    for child in module.modules():
        if isinstance(child, (torch.nn.Dropout, torch.nn.Dropout3d)):
            child.train(enabled)


def _map_spread(maps: torch.Tensor) -> float:
    """Mean per-voxel std of [S, Z, Y, X] maps over the region the mean map marks."""
    mean, std = maps.mean(0), maps.std(0)
    region = mean > 0.1
    if int(region.sum()) < 10:
        region = mean >= torch.quantile(mean.flatten().float(), 0.99)
    return float(std[region].mean())


@torch.no_grad()
def case_uncertainty(analyzer: Analyzer, prepared: Preprocessed, samples: int = 8, seed: int = 0) -> dict[str, float]:
    """The uncertainty components and score of one preprocessed case (see module docstring)."""
    model, images = analyzer.model, prepared.image.to(analyzer.device)
    torch.manual_seed(seed)
    _enable_dropout(model, True)
    try:
        mc = torch.stack([model(images[None])["combined"][0, 0].float() for _ in range(samples)])
    finally:
        _enable_dropout(model, False)
    tta, _ = analyzer.localize_augmented(images, UNCERTAINTY_TTA)
    combined = tta.mean(0)
    candidates, _ = extract_candidates(combined.cpu().numpy(), prepared.grid, max_candidates=analyzer.max_candidates)
    analyzer.classify(images, combined, candidates)
    probabilities = np.clip([c.probability for c in candidates], 1e-6, 1 - 1e-6)
    entropy = (
        float(np.max(-(probabilities * np.log2(probabilities) + (1 - probabilities) * np.log2(1 - probabilities))))
        if len(candidates)
        else 0.0
    )
    components = {"mc_dropout": _map_spread(mc), "tta": _map_spread(tta), "entropy": entropy}
    components["score"] = float(np.mean([2 * components["mc_dropout"], 2 * components["tta"], entropy]))
    return components


def order_by_uncertainty(
    analyzer: Analyzer,
    cases: Sequence[Case | CaseRecord],
    samples: int = 8,
    progress: Callable[[int, int], None] | None = None,
) -> list[OrderedCase]:
    """Cases sorted by decreasing uncertainty (most uncertain first)."""
    ordered = []
    for index, item in enumerate(cases):
        case = _open(item)
        prepared = preprocess(case, analyzer.metadata.preprocess, device=analyzer.device)
        components = case_uncertainty(analyzer, prepared, samples)
        ordered.append(OrderedCase(item.case_id, components.pop("score"), components))
        if progress:
            progress(index + 1, len(cases))
    return sorted(ordered, key=lambda item: (-item.score, item.case_id))


# --------------------------------------------------------------------------- similarity
def _noise_level(array: np.ndarray) -> float:
    """Median absolute difference of neighbouring voxels in the darkest 20 % (air/background)."""
    values = array.astype(np.float32)
    dark = values <= np.percentile(values, 20)
    differences = np.abs(np.diff(values, axis=-1))[dark[..., 1:]]
    return float(np.median(differences)) if differences.size else 0.0


def acquisition_statistics(case: Case) -> np.ndarray:
    """Intensity percentiles inside the body, spacings and noise level of the three series."""
    features = []
    for role in ("t2w", "adc", "hbv"):
        image = case.image(role)
        array = sitk.GetArrayViewFromImage(image).astype(np.float32)
        body = array > np.percentile(array, 30)
        values = array[body] if body.any() else array.ravel()
        percentiles = np.percentile(values, [5, 25, 50, 75, 95])
        scaled = percentiles / 1000.0 if role == "adc" else np.log1p(np.maximum(percentiles, 0))
        noise = _noise_level(array)
        features += [*scaled, *image.GetSpacing(), np.log1p(noise) if role != "adc" else noise / 1000.0]
    return np.asarray(features, np.float64)


@torch.no_grad()
def case_descriptor(analyzer: Analyzer, case: Case) -> np.ndarray:
    """Encoder features (pooled over the model grid) followed by :func:`acquisition_statistics`."""
    prepared = preprocess(case, analyzer.metadata.preprocess, device=analyzer.device)
    encoded = analyzer.model.localizer.encode_pooled(prepared.image.to(analyzer.device)[None])[0].float().cpu().numpy()
    return np.concatenate([encoded, acquisition_statistics(case)])


def descriptors(
    analyzer: Analyzer, cases: Sequence[Case | CaseRecord], progress: Callable[[int, int], None] | None = None
) -> np.ndarray:
    """[N, D] descriptors of ``cases``."""
    rows = []
    for index, item in enumerate(cases):
        rows.append(case_descriptor(analyzer, _open(item)))
        if progress:
            progress(index + 1, len(cases))
    return np.stack(rows)


def similarity_scores(reference: np.ndarray, candidates: np.ndarray, k: int = 5) -> np.ndarray:
    """Minus the mean distance of each candidate row to its ``k`` nearest reference rows (standardised)."""
    mean = reference.mean(0)
    std = reference.std(0)
    std[std < 1e-8] = 1.0
    ref = (reference - mean) / std
    other = (candidates - mean) / std
    distances = np.sqrt(((other[:, None, :] - ref[None, :, :]) ** 2).sum(-1))
    k = min(k, len(ref))
    nearest = np.sort(distances, axis=1)[:, :k]
    return -nearest.mean(1)


def order_by_similarity(
    analyzer: Analyzer,
    reference: Sequence[Case | CaseRecord],
    cases: Sequence[Case | CaseRecord],
    k: int = 5,
    progress: Callable[[int, int], None] | None = None,
) -> list[OrderedCase]:
    """``cases`` sorted by decreasing similarity to ``reference`` (most similar first)."""
    total = len(reference) + len(cases)

    def offset(start: int):
        return (lambda done, _: progress(start + done, total)) if progress else None

    reference_rows = descriptors(analyzer, reference, offset(0))
    case_rows = descriptors(analyzer, cases, offset(len(reference)))
    scores = similarity_scores(reference_rows, case_rows, k)
    ordered = [
        OrderedCase(item.case_id, float(score), {"distance": float(-score)})
        for item, score in zip(cases, scores, strict=True)
    ]
    return sorted(ordered, key=lambda item: (-item.score, item.case_id))

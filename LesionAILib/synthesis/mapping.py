"""The abnormality map of one volume: slide the hidden box over the region, synthesise, compare, normalise.

For every box of :func:`~LesionAILib.synthesis.masking.sliding_boxes` over the region, the network
sees a context crop around it (:attr:`MaskSettings.context` voxels) with the box hidden and
synthesises all sequences inside it. Per voxel and sequence the **signed** difference real −
synthesised is averaged over every box covering the voxel, smoothed in-plane by a Gaussian of
:attr:`MaskSettings.smoothing_mm` (averaging signed differences cancels acquisition noise, which
the network cannot and should not predict, while a lesion's consistent offset survives), and its
absolute value is the discrepancy. Discrepancies become robust z-scores against normal tissue
(:mod:`LesionAILib.synthesis.normalisation`) and are combined across sequences.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
from scipy import ndimage

from LesionAILib.dataclass_dicts import DictSerialisable
from LesionAILib.synthesis.masking import MaskBox, aggregate_boxes, sliding_boxes
from LesionAILib.synthesis.network import InpaintingNet
from LesionAILib.synthesis.normalisation import NormalTissueStatistics, combine


@dataclass(frozen=True)
class MaskSettings(DictSerialisable):
    """The sliding masks at analysis time (voxels of the synthesis grid, Z, Y, X; stored in the model file).

    ``size`` 4 × 16 × 16 voxels is 12 × 16 × 16 mm at 3 × 1 × 1 mm, about a typical lesion; ``stride``
    half of it, so each voxel is synthesised from 8 different contexts; ``context`` the crop the
    network sees around a box; ``smoothing_mm`` the in-plane Gaussian σ on the aggregated differences.
    """

    size: tuple[int, ...] = (4, 16, 16)
    stride: tuple[int, ...] = (2, 8, 8)
    context: tuple[int, ...] = (8, 32, 32)
    smoothing_mm: float = 1.5
    batch: int = 32


@dataclass
class BoxSynthesis:
    """One hidden box and its context crop: [C, *context] arrays, ``hidden`` bool [*context]; ``box`` in voxels."""

    box: MaskBox
    crop_start: tuple[int, ...]
    real: np.ndarray
    synthesised: np.ndarray
    hidden: np.ndarray

    @property
    def incomplete(self) -> np.ndarray:
        """The image the network was given: the real crop with the hidden box blanked (NaN)."""
        return np.where(self.hidden, np.nan, self.real)


@dataclass
class DiscrepancyMap:
    """Per-voxel discrepancies of one volume ([Z, Y, X] on its grid; channels in the volume's role order).

    Attributes:
        discrepancy: [C, Z, Y, X] float32 |smoothed mean(real − synthesised)|, 0 where no box covered.
        coverage: [Z, Y, X] int32, boxes covering each voxel.
        boxes: how many boxes were synthesised.
    """

    discrepancy: np.ndarray
    coverage: np.ndarray
    boxes: int

    def zscores(self, statistics: NormalTissueStatistics) -> np.ndarray:
        """[C, Z, Y, X] robust z-scores against normal tissue, 0 where no box covered."""
        return np.where(self.coverage > 0, statistics.zscores(self.discrepancy), 0.0).astype(np.float32)

    def combined(self, statistics: NormalTissueStatistics) -> np.ndarray:
        """[Z, Y, X] joint abnormality (mean z over sequences), 0 where no box covered."""
        return np.where(self.coverage > 0, combine(self.zscores(statistics)), 0.0).astype(np.float32)


def context_start(box: MaskBox, context: Sequence[int], shape: Sequence[int]) -> tuple[int, ...]:
    """Start of the context crop centred on ``box``, moved inside a volume of ``shape``."""
    return tuple(
        int(min(max(round(c - (n - 1) / 2.0), 0), length - n))
        for c, n, length in zip(box.centre, context, shape, strict=True)
    )


def _smoothed_where_covered(values: np.ndarray, covered: np.ndarray, sigma: Sequence[float]) -> np.ndarray:
    """Gaussian smoothing of [C, *S] ``values`` that ignores uncovered voxels (normalised convolution)."""
    weight = ndimage.gaussian_filter(covered.astype(np.float64), sigma)
    smoothed = [ndimage.gaussian_filter(channel * covered, sigma) for channel in values]
    return np.stack(smoothed) / np.maximum(weight, 1e-6)


@torch.no_grad()
def synthesise_boxes(
    net: InpaintingNet, image: np.ndarray, boxes: Sequence[MaskBox], settings: MaskSettings, device: torch.device
) -> list[BoxSynthesis]:
    """Synthesise each box from its context crop (batches of ``settings.batch``); ``image`` [C, *S] float32."""
    shape, context = image.shape[1:], tuple(min(c, n) for c, n in zip(settings.context, image.shape[1:], strict=True))
    results = []
    for first in range(0, len(boxes), settings.batch):
        chunk = boxes[first : first + settings.batch]
        starts = [context_start(box, context, shape) for box in chunk]
        crops = np.stack(
            [image[(slice(None), *(slice(s, s + n) for s, n in zip(st, context, strict=True)))] for st in starts]
        )
        hidden = np.zeros((len(chunk), 1, *context), np.float32)
        for index, (box, start) in enumerate(zip(chunk, starts, strict=True)):
            inner = tuple(slice(b - s, b - s + n) for b, s, n in zip(box.start, start, box.size, strict=True))
            hidden[(index, 0, *inner)] = 1.0
        images = torch.from_numpy(crops).to(device)
        masks = torch.from_numpy(hidden).to(device)
        synthesised = net(images, masks).float().cpu().numpy()
        for index, (box, start) in enumerate(zip(chunk, starts, strict=True)):
            results.append(BoxSynthesis(box, start, crops[index], synthesised[index], hidden[index, 0] > 0.5))
    return results


def discrepancy_map(
    net: InpaintingNet,
    image: np.ndarray,
    region: np.ndarray,
    spacing_mm: Sequence[float],
    settings: MaskSettings,
    device: torch.device | str = "cpu",
) -> DiscrepancyMap:
    """Discrepancies of ``image`` [C, *S] over ``region`` [*S] bool (see module docstring); spacing in mm per axis."""
    device = torch.device(device)
    boxes = sliding_boxes(region, settings.size, settings.stride)
    differences = []
    for result in synthesise_boxes(net, image, boxes, settings, device):
        inner = tuple(
            slice(b - s, b - s + n)
            for b, s, n in zip(result.box.start, result.crop_start, result.box.size, strict=True)
        )
        differences.append((result.real - result.synthesised)[(slice(None), *inner)])
    mean, coverage = aggregate_boxes(differences, boxes, region.shape)
    # in-plane smoothing only: the last two axes (Y, X); 3 mm slices are already thick
    sigma = [0.0] * (region.ndim - 2) + [settings.smoothing_mm / s for s in spacing_mm[-2:]]
    smoothed = _smoothed_where_covered(mean, coverage > 0, sigma) if settings.smoothing_mm else mean
    discrepancy = np.where(coverage > 0, np.abs(smoothed), 0.0).astype(np.float32)
    return DiscrepancyMap(discrepancy, coverage, len(boxes))

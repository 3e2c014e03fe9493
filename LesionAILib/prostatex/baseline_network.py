"""The single-network baseline of the ProstateX benchmark: one CNN on a spatially consistent T2/ADC/high-b stack.

What it is built to isolate: the shipped classifier (:mod:`LesionAILib.prostatex.classifier`) is
an ensemble of five multi-scale networks whose views see the ADC and high-b over 32 and 64 mm. This
baseline is one network, trained with the same recipe (class-weighted BCE with label smoothing,
shift / intensity / mirror augmentation, AdamW with a one-cycle schedule, epochs chosen by the same
inner cross-validation: :mod:`LesionAILib.prostatex.classifier_training`), on inputs where every
channel shows the same tissue: the ADC and high-b patches resampled onto the T2 patch's pixels
(:func:`~LesionAILib.prostatex.localization_maps.aligned_channels`: 16 mm field of view, where all
three sequences exist), 2 × 2 average-pooled to 1 mm, plus the zone one-hot.

>>> inputs = stacked_inputs(findings.inputs)              # once, before any augmentation
>>> net = StackedPatchNet(PatchClassifierConfig())
>>> net(inputs.images, inputs.localization, inputs.zone).shape
torch.Size([305])
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from LesionAILib.prostatex.classifier import ZONES, PatchClassifierConfig, PatchInputs
from LesionAILib.prostatex.localization_maps import aligned_channels


def stacked_inputs(inputs: PatchInputs) -> PatchInputs:
    """The baseline's inputs: images [N, 3, 32, 32] all on the T2 patch's pixels, no localization map."""
    return PatchInputs(aligned_channels(inputs.images), torch.zeros_like(inputs.localization), inputs.zone)


class StackedPatchNet(nn.Module):
    """[N, 3, 32, 32] aligned T2 / ADC / high-b and zone → logit [N] (≈ 40 k parameters at width 16;
    one member of the shipped ensemble has ≈ 49 k).

    Two 3 × 3 convolutions per level (BN, ReLU) at 16, 8 and 4 pixels of 1, 2 and 4 mm, global
    average and max pooling, zone one-hot, a dropout MLP head (``config.hidden``, ``config.dropout``).
    """

    def __init__(self, config: PatchClassifierConfig):
        super().__init__()
        width = config.width

        def block(a: int, b: int) -> list[nn.Module]:
            return [nn.Conv2d(a, b, 3, padding=1, bias=False), nn.BatchNorm2d(b), nn.ReLU(inplace=True)]

        self.features = nn.Sequential(
            *block(3, width),
            *block(width, width),
            nn.MaxPool2d(2),
            *block(width, 2 * width),
            *block(2 * width, 2 * width),
            nn.MaxPool2d(2),
            *block(2 * width, 4 * width),
        )
        self.head = nn.Sequential(
            nn.Dropout(config.dropout),
            nn.Linear(8 * width + len(ZONES), config.hidden),
            nn.ReLU(inplace=True),
            nn.Dropout(config.dropout),
            nn.Linear(config.hidden, 1),
        )

    def forward(self, images: torch.Tensor, localization: torch.Tensor, zone: torch.Tensor) -> torch.Tensor:
        """Logit [N]; ``localization`` is accepted for the shared training loop and not used."""
        features = self.features(F.avg_pool2d(images - 0.5, 2))
        pooled = torch.cat([features.mean((2, 3)), features.amax((2, 3))], 1)
        return self.head(torch.cat([pooled, zone], 1)).squeeze(1)

"""The training losses: phase-1 localization (heatmap regression or segmentation) and phase-2 classification."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from LesionAILib.training.config import Phase1Config
from LesionAILib.training.targets import CSPCA_THRESHOLD


def localization_loss(output: dict, target: torch.Tensor, cspca: torch.Tensor, config: Phase1Config) -> torch.Tensor:
    """Phase-1 loss. ``target`` [N, Z, Y, X] heatmap, ``cspca`` [N, Z, Y, X] 0/1 mask."""
    combined = output["combined"].float()
    mask = cspca.float()[:, None]
    if config.objective == "segmentation":
        probability = combined.clamp(1e-6, 1 - 1e-6)
        loss = F.binary_cross_entropy(probability, mask, weight=1.0 + config.positive_weight * mask)
        return loss + _soft_dice_loss(combined[:, 0], mask[:, 0])
    target = target[:, None]
    weight = 1.0 + config.positive_weight * (target > 0.01).float()
    loss = (weight * (combined - target) ** 2).mean()
    if config.sequence_weight > 0 and output.get("sequence_maps") is not None:
        sequences = output["sequence_maps"].float()
        loss = loss + config.sequence_weight * (weight * (sequences - target) ** 2).mean()
    if config.dice_weight > 0:
        # soft "map ≥ csPCa level" indicator against the csPCa mask
        loss = loss + config.dice_weight * _soft_dice_loss(
            (combined[:, 0] / (CSPCA_THRESHOLD + 0.1)).clamp(0, 1), mask[:, 0]
        )
    if output.get("case_logit") is not None and config.case_weight > 0:
        has_cspca = (cspca.flatten(1).amax(1) > 0).float()
        loss = loss + config.case_weight * F.binary_cross_entropy_with_logits(output["case_logit"].float(), has_cspca)
    return loss


def _soft_dice_loss(probability: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """1 − soft Dice per sample (smoothed so empty masks and empty predictions agree), averaged."""
    intersection = (probability * mask).sum(dim=(1, 2, 3))
    denominator = probability.sum(dim=(1, 2, 3)) + mask.sum(dim=(1, 2, 3))
    return (1 - (2 * intersection + 1.0) / (denominator + 1.0)).mean()


def classification_loss(output: dict, cspca: torch.Tensor, grade: torch.Tensor, grade_weight: float) -> torch.Tensor:
    """Binary cross-entropy on csPCa plus ``grade_weight`` × cross-entropy over grade groups."""
    loss = F.binary_cross_entropy_with_logits(output["logit"].float(), cspca.float())
    if grade_weight > 0:
        loss = loss + grade_weight * F.cross_entropy(output["grade_logits"].float(), grade)
    return loss

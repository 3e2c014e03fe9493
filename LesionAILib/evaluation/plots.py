"""FROC and case-level ROC plots of an evaluation result, drawn from picai_eval's curves."""

from __future__ import annotations

import math
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np

from LesionAILib.evaluation.metrics import FP_PER_CASE, EvaluationResult
from LesionAILib.rendering import save_figure


def write_plots(result: EvaluationResult, plots_dir: str | Path) -> dict[str, Path]:
    """Write ``froc.png`` (log FP axis, 0.25–2 FP per case shaded) and ``roc.png`` (case level)."""
    plots_dir = Path(plots_dir)
    caption = f"{result.num_cases} cases, {result.num_lesions} lesions; hit = IoU >= {result.min_overlap:g}"

    figure, axis = plt.subplots(figsize=(6.4, 4.8), facecolor="white")
    finite = [
        value
        for _, group in result.groups()
        if group.num_lesions
        for value in np.asarray(group.picai_metrics.lesion_FPR)
        if 0 < value < math.inf
    ]
    left = min([0.05, *(value / 2 for value in finite)])
    right = max([10.0, *(value * 1.5 for value in finite)])
    axis.axvspan(FP_PER_CASE[0], FP_PER_CASE[-1], color="tab:green", alpha=0.12, label="0.25–2 FP per case")
    for name, group in result.groups():
        if not group.num_lesions:
            continue
        # sensitivity is 0 until the first threshold's false positives; infinity is drawn at the right edge
        false_positives = np.clip(np.asarray(group.picai_metrics.lesion_FPR, dtype=np.float64), left, right)
        false_positives = np.concatenate([[left], false_positives])
        sensitivity = np.concatenate([[0.0], np.asarray(group.picai_metrics.lesion_TPR, dtype=np.float64)])
        (line,) = axis.plot(
            false_positives, sensitivity, drawstyle="steps-post", label=name, lw=2 if name == "all" else 1
        )
        points = [(x, s) for x, s in group.froc_sensitivity.items() if s is not None]
        axis.plot(*zip(*points, strict=True), "o", color=line.get_color(), ms=4 if name == "all" else 3)
    if not result.num_lesions:
        axis.text(0.5, 0.5, "no lesions: FROC undefined", transform=axis.transAxes, ha="center")
    axis.set(xscale="log", xlim=(left, right), ylim=(0, 1.02), xlabel="false positives per case")
    axis.set(ylabel="lesion-level sensitivity", title=f"FROC ({caption})")
    axis.grid(True, which="both", alpha=0.3)
    axis.legend(loc="lower right", fontsize=8)
    froc_path = save_figure(figure, plots_dir / "froc.png")

    figure, axis = plt.subplots(figsize=(5.2, 5.2), facecolor="white")
    axis.plot([0, 1], [0, 1], ":", color="grey", lw=1)
    for name, group in result.groups():
        if group.auroc is None:
            continue
        metrics = group.picai_metrics
        axis.plot(metrics.case_FPR, metrics.case_TPR, label=f"{name} (AUROC {group.auroc:.3f})")
    if result.auroc is None:
        axis.text(0.5, 0.5, "AUROC undefined: need positive and negative cases", transform=axis.transAxes, ha="center")
    axis.set(xlim=(0, 1), ylim=(0, 1.02), xlabel="1 - specificity (cases)", ylabel="sensitivity (cases)")
    axis.set(title=f"case-level ROC ({result.num_cases} cases)")
    axis.grid(True, alpha=0.3)
    if result.auroc is not None:
        axis.legend(loc="lower right", fontsize=8)
    roc_path = save_figure(figure, plots_dir / "roc.png")
    return {"froc": froc_path, "roc": roc_path}

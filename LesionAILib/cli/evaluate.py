"""``lesionai evaluate``: lesion- and case-level metrics of detection maps against labels (picai-eval)."""

from __future__ import annotations

import argparse

from LesionAILib.cli import options


def register(commands: argparse._SubParsersAction) -> None:
    evaluate = options.add_command(
        commands,
        "evaluate",
        run_evaluate,
        help="lesion- and case-level metrics (PI-CAI definitions, via picai-eval)",
        description="Pair detection maps and labels by file stem (.nii.gz/.nii/.mha/.nrrd), check their "
        "geometry, and report AP, AUROC, ranking score and FROC sensitivities with bootstrap intervals.",
    )
    evaluate.add_argument("predictions", help="folder of detection maps (one value per candidate region)")
    evaluate.add_argument("labels", help="folder of lesion masks (binary or ISUP-valued)")
    evaluate.add_argument("--json", help="write the metrics as JSON here")
    evaluate.add_argument("--plots", help="folder for FROC and ROC PNGs")
    evaluate.add_argument("--sites", help="CSV mapping case_id to site (or a PI-CAI marksheet)")
    evaluate.add_argument("--bootstrap", type=int, default=1000, help="bootstrap resamples for 95%% CIs")
    evaluate.add_argument("--allow-missing", action="store_true", help="score labels without a prediction as empty")


def run_evaluate(args) -> int:
    from LesionAILib.evaluation.case_files import evaluate_folders

    result = evaluate_folders(
        args.predictions,
        args.labels,
        out_json=args.json,
        plots_dir=args.plots,
        sites=args.sites,
        bootstrap=args.bootstrap,
        allow_missing=args.allow_missing,
    )
    print(result.table())
    if args.json:
        print(f"wrote {args.json}")
    return 0

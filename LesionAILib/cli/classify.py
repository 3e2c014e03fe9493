"""``lesionai classify``: the ProstateX-trained patch classifier's probability at one or more points of a study."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from LesionAILib.cli import options
from LesionAILib.errors import LesionAIError
from LesionAILib.jobs.events import CLASSIFIED


def register(commands: argparse._SubParsersAction) -> None:
    classify = options.add_command(
        commands,
        "classify",
        run_classify,
        help="probability of clinically significant cancer at a point (ProstateX-trained classifier)",
        description="Extract the ProstateX-style T2, ADC and high-b patches at a point (histogram-equalised, "
        "32 x 32 at each series' native resolution), score them with the patch classifier, print the "
        "probability and the model, and write the patches as a PNG strip. Research use only.",
    )
    options.add_study_arguments(classify)
    classify.add_argument(
        "--point",
        required=True,
        action="append",
        metavar="X,Y,Z",
        help="the point in mm, LPS (DICOM patient coordinates) unless --ras; write --point=-X,Y,Z when X is "
        "negative; repeat it for several points (one PNG each: patches-1.png, ...)",
    )
    classify.add_argument("--ras", action="store_true", help="the points are in RAS (3D Slicer) coordinates")
    classify.add_argument(
        "--zone",
        choices=("PZ", "TZ", "AS", "SV"),
        help="prostate zone of the points (default: unknown, averaged over PZ/TZ/AS by training frequency)",
    )
    options.add_model_option(classify, "the bundled ProstateX patch classifier")
    options.add_device_option(classify, default="cpu")
    classify.add_argument("--out", default="classify-output", help="folder for patches.png (default classify-output)")
    classify.add_argument("--json", action="store_true", help="print the result as JSON (a list for several points)")
    options.add_job_options(classify)


def parse_point(text: str) -> tuple[float, float, float]:
    """``"X,Y,Z"`` (mm) → ``(x, y, z)``."""
    try:
        values = tuple(float(v) for v in text.replace(" ", "").split(","))
    except ValueError:
        values = ()
    if len(values) != 3:
        raise LesionAIError(f"--point expects X,Y,Z in mm, got {text!r}", hint="e.g. --point 25.7,31.9,-38.5")
    return values


def run_classify(args) -> int:
    from LesionAILib.prostatex.figures import write_patch_strip
    from LesionAILib.prostatex.patches import PatchExtractor
    from LesionAILib.prostatex.point_classification import PointClassifier

    points = [parse_point(text) for text in args.point]
    events, cancel = options.job_events(args), options.cancel_token(args)
    out = Path(args.out)
    frame = "RAS" if args.ras else "LPS"
    with cancel.installed():
        events.progress("reading the images", 0, len(points))
        case = options.open_study(args, args.study)
        cancel.check()
        events.progress("loading the model", 0, len(points))
        classifier = PointClassifier(args.model, device=args.device)
        extractor = PatchExtractor(case)
        results = []
        for done, point in enumerate(points, start=1):
            cancel.check()
            results.append(classifier.classify(extractor, point, ras=args.ras, zone=args.zone))
            events.progress("classifying", done, len(points))
        cancel.check()
        reports = []
        for number, (point, result) in enumerate(zip(points, results, strict=True), start=1):
            at = f"{frame} ({', '.join(f'{v:g}' for v in point)}) mm"
            png = write_patch_strip(
                result.patches,
                out / ("patches.png" if len(points) == 1 else f"patches-{number}.png"),
                f"{case.case_id} at {at}: p = {result.probability:.2f} — {result.model_name}",
                result.intended_use,
            )
            reports.append({"case_id": case.case_id, **result.to_dict(), "png": str(png)})
            if not args.json:
                print(
                    f"{case.case_id}: probability of clinically significant cancer {result.probability:.3f} at {at}, "
                    f"zone {result.zone or 'unknown'} — model: {result.model_name} ({result.intended_use})"
                )
                print(f"wrote {png}")
    if args.json:
        print(json.dumps(reports[0] if len(reports) == 1 else reports, indent=2))
    events.emit(CLASSIFIED, case_id=case.case_id, points=reports)
    return 0

"""``lesionai synthesis-view``: the four FIG 7 panels (incomplete / synthesised / real / difference) at one point."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from LesionAILib.cli import options
from LesionAILib.errors import LesionAIError
from LesionAILib.jobs.events import SYNTHESIS_VIEWED


def register(commands: argparse._SubParsersAction) -> None:
    view = options.add_command(
        commands,
        "synthesis-view",
        run_synthesis_view,
        help="hide the box centred at a point, synthesise it from its surroundings and draw the four panels",
        description="Hide the model's mask box centred at the point (a 3D model: on its synthesis grid centred "
        "there; the 2D ProstateX model: the centre of the 32 x 32 window on the nearest native ADC slice), "
        "synthesise the sequences inside it from the context and write a PNG of incomplete / synthesised / real "
        "/ real − synthesised (one row per sequence) with the model's notice, and print the box's mean "
        "|real − synthesised| per sequence. Research use only.",
    )
    options.add_study_arguments(view)
    view.add_argument(
        "--model",
        required=True,
        metavar="FILE",
        help="synthesis model file (train-synthesis, or the bundled 2D ProstateX one)",
    )
    where = view.add_mutually_exclusive_group(required=True)
    where.add_argument("--at-lps", nargs=3, type=float, metavar=("X", "Y", "Z"), help="the box centre, LPS mm")
    where.add_argument(
        "--at-ras", nargs=3, type=float, metavar=("R", "A", "S"), help="the box centre, RAS mm (3D Slicer's)"
    )
    view.add_argument("--out", default="synthesis-view.png", help="PNG to write (default synthesis-view.png)")
    view.add_argument("--json", action="store_true", help="print the box's summary as JSON")
    options.add_device_option(view, default="cpu")
    options.add_job_options(view)


def run_synthesis_view(args) -> int:
    from LesionAILib.geometry import ras_to_lps
    from LesionAILib.synthesis.figures import box_panels
    from LesionAILib.synthesis.slice_analysis import abnormality_analyzer
    from LesionAILib.synthesis.viewing import view_at_point

    out = Path(args.out)
    if out.suffix.lower() != ".png":
        raise LesionAIError("--out must name a .png file", out, "e.g. --out view.png")
    point = args.at_lps if args.at_lps is not None else [float(v) for v in ras_to_lps(args.at_ras)]
    events, cancel = options.job_events(args), options.cancel_token(args)
    with cancel.installed():
        events.progress("reading the images", 0, 3)
        case = options.open_study(args, args.study)
        cancel.check()
        events.progress("loading the model", 1, 3)
        analyzer = abnormality_analyzer(args.model, device=args.device)
        cancel.check()
        events.progress("synthesising", 2, 3)
        seen = view_at_point(analyzer, case, point)
        cancel.check()
        at = ", ".join(f"{v:.1f}" for v in seen.point_lps_mm)
        png = box_panels(
            seen.view,
            seen.roles,
            out,
            f"{case.case_id} — hidden box at LPS ({at}) mm — {seen.model_name}",
            seen.model_notice,
        )
    report = {**seen.to_dict(), "png": str(png)}
    if args.json:
        print(json.dumps(report, indent=2))
    else:
        gaps = ", ".join(f"{role} {value:.3f}" for role, value in seen.difference.items())
        print(f"{case.case_id}: mean |real − synthesised| in the box at LPS ({at}) mm: {gaps} — {seen.model_name}")
        print(f"wrote {png}")
    events.emit(SYNTHESIS_VIEWED, **report)
    return 0

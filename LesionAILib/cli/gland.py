"""``lesionai gland``: the prostate gland of a study's T2 (TAPS model) → mask, volume, PSA density, PNG."""

from __future__ import annotations

import argparse
import math
import warnings
from pathlib import Path

from LesionAILib.cli import options
from LesionAILib.errors import LesionAIError, StudyWarning
from LesionAILib.jobs.events import SEGMENTED


def register(commands: argparse._SubParsersAction) -> None:
    gland = options.add_command(
        commands,
        "gland",
        run_gland,
        help="segment the prostate gland on the T2 (TAPS model): mask, volume, PSA density, PNG",
        description="Segment the prostate gland on the study's axial T2 with the TAPS model (lavlab-taps, trained "
        "on real prostate T2; MIT licence) and write gland.nii.gz (T2 geometry), gland.json (volume ml, PSA "
        "density with --psa, quality warnings, model and sha256) and gland.png. Only the T2 is needed: "
        "--t2w FILE alone is enough. Research use only.",
    )
    options.add_study_arguments(gland)
    gland.add_argument("--out", required=True, help="output folder")
    gland.add_argument("--psa", type=float, metavar="NG_PER_ML", help="serum PSA in ng/ml, for the PSA density")
    options.add_device_option(gland)
    gland.add_argument("--no-figure", action="store_true", help="skip gland.png")
    options.add_job_options(gland)


def gland_t2(args):
    """``(T2 image, its source, case id)``: the study's T2, or the ``--t2w`` file alone when no study is given."""
    from LesionAILib.studies.files import image_suffix, read_image_file

    if args.study is None and args.t2w and not (args.adc and args.hbv):
        path = Path(args.t2w)
        name = path.name[: -len(image_suffix(path) or "")] or path.name
        return read_image_file(path, "t2w"), str(path), name
    if args.study is None and not args.t2w:
        raise LesionAIError("no T2 given", hint="give a study folder or --t2w FILE")
    case = options.open_study(args, args.study)
    source = case.sources["t2w"]
    paths = source.paths
    where = paths[0] if len(paths) == 1 else str(Path(paths[0]).parent)
    return case.t2w, where, case.case_id


def run_gland(args) -> int:
    from LesionAILib.gland.outputs import psa_density, write_gland_folder
    from LesionAILib.gland.segmentation import GlandSegmenter

    if args.psa is not None and (not math.isfinite(args.psa) or args.psa < 0):
        raise LesionAIError(f"--psa must be a non-negative PSA in ng/ml, got {args.psa}", hint="e.g. --psa 6.4")
    out = Path(args.out)
    events, cancel = options.job_events(args, bar=False), options.cancel_token(args)
    with cancel.installed():
        events.progress("reading the T2", 0, 100)
        t2, source, case_id = gland_t2(args)
        cancel.check()
        events.progress("loading the gland model", 10, 100)
        segmenter = GlandSegmenter(args.device)
        cancel.check()
        events.progress("segmenting the gland", 20, 100)
        gland = segmenter.segment(t2, source)
        cancel.check()
        events.progress("writing", 90, 100)
        write_gland_folder(gland, t2, out, args.psa, source, figure=not args.no_figure, title=case_id)
    for line in gland.warnings:
        warnings.warn(line, StudyWarning, stacklevel=1)
    density = psa_density(args.psa, gland.volume_ml)
    density_text = "" if density is None else f", PSA density {density:.3f} ng/ml² (PSA {args.psa:g} ng/ml)"
    print(
        f"{case_id}: prostate gland {gland.volume_ml:.1f} ml{density_text} — model: {gland.model.name}, "
        f"{gland.windows} window(s), {gland.timings['total']:.1f} s on {gland.device}"
    )
    print(f"wrote {out}/ (gland.nii.gz, gland.json{'' if args.no_figure else ', gland.png'})")
    events.emit(
        SEGMENTED,
        folder=str(out),
        volume_ml=float(gland.volume_ml),
        psa_density_ng_ml2=density,
        warnings=list(gland.warnings),
    )
    return 0


# --------------------------------------------------------------------------- analyze --gland
def add_gland_options(parser: argparse.ArgumentParser) -> None:
    """``--gland`` and ``--gland-margin`` of ``lesionai analyze``."""
    from LesionAILib.gland.confinement import DEFAULT_GLAND_MARGIN_MM

    group = parser.add_argument_group("prostate gland")
    group.add_argument(
        "--gland",
        action="store_true",
        help="segment the prostate gland first (TAPS model): centre the analysis grid on it, flag each "
        "candidate in_gland (those outside are kept and listed, not dropped; the case score and detection map "
        "count those inside) and write gland.nii.gz",
    )
    group.add_argument(
        "--gland-margin",
        type=float,
        default=DEFAULT_GLAND_MARGIN_MM,
        metavar="MM",
        help=f"a candidate centre this close to the gland still counts as inside (default {DEFAULT_GLAND_MARGIN_MM:g})",
    )


def gland_confiner(args):
    """``case → GlandConfinement`` for ``analyze --gland`` (the gland model loaded once), or ``case → None``."""
    if not getattr(args, "gland", False):
        return lambda case: None
    from LesionAILib.gland.confinement import GlandConfinement
    from LesionAILib.gland.segmentation import GlandSegmenter

    if not math.isfinite(args.gland_margin) or args.gland_margin < 0:
        raise LesionAIError(f"--gland-margin must be a distance ≥ 0 mm, got {args.gland_margin}", hint="e.g. 5")
    segmenter = GlandSegmenter(args.device)

    def confine(case) -> GlandConfinement:
        paths = case.sources["t2w"].paths
        source = paths[0] if len(paths) == 1 else str(Path(paths[0]).parent)
        gland = segmenter.segment(case.t2w, source)
        for line in gland.warnings:
            warnings.warn(line, StudyWarning, stacklevel=1)
        confinement = GlandConfinement.from_segmentation(gland, args.gland_margin)
        if confinement.empty:
            warnings.warn(
                str(StudyWarning("candidates are not confined to the gland (no gland found)", source)),
                StudyWarning,
                stacklevel=1,
            )
        return confinement

    return confine

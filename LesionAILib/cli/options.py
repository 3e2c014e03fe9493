"""Options several ``lesionai`` commands share, declared once: study inputs, device, model, job events and cancel."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

from LesionAILib.errors import LesionAIError
from LesionAILib.jobs.events import CancelToken, EventLog


def add_command(
    commands: argparse._SubParsersAction, name: str, handler: Callable[[argparse.Namespace], int], **texts: str
) -> argparse.ArgumentParser:
    """Declare the subcommand ``name`` (``help=``, ``description=``), run by ``handler(args)`` → exit status."""
    parser = commands.add_parser(name, **texts)
    parser.set_defaults(handler=handler)
    return parser


def parse_overrides(values: Sequence[str] | None) -> dict[str, str]:
    """``["t2w=10", ...]`` (``--series``) → ``{"t2w": "10"}``."""
    overrides = {}
    for value in values or []:
        role, sep, series = value.partition("=")
        if not sep or not series:
            raise LesionAIError(f"--series expects ROLE=NUMBER_OR_UID, got {value!r}", hint="e.g. --series t2w=10")
        overrides[role.strip()] = series.strip()
    return overrides


def add_series_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--series",
        action="append",
        metavar="ROLE=SERIES",
        help="choose a DICOM series for a role by series number or SeriesInstanceUID, e.g. --series t2w=10 "
        "(repeatable; always wins over the automatic choice)",
    )


def add_study_arguments(parser: argparse.ArgumentParser, nargs: str = "?") -> None:
    """The study (``nargs``: ``"?"`` one, ``"*"`` several) or ``--t2w/--adc/--hbv`` files, and ``--series``."""
    parser.add_argument(
        "study",
        nargs=nargs,
        help="DICOM study folder (any nesting) or PI-CAI case folder (<patient>_<study>_{t2w,adc,hbv}.mha)",
    )
    parser.add_argument("--t2w", metavar="FILE", help="axial T2 image file (.nii/.nii.gz/.mha/.mhd/.nrrd)")
    parser.add_argument("--adc", metavar="FILE", help="ADC map file (µm²/s; mm²/s is detected and rescaled)")
    parser.add_argument("--hbv", metavar="FILE", help="high b-value DWI file")
    add_series_option(parser)


def studies_of(args) -> list[str | None]:
    """The studies a command was given; ``[None]`` when only ``--t2w/--adc/--hbv`` files name the case."""
    if isinstance(args.study, list):
        return args.study or [None]
    return [args.study]


def open_study(args, study: str | None):
    """Open ``study`` (``None``: the ``--t2w/--adc/--hbv`` files alone), the given files replacing their roles."""
    from LesionAILib.studies.opening import open_case

    files = {"t2w": args.t2w, "adc": args.adc, "hbv": args.hbv}
    return open_case(study, parse_overrides(args.series), files)


def add_device_option(parser: argparse.ArgumentParser, default: str | None = "auto") -> None:
    default_text = "the configuration's" if default is None else default
    parser.add_argument(
        "--device",
        default=default,
        help=f"auto (CUDA if available), cpu or cuda (default {default_text})",
    )


def add_interpolation_option(parser: argparse.ArgumentParser, default: str | None = None) -> None:
    """``--interpolation linear|bspline``: how images are resampled into the grid (``None``: the model's own).

    The choices are ``preprocessing.pipeline.IMAGE_INTERPOLATIONS``, spelled out so that parsing
    arguments does not load torch (a test keeps the two equal).
    """
    default_text = "the model's own, linear for the bundled one" if default is None else default
    parser.add_argument(
        "--interpolation",
        choices=("linear", "bspline"),
        default=default,
        help="resampling of the images: linear (trilinear) or bspline (cubic B-spline, about 10× slower on a "
        f"CPU, closer to the true signal); label maps are always nearest (default {default_text})",
    )


def add_model_option(parser: argparse.ArgumentParser, default_text: str = "the bundled demo model") -> None:
    parser.add_argument("--model", metavar="FILE", help=f"model file (.safetensors); default: {default_text}")


def add_job_options(parser: argparse.ArgumentParser) -> None:
    """``--json-events`` and ``--cancel-file``: how the Slicer panel (or any parent process) follows a job."""
    job = parser.add_argument_group("job control")
    job.add_argument("--json-events", action="store_true", help="print progress as JSON lines on stdout")
    job.add_argument(
        "--cancel-file",
        metavar="PATH",
        help="stop at the next step once this file exists (exit status 130; nothing further is written)",
    )


def job_events(args, path: str | Path | None = None, bar: bool = True) -> EventLog:
    """The command's event log: JSON lines on stdout with ``--json-events``, else a bar on a terminal."""
    echo = bool(getattr(args, "json_events", False))
    return EventLog(path, echo=echo, bar=bar and not echo and sys.stderr.isatty())


def cancel_token(args, default_file: str | Path | None = None) -> CancelToken:
    """Set by ``--cancel-file`` (or ``default_file`` without it), SIGTERM and SIGINT (once installed)."""
    return CancelToken(getattr(args, "cancel_file", None) or default_file)

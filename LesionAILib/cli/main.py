"""The ``lesionai`` command line: assembles the command groups' parsers and turns failures into exit statuses.

Every subcommand sits on top of LesionAILib like any other client; each command group
(:mod:`~LesionAILib.cli.studies`, :mod:`~LesionAILib.cli.phantom`, :mod:`~LesionAILib.cli.analyze`,
:mod:`~LesionAILib.cli.gland`, :mod:`~LesionAILib.cli.dicom`, :mod:`~LesionAILib.cli.classify`,
:mod:`~LesionAILib.cli.train`, :mod:`~LesionAILib.cli.synthesis`, :mod:`~LesionAILib.cli.evaluate`,
:mod:`~LesionAILib.cli.adaptation`, :mod:`~LesionAILib.cli.serve`) declares its parsers and runs them.
User mistakes end in one line on stderr (``lesionai: error: <path>: <what> (<fix>)``) and exit status
2; a cancelled job exits with 130 after writing nothing further; ``--debug`` shows the traceback of
unexpected failures.
"""

from __future__ import annotations

import argparse
import sys
import warnings
from collections.abc import Sequence

from LesionAILib import __version__
from LesionAILib.cli import (
    adaptation,
    analyze,
    classify,
    dicom,
    evaluate,
    gland,
    phantom,
    serve,
    studies,
    synthesis,
    synthesis_prostatex,
    synthesis_view,
    train,
)
from LesionAILib.errors import LesionAIError, StudyWarning
from LesionAILib.jobs.events import ERROR_PREFIX, EXIT_INTERRUPTED, EXIT_USER_ERROR, Cancelled

COMMAND_GROUPS = (
    studies,
    phantom,
    analyze,
    gland,
    dicom,
    classify,
    train,
    synthesis,
    synthesis_prostatex,
    synthesis_view,
    evaluate,
    adaptation,
    serve,
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="lesionai",
        description="LesionAI: prostate mpMRI lesion localization and classification. "
        "Physical coordinates are LPS millimetres unless an option says RAS.",
    )
    parser.add_argument("--version", action="version", version=f"lesionai {__version__}")
    parser.add_argument("--debug", action="store_true", help="show tracebacks of unexpected errors")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")
    for group in COMMAND_GROUPS:
        group.register(commands)
    return parser


def _show_warning(message, category, filename, lineno, file=None, line=None) -> None:
    """Our own warnings (suspect input) as one line on stderr; others as Python shows them."""
    if issubclass(category, StudyWarning):
        print(f"lesionai: warning: {message}", file=file or sys.stderr)
    else:
        sys.stderr.write(warnings.formatwarning(message, category, filename, lineno, line))


def main(argv: Sequence[str] | None = None) -> int:
    warnings.showwarning = _show_warning
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "handler", None):
        parser.print_help()
        return EXIT_USER_ERROR
    try:
        return int(args.handler(args) or 0)
    except Cancelled as cancelled:
        print(f"lesionai: interrupted: {cancelled}", file=sys.stderr)
        return EXIT_INTERRUPTED
    except LesionAIError as error:
        print(f"{ERROR_PREFIX}{error}", file=sys.stderr)
        return EXIT_USER_ERROR
    except BrokenPipeError:  # output piped into `head` and closed early
        sys.stderr.close()
        return 0
    except KeyboardInterrupt:
        print("lesionai: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    except OSError as error:
        if args.debug:
            raise
        print(f"{ERROR_PREFIX}{error.filename or ''}: {error.strerror or error}", file=sys.stderr)
        return EXIT_USER_ERROR
    except Exception as error:  # a bug, not a user mistake: one line unless --debug
        if args.debug:
            raise
        print(
            f"lesionai: internal error: {type(error).__name__}: {error} (rerun with --debug and report it)",
            file=sys.stderr,
        )
        return 1


if __name__ == "__main__":
    sys.exit(main())

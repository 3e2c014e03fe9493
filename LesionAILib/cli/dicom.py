"""``lesionai export-dicom`` (a result folder → DICOM SEG, Parametric Map and SR) and ``lesionai send`` (C-STORE)."""

from __future__ import annotations

import argparse
from pathlib import Path

from LesionAILib.cli import options


def register(commands: argparse._SubParsersAction) -> None:
    export = options.add_command(
        commands,
        "export-dicom",
        run_export,
        help="write a result folder as DICOM SEG, Parametric Map and SR referencing its DICOM study",
        description="Write the candidates (and the gland, when the result has one) as a DICOM Segmentation, the "
        "heatmap as a Parametric Map and the findings as a TID 1500 SR, all referencing the study's T2 series "
        "(3D Slicer shows them with the QuantitativeReporting extension). The study must be the DICOM study the "
        "result was analysed from. Research use only.",
    )
    export.add_argument("result", help="result folder written by `lesionai analyze --out`")
    export.add_argument("--study", required=True, help="the DICOM study folder the result was analysed from")
    export.add_argument("--out", required=True, help="folder for the DICOM objects (new, empty, or an earlier export)")
    options.add_series_option(export)

    send = options.add_command(
        commands,
        "send",
        run_send,
        help="send the DICOM objects of a folder to a PACS (C-STORE)",
        description="Send every DICOM file in a folder (e.g. `lesionai analyze --dicom-out`) to a DICOM node with "
        "C-STORE over one association; one line per object stored.",
    )
    send.add_argument("folder", help="folder of DICOM files")
    send.add_argument("--to", required=True, metavar="AE@HOST:PORT", help="the node: called AE title, host, port")
    send.add_argument("--calling-ae", default="LESIONAI", help="our AE title (default LESIONAI)")
    send.add_argument("--timeout", type=float, default=30.0, metavar="S", help="network timeout in seconds (30)")


def print_written(objects, folder: Path) -> None:
    """One line per DICOM object written (``analyze --dicom-out`` and ``export-dicom``)."""
    for written in objects:
        print(f"wrote {folder / written.path.name} ({written.sop_class}, SOP instance {written.sop_instance_uid})")


def run_export(args) -> int:
    from LesionAILib.dicom_out.export import export_result

    out = Path(args.out)
    print_written(export_result(args.result, args.study, out, options.parse_overrides(args.series)), out)
    return 0


def run_send(args) -> int:
    from LesionAILib.dicom_out.sending import DicomNode, dicom_files, send_files

    node = DicomNode.parse(args.to)
    files = dicom_files(args.folder)

    def report(sent) -> None:
        print(f"sent {sent.path.name} ({sent.sop_class}, SOP instance {sent.sop_instance_uid}) to {node}", flush=True)

    send_files(files, node, calling_ae=args.calling_ae, timeout_s=args.timeout, on_sent=report)
    return 0


# --------------------------------------------------------------------------- analyze --dicom-out
def add_dicom_out_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--dicom-out",
        metavar="DIR",
        help="also write DICOM SEG, Parametric Map and SR referencing the study's T2 series into DIR (one subfolder "
        "per study when several); DICOM studies only",
    )


def dicom_source_of(args, case):
    """The T2 series for ``--dicom-out`` (``None`` without it), read before the analysis so that a T2 from an
    image file, or a ``--dicom-out`` folder holding other files, is refused at once (one line)."""
    if not getattr(args, "dicom_out", None):
        return None
    from LesionAILib.dicom_out.export import check_output_folder
    from LesionAILib.dicom_out.sources import source_series_of_case

    check_output_folder(args.dicom_out)
    return source_series_of_case(case)


def write_dicom_out(source, result_folder: Path, out: Path, quiet: bool) -> None:
    """Write the DICOM objects of the result folder just written (``analyze --dicom-out``)."""
    from LesionAILib.dicom_out.export import write_dicom_results
    from LesionAILib.inference.results import read_result

    written = write_dicom_results(read_result(result_folder), source, out)
    if not quiet:
        print_written(written, out)

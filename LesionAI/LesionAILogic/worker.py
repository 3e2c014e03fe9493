"""The Slicer panel's background jobs, run as ``python -m LesionAILogic.worker ...`` in a separate process.

Engine only (no slicer, vtk or qt imports): the panel writes the input volumes to files, starts
this module through :class:`~LesionAILogic.jobs.JobRunner`, follows its JSON-lines events and
loads the result files on the main thread. A crash in torch cannot take Slicer down, and the GUI
never waits for the network.

Commands:

``analyze --t2w F --adc F --hbv F --out DIR [--model M] [--device D] [--case-id ID]``
    Progress events ``{"event": "progress", "stage", "done", "total": 100}`` at every analysis
    stage, then writes into ``DIR`` (all maps in the T2 file's exact geometry):
    ``heatmap.nrrd`` (float32, 0–1), ``candidates.nrrd`` (uint8, voxel = candidate id) and
    ``result.json`` (case score, model name and notice, whether it is the synthetic-data demo model,
    device, timings, and every candidate with
    all its fields at full precision), and ends with ``{"event": "analysis_done", "folder": DIR}``.

``next-case --dataset D [--model M] [--device D] [--samples N]``
    Orders the unannotated cases of a deployment dataset by the model's uncertainty and ends with
    ``{"event": "next_case", "case": ID or null, "order": [{"case", "score", ...}, ...]}``.

User mistakes end with one line ``lesionai: error: ...`` on stderr and exit status 2, like the CLI.
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
from collections.abc import Sequence
from pathlib import Path

from LesionAILib.errors import LesionAIError
from LesionAILib.jobs.events import EventLog

EXIT_USER_ERROR = 2
HEATMAP_FILE = "heatmap.nrrd"
CANDIDATE_MAP_FILE = "candidates.nrrd"
RESULT_FILE = "result.json"


def _analyze(args, events: EventLog) -> None:
    from LesionAILib.atomic_io import write_image_atomic, write_json_atomic
    from LesionAILib.inference.analyzer import Analyzer
    from LesionAILib.models.modelfile import DEMO_NOTICE
    from LesionAILib.studies.study import open_files

    def progress(stage: str, done: float) -> None:
        events.emit("progress", stage=stage, done=int(round(100 * done)), total=100)

    progress("loading the model", 0.0)
    analyzer = Analyzer(args.model, device=args.device)
    progress("reading the images", 0.05)
    case = open_files(args.t2w, args.adc, args.hbv, patient_id=args.case_id)
    result = analyzer.analyze(case, progress=lambda stage, fraction: progress(stage, 0.1 + 0.85 * fraction))
    out = Path(args.out)
    write_image_atomic(result.heatmap, out / HEATMAP_FILE, compress=False)
    write_image_atomic(result.candidate_map, out / CANDIDATE_MAP_FILE, compress=False)
    write_json_atomic(
        out / RESULT_FILE,
        {
            "case_id": result.case_id,
            "case_score": float(result.case_score),
            "model_name": result.model_name,
            "model_notice": result.model_notice,
            "demo_model": result.model_notice == DEMO_NOTICE,
            "device": result.device,
            "timings_s": result.timings,
            "candidates": [dataclasses.asdict(c) for c in result.candidates],
        },
    )
    events.emit(
        "analysis_done", folder=str(out), case_score=float(result.case_score), candidates=len(result.candidates)
    )


def _next_case(args, events: EventLog) -> None:
    from LesionAILib.adaptation.deployment import read_deployment
    from LesionAILib.adaptation.ordering import order_by_uncertainty
    from LesionAILib.inference.analyzer import Analyzer

    pool = read_deployment(args.dataset).unannotated
    if not pool:
        events.emit("next_case", case=None, order=[])
        return
    events.emit("progress", stage="loading the model", done=0, total=len(pool))
    analyzer = Analyzer(args.model, device=args.device)
    ordered = order_by_uncertainty(
        analyzer,
        [case.record() for case in pool],
        samples=args.samples,
        progress=lambda done, total: events.emit("progress", stage="uncertainty", done=done, total=total),
    )
    events.emit("next_case", case=ordered[0].case_id, order=[item.to_dict() for item in ordered])


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m LesionAILogic.worker", description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)
    analyze = commands.add_parser("analyze", help="analyze one case given as three image files")
    for role in ("t2w", "adc", "hbv"):
        analyze.add_argument(f"--{role}", required=True, help=f"{role} image file (.nrrd, .nii.gz, .mha)")
    analyze.add_argument("--out", required=True, help="output folder")
    analyze.add_argument("--case-id", help="case name for the result")
    analyze.set_defaults(handler=_analyze)
    next_case = commands.add_parser("next-case", help="the unannotated case the model is least sure about")
    next_case.add_argument("--dataset", required=True, help="deployment dataset folder")
    next_case.add_argument("--samples", type=int, default=8, help="Monte-Carlo dropout samples per case")
    next_case.set_defaults(handler=_next_case)
    for command in (analyze, next_case):
        command.add_argument("--model", help="model file (.safetensors); default: the bundled demo model")
        command.add_argument("--device", default="auto", help="auto (CUDA if available), cpu or cuda")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    events = EventLog(echo=True)
    try:
        args.handler(args, events)
    except LesionAIError as error:
        print(f"lesionai: error: {error}", file=sys.stderr)
        return EXIT_USER_ERROR
    return 0


if __name__ == "__main__":
    sys.exit(main())

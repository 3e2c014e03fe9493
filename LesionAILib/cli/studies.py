"""``lesionai inspect`` (which series plays which role, and why) and ``lesionai preprocess`` (one grid for all)."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from LesionAILib.cli import options
from LesionAILib.errors import LesionAIError


def register(commands: argparse._SubParsersAction) -> None:
    inspect = options.add_command(
        commands,
        "inspect",
        run_inspect,
        help="list a study's series and the T2/ADC/high-b roles chosen, with the reason",
        description="Read a DICOM study's headers, list every series and say which one is taken as T2, ADC "
        "and high-b, and why. Exits non-zero if a role cannot be filled or a chosen series is broken.",
    )
    inspect.add_argument("study", help="DICOM study folder (or a PI-CAI case folder)")
    options.add_series_option(inspect)
    inspect.add_argument("--json", action="store_true", help="print the report as JSON")

    prep = options.add_command(
        commands,
        "preprocess",
        run_preprocess,
        help="resample T2/ADC/high-b into one grid and normalise them",
        description="Resample every sequence into the T2-aligned target grid (physical space, oblique "
        "directions honoured) and normalise intensities; writes NIfTI volumes, a JSON record and a PNG.",
    )
    options.add_study_arguments(prep, nargs="*")
    prep.add_argument("--out", required=True, help="output folder (one subfolder per study when several)")
    prep.add_argument("--shape", type=int, nargs=3, default=(20, 256, 256), metavar=("Z", "Y", "X"))
    prep.add_argument("--spacing", type=float, nargs=3, default=(3.0, 0.5, 0.5), metavar=("Z", "Y", "X"))
    prep.add_argument("--center", type=float, nargs=3, metavar=("X", "Y", "Z"), help="grid centre, LPS mm")
    options.add_interpolation_option(prep, default="linear")
    options.add_device_option(prep)


# --------------------------------------------------------------------------- inspect
def run_inspect(args) -> int:
    from LesionAILib.studies.dicom_study import inspect_study
    from LesionAILib.studies.roles import ROLES

    path = Path(args.study)
    overrides = options.parse_overrides(args.series)
    if path.is_dir() and any(path.glob("*_t2w.mha")):  # a PI-CAI case folder: one file per role
        return print_picai_case(path, args.json)
    try:
        report = inspect_study(path, overrides)
    except LesionAIError as error:
        if args.json:
            print(json.dumps({"path": str(path), "error": str(error)}, indent=2))
        raise
    if args.json:
        print(json.dumps(report.to_dict(), indent=2))
        return 0
    print(f"Study {report.path}  patient {report.patient_id or '?'}  study {report.study_id or '?'}")
    print(f"{'series':>6}  {'description':<38} {'plane':<9} {'slices':>6}  {'role':<4}  note")
    for series in report.series:
        number = "?" if series.number is None else str(series.number)
        print(
            f"{number:>6}  {series.description[:38]:<38} {series.plane:<9} {series.slices:>6}  "
            f"{series.role or '':<4}  {series.note}"
        )
    for skipped in report.skipped_files:
        print(f"skipped {skipped.path}: {skipped.reason}")
    print()
    for role in ROLES:
        source = report.roles[role]
        print(f"{role}: series {source.series_number} ({source.series_description}) — {source.reason}")
    return 0


def print_picai_case(path: Path, as_json: bool) -> int:
    """What ``inspect`` says about a PI-CAI case folder: one file per role, its grid."""
    from LesionAILib.geometry import Grid
    from LesionAILib.studies.picai import open_picai_case
    from LesionAILib.studies.roles import ROLES

    case = open_picai_case(path)
    roles = {}
    for role in ROLES:
        grid = Grid.from_image(case.image(role))
        roles[role] = {
            **case.sources[role].to_dict(),
            "shape_zyx": list(grid.shape),
            "spacing_zyx_mm": list(grid.spacing),
        }
    if as_json:
        print(
            json.dumps(
                {"path": str(path), "patient_id": case.patient_id, "study_id": case.study_id, "roles": roles}, indent=2
            )
        )
        return 0
    print(f"PI-CAI case {case.case_id} in {path}")
    for role, info in roles.items():
        print(
            f"{role}: {Path(info['source']).name}  {info['shape_zyx']} voxels at "
            f"{', '.join(f'{v:.2f}' for v in info['spacing_zyx_mm'])} mm (Z, Y, X) — {info['reason']}"
        )
    return 0


# --------------------------------------------------------------------------- preprocess
def run_preprocess(args) -> int:
    from LesionAILib.atomic_io import write_image_atomic, write_json_atomic
    from LesionAILib.geometry import Grid
    from LesionAILib.preprocessing.pipeline import PreprocessConfig, preprocess
    from LesionAILib.rendering import sequence_panels

    studies = options.studies_of(args)
    config = PreprocessConfig(shape=tuple(args.shape), spacing=tuple(args.spacing), interpolation=args.interpolation)
    out = Path(args.out)
    events = options.job_events(args, bar=len(studies) > 1)
    for done, study in enumerate(studies):
        case = options.open_study(args, study)
        prepared = preprocess(case, config, center_lps=args.center, device=args.device)
        folder = out / case.case_id if len(studies) > 1 else out
        arrays = {}
        for role in prepared.roles:
            array = prepared.channel(role).cpu().numpy()
            arrays[role] = array
            write_image_atomic(prepared.grid.image_from_array(array), folder / f"{role}.nii.gz")
        write_json_atomic(
            folder / "preprocess.json",
            {
                "case": case.metadata(),
                "config": config.to_dict(),
                "target_grid": prepared.grid.to_dict(),
                "t2_grid": Grid.to_dict(prepared.t2_grid),
                "normalisation": prepared.normalisation,
                "coordinates": "LPS mm; shape/spacing in (Z, Y, X) order",
            },
        )
        sequence_panels(
            [arrays[r] for r in prepared.roles],
            [f"{r} (normalised)" for r in prepared.roles],
            folder / "preprocessed.png",
            suptitle=f"{case.case_id}: target grid {prepared.grid.shape} voxels at {prepared.grid.spacing} mm",
        )
        events.progress("preprocess", done + 1, len(studies))
        if len(studies) == 1:
            print(f"wrote {folder}/{{t2w,adc,hbv}}.nii.gz, preprocess.json, preprocessed.png")
    events.close()
    if len(studies) > 1:
        print(f"wrote {len(studies)} cases under {out}")
    return 0

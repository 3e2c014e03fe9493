"""``lesionai analyze`` (one or more studies → result folders) and ``lesionai demo`` (a synthetic case end to end)."""

from __future__ import annotations

import argparse
import dataclasses
import sys
from pathlib import Path

from LesionAILib.cli import dicom, gland, options, synthesis
from LesionAILib.errors import LesionAIError
from LesionAILib.jobs.events import ANALYZED, ERROR_PREFIX, EXIT_USER_ERROR, Cancelled


def register(commands: argparse._SubParsersAction) -> None:
    analyze = options.add_command(
        commands,
        "analyze",
        run_analyze,
        help="find and grade lesion candidates in one or more studies",
        description="Preprocess, localize, extract candidates, classify them and write the heatmap, detection "
        "map and candidate table in the T2 series' geometry (loadable in 3D Slicer), plus PNGs.",
    )
    options.add_study_arguments(analyze, nargs="*")
    _add_detector_options(analyze)
    analyze.add_argument("--out", required=True, help="output folder (one subfolder per study when several)")
    analyze.add_argument("--case-id", help="the case's name in the outputs (one study; default: from the study)")
    analyze.add_argument(
        "--no-figures", action="store_true", help="skip the PNGs (the Slicer panel draws the maps itself)"
    )
    dicom.add_dicom_out_option(analyze)
    gland.add_gland_options(analyze)
    synthesis.add_abnormality_options(analyze)
    options.add_job_options(analyze)

    demo = options.add_command(
        commands,
        "demo",
        run_demo,
        help="analyze a generated synthetic case (or a given study) with the bundled model",
        description="Without a study: generate a synthetic mpMRI case, analyze it with the bundled demo model, "
        "print the candidate table and write every output. With a study: analyze that.",
    )
    options.add_study_arguments(demo)
    _add_detector_options(demo)
    demo.add_argument("--out", default="demo-output", help="output folder (default demo-output)")
    demo.add_argument(
        "--seed",
        type=int,
        default=7,
        help="seed of the generated case (default 7: a grade-group-4 cancer and a BPH nodule)",
    )


def _add_detector_options(parser: argparse.ArgumentParser) -> None:
    options.add_model_option(parser)
    options.add_device_option(parser)
    options.add_interpolation_option(parser)
    parser.add_argument("--tta", action="store_true", help="test-time augmentation (left-right mirror)")
    parser.add_argument(
        "--classifier",
        action="store_true",
        help="rescore each candidate with the ProstateX-trained patch classifier (real patients; research use)",
    )
    parser.add_argument("--classifier-model", metavar="FILE", help="patch-classifier file for --classifier")


def _analyzer(args):
    from LesionAILib.inference.analyzer import Analyzer

    patch_classifier = args.classifier_model or (True if args.classifier else None)
    return Analyzer(
        args.model,
        device=args.device,
        tta=args.tta,
        patch_classifier=patch_classifier,
        interpolation=args.interpolation,
    )


def _write(analyzer, case, result, out: Path, figures: bool, quiet: bool) -> None:
    from LesionAILib.inference.results import candidate_table, write_result

    write_result(result, case, out, analyzer.metadata, figures=figures)
    if quiet:
        return
    print(
        f"{result.case_id}: case score {result.case_score:.3f} ({len(result.candidates)} candidates) — "
        f"model: {result.model_name}"
    )
    print(candidate_table(result.candidates))
    if result.classifier_name:
        print(f"probabilities: {result.classifier_name} ({result.classifier_notice}) at each candidate's centre")
    pictures = ", PNGs" if figures else ""
    print(
        f"wrote {out}/ (result.json, heatmap.nii.gz/.nrrd, detection_map, candidates.csv/.json{pictures}) "
        f"in {result.timings['total']:.2f} s on {result.device}"
    )


# --------------------------------------------------------------------------- analyze
def run_analyze(args) -> int:
    studies = options.studies_of(args)
    if args.case_id and len(studies) > 1:
        raise LesionAIError("--case-id names one case", hint="give one study with it, or leave it out")
    events, cancel = options.job_events(args, bar=len(studies) > 1), options.cancel_token(args)
    with cancel.installed():
        if len(studies) == 1:
            return _analyze_one(args, studies[0], events, cancel)
        return _analyze_many(args, studies, events, cancel)


def _analyze_one(args, study, events, cancel) -> int:
    """One case, with a progress event at every analysis stage (0–100); nothing is written once cancelled."""
    out = Path(args.out)
    events.progress("loading the model", 0, 100)
    analyzer = _analyzer(args)
    confine = gland.gland_confiner(args)
    abnormality = synthesis.abnormality_writer(args)
    cancel.check()
    events.progress("reading the images", 5, 100)
    case = options.open_study(args, study)
    if args.case_id:
        case = dataclasses.replace(case, patient_id=args.case_id, study_id="")
    dicom_source = dicom.dicom_source_of(args, case)

    def stage_done(stage: str, fraction: float) -> None:
        cancel.check()
        events.progress(stage, round(10 + 85 * fraction), 100)

    result = analyzer.analyze(case, progress=stage_done, gland=confine(case))
    cancel.check()
    _write(analyzer, case, result, out, figures=not args.no_figures, quiet=False)
    if abnormality is not None:
        abnormality(case, result, out, not args.no_figures, False)
    if dicom_source is not None:
        dicom.write_dicom_out(dicom_source, out, Path(args.dicom_out), quiet=False)
    events.emit(
        ANALYZED,
        folder=str(out),
        case_id=result.case_id,
        case_score=float(result.case_score),
        candidates=len(result.candidates),
    )
    return 0


def _analyze_many(args, studies, events, cancel) -> int:
    """One subfolder per case; a study that cannot be read is reported and skipped."""
    out = Path(args.out)
    analyzer = _analyzer(args)
    confine = gland.gland_confiner(args)
    abnormality = synthesis.abnormality_writer(args)
    failures, folders = [], []
    for done, study in enumerate(studies):
        cancel.check()
        try:
            case = options.open_study(args, study)
            dicom_source = dicom.dicom_source_of(args, case)
            result = analyzer.analyze(case, progress=lambda *_: cancel.check(), gland=confine(case))
            cancel.check()
            _write(analyzer, case, result, out / case.case_id, figures=not args.no_figures, quiet=True)
            if abnormality is not None:
                abnormality(case, result, out / case.case_id, not args.no_figures, True)
            if dicom_source is not None:
                dicom.write_dicom_out(dicom_source, out / case.case_id, Path(args.dicom_out) / case.case_id, True)
            folders.append(str(out / case.case_id))
        except Cancelled:
            raise
        except LesionAIError as error:
            failures.append(str(error))
        events.progress("analyze", done + 1, len(studies))
    events.close()
    events.emit(ANALYZED, folders=folders, failures=failures)
    print(f"analysed {len(studies) - len(failures)} of {len(studies)} studies into {out}")
    for failure in failures:
        print(f"{ERROR_PREFIX}{failure}", file=sys.stderr)
    return EXIT_USER_ERROR if failures else 0


# --------------------------------------------------------------------------- demo
def run_demo(args) -> int:
    from LesionAILib.cli.studies import print_picai_case
    from LesionAILib.models.modelfile import DEMO_NOTICE
    from LesionAILib.preprocessing.pipeline import preprocess
    from LesionAILib.rendering import sequence_panels
    from LesionAILib.studies.opening import open_case

    out = Path(args.out)
    analyzer = _analyzer(args)
    if args.study:
        case = options.open_study(args, args.study)
        print(
            f"Analysing {args.study} with the bundled model. {DEMO_NOTICE}: on real studies its output is "
            "not clinically meaningful; this shows the workflow and the geometry."
        )
    else:
        from LesionAILib.phantom.cases import generate_case
        from LesionAILib.phantom.cohort import write_case

        phantom = generate_case(seed=args.seed, site="A", index=0)
        write_case(phantom, out / "phantom-case")
        case = open_case(out / "phantom-case" / "images" / phantom.patient_id)
        truth = ", ".join(f"GG{l.grade_group} {l.kind} in {l.zone} ({l.diameter_mm:.0f} mm)" for l in phantom.lesions)
        print(
            f"Generated synthetic case {phantom.case_id} (site A, seed {args.seed}) in {out / 'phantom-case'}; "
            f"ground truth: {truth or 'no lesion'}"
        )
        print_picai_case(out / "phantom-case" / "images" / phantom.patient_id, as_json=False)
    prepared = preprocess(case, analyzer.metadata.preprocess, device=analyzer.device)
    sequence_panels(
        [prepared.channel(r).cpu().numpy() for r in prepared.roles],
        [f"{r} (normalised)" for r in prepared.roles],
        out / "preprocessed.png",
        suptitle=f"{case.case_id}: model grid {prepared.grid.shape} at {prepared.grid.spacing} mm",
    )
    _write(analyzer, case, analyzer.analyze(case), out, figures=True, quiet=False)
    return 0

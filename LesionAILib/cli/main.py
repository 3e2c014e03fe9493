"""The ``lesionai`` command line.

Every subcommand sits on top of LesionAILib like any other client. User mistakes end in one
line on stderr (``lesionai: error: <path>: <what> (<fix>)``) and exit status 2; ``--debug``
shows the traceback of unexpected failures.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path

from LesionAILib import __version__
from LesionAILib.errors import LesionAIError

EXIT_USER_ERROR = 2
EXIT_INTERRUPTED = 130


# --------------------------------------------------------------------------- shared helpers
def _parse_overrides(values: Sequence[str] | None) -> dict[str, str]:
    overrides = {}
    for value in values or []:
        role, sep, series = value.partition("=")
        if not sep or not series:
            raise LesionAIError(f"--series expects ROLE=NUMBER_OR_UID, got {value!r}", hint="e.g. --series t2w=10")
        overrides[role.strip()] = series.strip()
    return overrides


def _add_study_arguments(parser: argparse.ArgumentParser, nargs: str = "?") -> None:
    parser.add_argument(
        "study",
        nargs=nargs,
        help="DICOM study folder (any nesting) or PI-CAI case folder (<patient>_<study>_{t2w,adc,hbv}.mha)",
    )
    parser.add_argument("--t2w", metavar="FILE", help="axial T2 image file (.nii/.nii.gz/.mha/.mhd/.nrrd)")
    parser.add_argument("--adc", metavar="FILE", help="ADC map file (µm²/s; mm²/s is detected and rescaled)")
    parser.add_argument("--hbv", metavar="FILE", help="high b-value DWI file")
    parser.add_argument(
        "--series",
        action="append",
        metavar="ROLE=SERIES",
        help="choose a DICOM series for a role by series number or SeriesInstanceUID, e.g. --series t2w=10 "
        "(repeatable; always wins over the automatic choice)",
    )


def _open_study(args, study: str | None = None):
    from LesionAILib.studies.study import open_case

    files = {"t2w": args.t2w, "adc": args.adc, "hbv": args.hbv}
    return open_case(study if study is not None else args.study, _parse_overrides(args.series), files)


def _progress(total: int, description: str, enabled: bool = True):
    from tqdm import tqdm

    return tqdm(total=total, desc=description, unit="case", disable=not enabled or total <= 1, file=sys.stderr)


# --------------------------------------------------------------------------- inspect
def _cmd_inspect(args) -> int:
    from LesionAILib.studies.study import ROLES, inspect_study

    path = Path(args.study)
    overrides = _parse_overrides(args.series)
    if path.is_dir() and any(path.glob("*_t2w.mha")):  # a PI-CAI case folder: one file per role
        return _inspect_files(path, args.json)
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


def _inspect_files(path: Path, as_json: bool) -> int:
    from LesionAILib.geometry import Grid
    from LesionAILib.studies.study import ROLES, open_picai_case

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
def _cmd_preprocess(args) -> int:
    from LesionAILib.atomic_io import write_image_atomic, write_json_atomic
    from LesionAILib.geometry import Grid
    from LesionAILib.preprocessing.pipeline import PreprocessConfig, preprocess
    from LesionAILib.rendering import sequence_panels

    studies = args.study or [None]
    config = PreprocessConfig(shape=tuple(args.shape), spacing=tuple(args.spacing))
    out = Path(args.out)
    bar = _progress(len(studies), "preprocess")
    for study in studies:
        case = _open_study(args, study)
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
        bar.update(1)
        if len(studies) == 1:
            print(f"wrote {folder}/{{t2w,adc,hbv}}.nii.gz, preprocess.json, preprocessed.png")
    bar.close()
    if len(studies) > 1:
        print(f"wrote {len(studies)} cases under {out}")
    return 0


# --------------------------------------------------------------------------- phantom
def _cmd_phantom(args) -> int:
    from LesionAILib.phantom.generator import write_cohort

    bar = _progress(args.cases, f"phantom site {args.site}")

    def progress(done: int, total: int) -> None:
        bar.n = done
        bar.refresh()

    ids = write_cohort(Path(args.out), args.cases, site=args.site, seed=args.seed, progress=progress)
    bar.close()
    print(f"wrote {len(ids)} synthetic case(s) of site {args.site} (seed {args.seed}) to {args.out}")
    return 0


# --------------------------------------------------------------------------- analyze / demo
def _analyzer(args):
    from LesionAILib.inference.analyzer import Analyzer

    patch_classifier = args.classifier_model or (True if args.classifier else None)
    return Analyzer(args.model, device=args.device, tta=args.tta, patch_classifier=patch_classifier)


def _analyze_and_write(analyzer, case, out: Path, quiet: bool = False) -> None:
    from LesionAILib.inference.results import candidate_table, write_result

    result = analyzer.analyze(case)
    write_result(result, case, out)
    if not quiet:
        print(
            f"{result.case_id}: case score {result.case_score:.3f} ({len(result.candidates)} candidates) — "
            f"model: {result.model_name}"
        )
        print(candidate_table(result))
        if result.classifier_name:
            print(f"probabilities: {result.classifier_name} ({result.classifier_notice}) at each candidate's centre")
        print(
            f"wrote {out}/ (heatmap.nii.gz/.nrrd, detection_map, candidates.csv/.json, PNGs) "
            f"in {result.timings['total']:.2f} s on {result.device}"
        )


def _cmd_analyze(args) -> int:
    studies = args.study or [None]
    analyzer = _analyzer(args)
    out = Path(args.out)
    if len(studies) == 1:
        _analyze_and_write(analyzer, _open_study(args, studies[0]), out)
        return 0
    bar = _progress(len(studies), "analyze")
    failures = []
    for study in studies:
        try:
            case = _open_study(args, study)
            _analyze_and_write(analyzer, case, out / case.case_id, quiet=True)
        except LesionAIError as error:
            failures.append(str(error))
        bar.update(1)
    bar.close()
    print(f"analysed {len(studies) - len(failures)} of {len(studies)} studies into {out}")
    for failure in failures:
        print(f"lesionai: error: {failure}", file=sys.stderr)
    return EXIT_USER_ERROR if failures else 0


def _cmd_demo(args) -> int:
    from LesionAILib.models.modelfile import DEMO_NOTICE
    from LesionAILib.preprocessing.pipeline import preprocess
    from LesionAILib.rendering import sequence_panels
    from LesionAILib.studies.study import open_case

    out = Path(args.out)
    analyzer = _analyzer(args)
    if args.study:
        case = _open_study(args, args.study)
        print(
            f"Analysing {args.study} with the bundled model. {DEMO_NOTICE}: on real studies its output is "
            "not clinically meaningful; this shows the workflow and the geometry."
        )
    else:
        from LesionAILib.phantom.generator import generate_case, write_case

        phantom = generate_case(seed=args.seed, site="A", index=0)
        write_case(phantom, out / "phantom-case")
        case = open_case(out / "phantom-case" / "images" / phantom.patient_id)
        truth = ", ".join(f"GG{l.grade_group} {l.kind} in {l.zone} ({l.diameter_mm:.0f} mm)" for l in phantom.lesions)
        print(
            f"Generated synthetic case {phantom.case_id} (site A, seed {args.seed}) in {out / 'phantom-case'}; "
            f"ground truth: {truth or 'no lesion'}"
        )
        _inspect_files(out / "phantom-case" / "images" / phantom.patient_id, as_json=False)
    prepared = preprocess(case, analyzer.metadata.preprocess, device=analyzer.device)
    sequence_panels(
        [prepared.channel(r).cpu().numpy() for r in prepared.roles],
        [f"{r} (normalised)" for r in prepared.roles],
        out / "preprocessed.png",
        suptitle=f"{case.case_id}: model grid {prepared.grid.shape} at {prepared.grid.spacing} mm",
    )
    _analyze_and_write(analyzer, case, out)
    return 0


# --------------------------------------------------------------------------- classify
def _parse_point(text: str) -> tuple[float, float, float]:
    try:
        values = tuple(float(v) for v in text.replace(" ", "").split(","))
    except ValueError:
        values = ()
    if len(values) != 3:
        raise LesionAIError(f"--point expects X,Y,Z in mm, got {text!r}", hint="e.g. --point 25.7,31.9,-38.5")
    return values


def _cmd_classify(args) -> int:
    from LesionAILib.prostatex.figures import write_patch_strip
    from LesionAILib.prostatex.point_classification import PointClassifier

    point = _parse_point(args.point)
    case = _open_study(args)
    classifier = PointClassifier(args.model, device=args.device)
    result = classifier.classify(case, point, ras=args.ras, zone=args.zone)
    out = Path(args.out)
    frame = "RAS" if args.ras else "LPS"
    png = write_patch_strip(
        result.patches,
        out / "patches.png",
        f"{case.case_id} at {frame} ({', '.join(f'{v:g}' for v in point)}) mm: p = {result.probability:.2f} "
        f"— {result.model_name}",
        result.intended_use,
    )
    if args.json:
        print(json.dumps({"case_id": case.case_id, **result.to_dict(), "png": str(png)}, indent=2))
        return 0
    print(
        f"{case.case_id}: probability of clinically significant cancer {result.probability:.3f} at {frame} "
        f"({', '.join(f'{v:g}' for v in point)}) mm, zone {result.zone or 'unknown'} — model: {result.model_name} "
        f"({result.intended_use})"
    )
    print(f"wrote {png}")
    return 0


# --------------------------------------------------------------------------- train
def _cmd_train(args) -> int:
    from LesionAILib.jobs.events import EventLog
    from LesionAILib.training.trainer import Trainer, load_config

    config = load_config(args.config)
    if args.device:
        config.device = args.device
    if args.train:
        config.train = [str(Path(p).resolve()) for p in args.train]
    if args.val:
        config.val = [str(Path(p).resolve()) for p in args.val]
    run = Path(args.run_dir)
    events = EventLog(run / "progress.jsonl", echo=args.json_events, bar=not args.json_events and sys.stderr.isatty())
    if args.multisite:
        from LesionAILib.adaptation.multisite import MultisiteSettings, multisite_train

        if not args.pretrained or not args.reference:
            raise LesionAIError("--multisite needs --pretrained MODEL and --reference COHORT [COHORT ...]")
        settings = MultisiteSettings(order=args.order, replay_fraction=args.replay)
        model = multisite_train(config, run, args.pretrained, args.reference, settings, args.phase, args.out, events)
    else:
        model = Trainer(config, run, events).run(args.phase, args.out)
    print(f"model written to {model}")
    return 0


# --------------------------------------------------------------------------- evaluate
def _cmd_evaluate(args) -> int:
    from LesionAILib.evaluation.picai import evaluate_folders

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


# --------------------------------------------------------------------------- models / order / finetune
def _store(args):
    from LesionAILib.models.store import ModelStore

    return ModelStore(args.store)


def _cmd_models(args) -> int:
    store = _store(args)
    if args.action == "activate":
        store.activate(args.version)
        print(f"active model: {store.active}")
    elif args.action == "rollback":
        print(f"active model: {store.rollback()}")
    versions = store.versions()
    if args.json:
        print(
            json.dumps(
                {"store": str(store.root), "active": store.active, "versions": [v.to_dict() for v in versions]},
                indent=2,
            )
        )
        return 0
    print(f"model store {store.root}")
    for version in versions:
        after = version.validation.get("after", {}).get("score") if version.validation else None
        score = f"validation score {after:.3f}" if after is not None else ""
        marker = "*" if version.active else " "
        print(f"{marker} {version.version:<6} {version.created:<26} {score:<24} {version.note}")
    return 0


def _cases_of(folder: str):
    """Cases of a folder: a deployment dataset, else a cohort (PI-CAI layout)."""
    from LesionAILib.adaptation.deployment import read_deployment
    from LesionAILib.training.cohorts import read_cohort

    if (Path(folder) / "manifest.json").exists():
        dataset = read_deployment(folder)
        for problem in dataset.problems:
            print(f"lesionai: skipped {problem}", file=sys.stderr)
        return [c.record() for c in dataset.cases]
    return read_cohort(folder).cases


def _cmd_order(args) -> int:
    from LesionAILib.adaptation.ordering import order_by_similarity, order_by_uncertainty
    from LesionAILib.atomic_io import write_json_atomic
    from LesionAILib.inference.analyzer import Analyzer

    analyzer = Analyzer(args.model or (_store(args).active_path() if args.store else None), device=args.device)
    cases = _cases_of(args.dataset)
    bar = _progress(len(cases) + (0 if args.by == "uncertainty" else 1), f"order by {args.by}")

    def progress(done: int, total: int) -> None:
        bar.total = total
        bar.n = done
        bar.refresh()

    if args.by == "uncertainty":
        ordered = order_by_uncertainty(analyzer, cases, progress=progress)
    else:
        if not args.reference:
            raise LesionAIError("--by similarity needs --reference DATASET_A")
        ordered = order_by_similarity(analyzer, _cases_of(args.reference), cases, progress=progress)
    bar.close()
    rows = [item.to_dict() for item in ordered]
    if args.out:
        write_json_atomic(
            args.out, {"by": args.by, "dataset": args.dataset, "reference": args.reference, "order": rows}
        )
    if args.json:
        print(json.dumps(rows, indent=2))
    else:
        for rank, item in enumerate(ordered, start=1):
            print(f"{rank:>4}  {item.case_id:<24} {item.score:9.4f}")
    return 0


def _cmd_finetune(args) -> int:
    from LesionAILib.adaptation.finetuning import FinetuneSettings, finetune
    from LesionAILib.jobs.events import EventLog

    store = _store(args)
    settings = FinetuneSettings(epochs=args.epochs, classifier_epochs=args.classifier_epochs, device=args.device)
    run = Path(args.run_dir) if args.run_dir else None
    events = EventLog(
        (run or store.root / "runs" / "latest") / "progress.jsonl",
        echo=args.json_events,
        bar=not args.json_events and sys.stderr.isatty(),
    )
    result = finetune(args.dataset, store, args.base, settings, run, args.force, events)
    state = (
        "now active"
        if result.activated
        else "saved, not activated (validated worse; use --force or `lesionai models activate`)"
    )
    print(
        f"model version {result.version} ({state}); held-out score {result.validation_after['score']:.3f} "
        f"vs {result.validation_before['score']:.3f} for {result.base}"
    )
    return 0


# --------------------------------------------------------------------------- parser
def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="lesionai",
        description="LesionAI: prostate mpMRI lesion localization and classification. "
        "Physical coordinates are LPS millimetres unless an option says RAS.",
    )
    parser.add_argument("--version", action="version", version=f"lesionai {__version__}")
    parser.add_argument("--debug", action="store_true", help="show tracebacks of unexpected errors")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")

    inspect = commands.add_parser(
        "inspect",
        help="list a study's series and the T2/ADC/high-b roles chosen, with the reason",
        description="Read a DICOM study's headers, list every series and say which one is taken as T2, ADC "
        "and high-b, and why. Exits non-zero if a role cannot be filled or a chosen series is broken.",
    )
    inspect.add_argument("study", help="DICOM study folder (or a PI-CAI case folder)")
    inspect.add_argument("--series", action="append", metavar="ROLE=SERIES", help="override a role, e.g. t2w=10")
    inspect.add_argument("--json", action="store_true", help="print the report as JSON")
    inspect.set_defaults(handler=_cmd_inspect)

    prep = commands.add_parser(
        "preprocess",
        help="resample T2/ADC/high-b into one grid and normalise them",
        description="Resample every sequence into the T2-aligned target grid (physical space, oblique "
        "directions honoured) and normalise intensities; writes NIfTI volumes, a JSON record and a PNG.",
    )
    _add_study_arguments(prep, nargs="*")
    prep.add_argument("--out", required=True, help="output folder")
    prep.add_argument("--shape", type=int, nargs=3, default=(20, 256, 256), metavar=("Z", "Y", "X"))
    prep.add_argument("--spacing", type=float, nargs=3, default=(3.0, 0.5, 0.5), metavar=("Z", "Y", "X"))
    prep.add_argument("--center", type=float, nargs=3, metavar=("X", "Y", "Z"), help="grid centre, LPS mm")
    prep.add_argument("--device", default="auto", help="auto (CUDA if available), cpu or cuda")
    prep.set_defaults(handler=_cmd_preprocess)

    phantom = commands.add_parser(
        "phantom",
        help="generate a synthetic mpMRI cohort in the PI-CAI layout",
        description="Generate synthetic prostate mpMRI cases (T2, ADC, high-b on their own oblique grids, "
        "lesion masks and grades) for one acquisition site, deterministically from the seed.",
    )
    phantom.add_argument("--out", required=True, help="output folder (PI-CAI layout)")
    phantom.add_argument("--cases", type=int, default=10, help="number of cases (default 10)")
    phantom.add_argument("--site", default="A", help="acquisition profile: A, B, C or D (default A)")
    phantom.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    phantom.set_defaults(handler=_cmd_phantom)
    analyze = commands.add_parser(
        "analyze",
        help="find and grade lesion candidates in one or more studies",
        description="Preprocess, localize, extract candidates, classify them and write the heatmap, detection "
        "map and candidate table in the T2 series' geometry (loadable in 3D Slicer), plus PNGs.",
    )
    _add_study_arguments(analyze, nargs="*")
    _add_model_arguments(analyze)
    analyze.add_argument("--out", required=True, help="output folder (one subfolder per study when several)")
    analyze.set_defaults(handler=_cmd_analyze)

    demo = commands.add_parser(
        "demo",
        help="analyze a generated synthetic case (or a given study) with the bundled model",
        description="Without a study: generate a synthetic mpMRI case, analyze it with the bundled demo model, "
        "print the candidate table and write every output. With a study: analyze that.",
    )
    _add_study_arguments(demo)
    _add_model_arguments(demo)
    demo.add_argument("--out", default="demo-output", help="output folder (default demo-output)")
    demo.add_argument(
        "--seed",
        type=int,
        default=7,
        help="seed of the generated case (default 7: a grade-group-4 cancer and a BPH nodule)",
    )
    demo.set_defaults(handler=_cmd_demo)

    classify = commands.add_parser(
        "classify",
        help="probability of clinically significant cancer at a point (ProstateX-trained classifier)",
        description="Extract the ProstateX-style T2, ADC and high-b patches at a point (histogram-equalised, "
        "32 x 32 at each series' native resolution), score them with the patch classifier, print the "
        "probability and the model, and write the patches as a PNG strip. Research use only.",
    )
    _add_study_arguments(classify)
    classify.add_argument(
        "--point",
        required=True,
        metavar="X,Y,Z",
        help="the point in mm, LPS (DICOM patient coordinates) unless --ras; write --point=-X,Y,Z when X is negative",
    )
    classify.add_argument("--ras", action="store_true", help="the point is in RAS (3D Slicer) coordinates")
    classify.add_argument(
        "--zone",
        choices=("PZ", "TZ", "AS", "SV"),
        help="prostate zone of the point (default: unknown, averaged over PZ/TZ/AS by training frequency)",
    )
    classify.add_argument("--model", help="patch-classifier model file (default: the bundled ProstateX classifier)")
    classify.add_argument("--device", default="cpu", help="cpu (default), cuda or auto")
    classify.add_argument("--out", default="classify-output", help="folder for patches.png (default classify-output)")
    classify.add_argument("--json", action="store_true", help="print the result as JSON")
    classify.set_defaults(handler=_cmd_classify)

    train = commands.add_parser(
        "train",
        help="train the localization (phase 1) and classification (phase 2) networks",
        description="Two-phase joint training from a JSON configuration (see Resources/Configs/). Checkpoints "
        "every epoch into --run and resumes there after an interruption.",
    )
    train.add_argument("--config", required=True, help="training configuration (JSON)")
    train.add_argument("--run-dir", required=True, help="run folder: checkpoints, progress.jsonl, best models")
    train.add_argument("--phase", choices=("1", "2", "both"), default="both")
    train.add_argument("--out", help="final model file (default RUN/model.safetensors)")
    train.add_argument("--train", nargs="+", metavar="COHORT", help="training cohort folders (override the config's)")
    train.add_argument("--val", nargs="+", metavar="COHORT", help="validation cohort folders (override the config's)")
    train.add_argument("--device", help="override the configuration's device (auto, cpu, cuda)")
    train.add_argument("--json-events", action="store_true", help="print progress as JSON lines on stdout")
    site = train.add_argument_group(
        "multi-site training",
        "continue a pretrained model on a new site (--train), most similar cases first, replaying the old site",
    )
    site.add_argument("--multisite", action="store_true", help="multi-site schedule (needs the two options below)")
    site.add_argument("--pretrained", metavar="MODEL", help="model trained on the reference site")
    site.add_argument("--reference", nargs="+", metavar="COHORT", help="the reference site's cohort folder(s)")
    site.add_argument(
        "--order",
        choices=("similarity", "random", "none"),
        default="similarity",
        help="admission order of the new site's cases (default similarity)",
    )
    site.add_argument("--replay", type=float, default=0.3, help="share of each epoch replaying the reference site")
    train.set_defaults(handler=_cmd_train)

    evaluate = commands.add_parser(
        "evaluate",
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
    evaluate.set_defaults(handler=_cmd_evaluate)
    models = commands.add_parser(
        "models",
        help="list model versions; activate one or roll back",
        description="The model store keeps every fine-tuned version; one is active. Switching is atomic.",
    )
    models.add_argument("action", nargs="?", choices=("list", "activate", "rollback"), default="list")
    models.add_argument("version", nargs="?", help="version to activate (e.g. v2, demo)")
    models.add_argument("--store", help="model store folder (default $LESIONAI_HOME/models)")
    models.add_argument("--json", action="store_true")
    models.set_defaults(handler=_cmd_models)

    order = commands.add_parser(
        "order",
        help="order cases by model uncertainty or by similarity to a reference dataset",
        description="--by uncertainty DATASET: most uncertain first (which case to annotate next, the "
        "fine-tuning order). --by similarity --reference A B: B's cases most similar to A first (the "
        "multi-site training order).",
    )
    order.add_argument("dataset", help="cohort folder or deployment dataset")
    order.add_argument("--by", choices=("uncertainty", "similarity"), required=True)
    order.add_argument("--reference", help="reference dataset for --by similarity")
    order.add_argument("--model", help="model file (default: the store's active model, else the bundled one)")
    order.add_argument("--store", help="model store folder")
    order.add_argument("--device", default="auto")
    order.add_argument("--out", help="also write the order as JSON here")
    order.add_argument("--json", action="store_true", help="print a JSON list of {case, score}")
    order.set_defaults(handler=_cmd_order)

    finetune = commands.add_parser(
        "finetune",
        help="fine-tune the active model on a deployment dataset (uncertainty order) into a new version",
        description="Fine-tunes on the annotated deployment cases, most uncertain first, validates on held-out "
        "ones and stores a new model version; it becomes active only if it validates at least as well.",
    )
    finetune.add_argument("--dataset", required=True, help="deployment dataset folder")
    finetune.add_argument("--store", help="model store folder (default $LESIONAI_HOME/models)")
    finetune.add_argument("--base", help="version to start from (default: the active one)")
    finetune.add_argument("--run-dir", help="run folder (checkpoints; rerun with the same folder to resume)")
    finetune.add_argument("--epochs", type=int, default=8, help="localization epochs (default 8)")
    finetune.add_argument("--classifier-epochs", type=int, default=4, help="classification epochs (default 4)")
    finetune.add_argument("--force", action="store_true", help="activate even if validation is worse")
    finetune.add_argument("--device", default="auto")
    finetune.add_argument("--json-events", action="store_true", help="print progress as JSON lines on stdout")
    finetune.set_defaults(handler=_cmd_finetune)
    return parser


def _add_model_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--model", help="model file (.safetensors); default: the bundled demo model")
    parser.add_argument("--device", default="auto", help="auto (CUDA if available), cpu or cuda")
    parser.add_argument("--tta", action="store_true", help="test-time augmentation (left-right mirror)")
    parser.add_argument(
        "--classifier",
        action="store_true",
        help="rescore each candidate with the ProstateX-trained patch classifier (real patients; research use)",
    )
    parser.add_argument("--classifier-model", metavar="FILE", help="patch-classifier file for --classifier")


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "handler", None):
        parser.print_help()
        return EXIT_USER_ERROR
    try:
        return int(args.handler(args) or 0)
    except LesionAIError as error:
        print(f"lesionai: error: {error}", file=sys.stderr)
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
        print(f"lesionai: error: {error.filename or ''}: {error.strerror or error}", file=sys.stderr)
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

"""``lesionai train-synthesis`` and the ``analyze --abnormality`` options: the label-free abnormality map."""

from __future__ import annotations

import argparse
import shlex
import sys
import time
from pathlib import Path

from LesionAILib.cli import options
from LesionAILib.errors import LesionAIError
from LesionAILib.jobs.events import DONE


def register(commands: argparse._SubParsersAction) -> None:
    train = options.add_command(
        commands,
        "train-synthesis",
        run_train_synthesis,
        help="train the inpainting network of the abnormality map on lesion-free studies (no lesion labels needed)",
        description="Train the 3D inpainting network (T2, ADC and high-b synthesised jointly inside hidden boxes "
        "from their surroundings) on the cases of --train, leaving labelled lesions out of the loss, then fit "
        "the normal-tissue discrepancy statistics on held-out cases and write a synthesis model file "
        "(safetensors + JSON card). Checkpoints into --run-dir and resumes there.",
    )
    train.add_argument("--train", nargs="+", required=True, metavar="DIR", help="cohort folder(s) (PI-CAI layout)")
    train.add_argument("--out", required=True, metavar="MODEL", help="synthesis model file to write (.safetensors)")
    train.add_argument("--run-dir", metavar="DIR", help="checkpoints, cache and progress.jsonl (default MODEL.run/)")
    train.add_argument("--steps", type=int, default=300, help="optimisation steps (default 300)")
    train.add_argument("--batch", type=int, default=4, help="crops per step (default 4)")
    train.add_argument("--width", type=int, default=8, help="network width (default 8)")
    train.add_argument("--seed", type=int, default=0)
    train.add_argument("--name", help="model name (default: the output file's stem)")
    train.add_argument(
        "--synthetic", action="store_true", help="the training data are synthetic phantoms (the card then says so)"
    )
    options.add_device_option(train)
    options.add_job_options(train)


def add_abnormality_options(parser: argparse.ArgumentParser) -> None:
    """``--abnormality`` and ``--abnormality-model`` for ``lesionai analyze``."""
    group = parser.add_argument_group("abnormality map by synthesis")
    group.add_argument(
        "--abnormality",
        action="store_true",
        help="also write abnormality.nii.gz (label-free map: real vs synthesised content) and its candidates",
    )
    group.add_argument(
        "--abnormality-model",
        metavar="FILE",
        help="synthesis model file: a 3D one (from train-synthesis) or a 2D patch one (from "
        "train-synthesis-prostatex, slid over the gland slice by slice); default: the bundled 2D model trained "
        "on real ProstateX patients (Resources/Models/lesionai-synthesis-prostatex-2d.safetensors)",
    )
    group.add_argument(
        "--abnormality-panels",
        action="store_true",
        help="write abnormality_candidate_<id>.png (incomplete / synthesised / real / difference at each "
        "abnormality candidate) even with --no-figures",
    )


def abnormality_writer(args):
    """``write(case, result, out, figures, quiet)`` adding the abnormality outputs to a result folder.

    ``None`` without ``--abnormality``.
    """
    panels = getattr(args, "abnormality_panels", False)
    if not getattr(args, "abnormality", False):
        if panels:
            raise LesionAIError(
                "--abnormality-panels needs --abnormality", hint="add --abnormality --abnormality-model FILE"
            )
        return None
    from LesionAILib.synthesis.outputs import write_abnormality
    from LesionAILib.synthesis.prostatex_model import BUNDLED_PATH
    from LesionAILib.synthesis.slice_analysis import abnormality_analyzer

    analyzer = abnormality_analyzer(args.abnormality_model or BUNDLED_PATH, device=args.device)

    def write(case, result, out: Path, figures: bool, quiet: bool) -> None:
        gland = result.gland.mask if result.gland is not None and not result.gland.empty else None
        abnormality = analyzer.analyze(case, gland)
        write_abnormality(abnormality, out, analyzer.metadata.sha256, figures=figures or panels)
        if quiet:
            return
        print(
            f"abnormality map: {len(abnormality.candidates)} candidates over the {abnormality.region_source} "
            f"({abnormality.boxes} boxes) — model: {abnormality.model_name}"
        )

    return write


def run_train_synthesis(args) -> int:
    from LesionAILib.devices import resolve_device
    from LesionAILib.synthesis.datasets import cohort_volumes
    from LesionAILib.synthesis.mapping import MaskSettings
    from LesionAILib.synthesis.model_file import SynthesisMetadata, save_synthesis_model
    from LesionAILib.synthesis.network import InpaintingConfig
    from LesionAILib.synthesis.training import SynthesisTraining, calibrate, calibration_split, train_inpainting
    from LesionAILib.synthesis.volumes import SYNTHESIS_PREPROCESS

    out = Path(args.out)
    run = Path(args.run_dir) if args.run_dir else out.with_name(out.name + ".run")
    events, cancel = options.job_events(args, run / "progress.jsonl"), options.cancel_token(args, run / "CANCEL")
    device = resolve_device(args.device)
    start = time.perf_counter()
    with cancel.installed():
        ids, volumes = cohort_volumes(args.train, run / "cache", progress=events.progress_callback("prepare", cancel))
        training, calibration = calibration_split(len(volumes))
        architecture = InpaintingConfig(width=args.width)
        recipe = SynthesisTraining(steps=args.steps, batch=args.batch, seed=args.seed)
        masks = MaskSettings()

        def progress(step: int, steps: int, loss: float) -> None:
            cancel.check()
            events.progress("train", step, steps, loss=loss)

        net, history = train_inpainting(
            [volumes[i] for i in training],
            architecture,
            recipe,
            masks,
            run,
            [ids[i] for i in training],
            progress,
            device,
        )
        cancel.check()
        events.progress("calibrate", 0, 1)
        statistics = calibrate(net.to(device), [volumes[i] for i in calibration], masks, device=device)
        labelled = sum(1 for v in volumes if v.lesions is not None and v.lesions.any())
        metadata = SynthesisMetadata(
            name=args.name or out.stem,
            architecture=architecture,
            normal_tissue=statistics,
            preprocess=SYNTHESIS_PREPROCESS,
            masks=masks.to_dict(),
            description="Inpainting network for the abnormality map by synthesis (T2, ADC, high-b jointly); "
            "trained on lesion-free tissue only (labelled lesions left out of the loss).",
            training={
                "data": [str(Path(p).resolve()) for p in args.train],
                "cases": len(ids),
                "training_cases": [ids[i] for i in training],
                "calibration_cases": [ids[i] for i in calibration],
                "cases_with_lesion_labels": labelled,
                "recipe": recipe.to_dict(),
                "history": history,
                "command": "lesionai " + " ".join(shlex.quote(a) for a in sys.argv[1:]),
                "minutes": round((time.perf_counter() - start) / 60.0, 2),
            },
            synthetic_training_data=bool(args.synthetic),
        )
        save_synthesis_model(net, metadata, out)
    events.emit(DONE, model=str(out), normal_tissue=statistics.to_dict())
    print(f"synthesis model written to {out} ({len(training)} training, {len(calibration)} calibration cases)")
    return 0

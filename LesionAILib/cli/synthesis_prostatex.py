"""``lesionai train-synthesis-prostatex``: the 2D synthesis model on real ProstateX finding patches."""

from __future__ import annotations

import argparse
import shlex
import sys
from pathlib import Path

from LesionAILib.cli import options
from LesionAILib.jobs.events import DONE


def register(commands: argparse._SubParsersAction) -> None:
    train = options.add_command(
        commands,
        "train-synthesis-prostatex",
        run_train_synthesis_prostatex,
        help="train the 2D abnormality-map inpainting on real ProstateX finding patches (no lesion labels used)",
        description="Train the 2D inpainting network (ADC and high-b synthesised jointly in a hidden 16 mm box "
        "from 64 mm of context; the central 12 mm around each finding left out of the loss) on the ProstateX "
        "findings dataset, leaving out the patients of --exclude (by default ProstateX-0000 and -0001, the "
        "studies the map is shown on), fit the normal-tissue statistics and write a synthesis model file "
        "(safetensors + JSON) that `lesionai analyze --abnormality --abnormality-model FILE` slides over a "
        "real study's prostate slice by slice.",
    )
    train.add_argument(
        "--findings", required=True, metavar="DIR", help="the ProstateX findings folder (patches_32x32.npz)"
    )
    train.add_argument("--out", required=True, metavar="MODEL", help="synthesis model file to write (.safetensors)")
    train.add_argument(
        "--exclude",
        nargs="*",
        metavar="PATIENT",
        help="patients left out of training (default: ProstateX-0000 ProstateX-0001)",
    )
    train.add_argument("--steps", type=int, default=150, help="optimisation steps (default 150, as the CV benchmark)")
    train.add_argument("--batch", type=int, default=16, help="patches per step (default 16)")
    train.add_argument("--width", type=int, default=16, help="network width (default 16)")
    train.add_argument("--seed", type=int, default=0)
    train.add_argument("--name", help="model name (default: the output file's stem)")
    options.add_job_options(train)


def run_train_synthesis_prostatex(args) -> int:
    from LesionAILib.synthesis.patch_inpainting import PatchTraining
    from LesionAILib.synthesis.prostatex_model import EXCLUDED_PATIENTS, train_prostatex_synthesis

    out = Path(args.out)
    events, cancel = options.job_events(args), options.cancel_token(args)
    recipe = PatchTraining(steps=args.steps, batch=args.batch, width=args.width, seed=args.seed)
    excluded = tuple(args.exclude) if args.exclude is not None else EXCLUDED_PATIENTS

    def progress(step: int, steps: int, loss: float) -> None:
        cancel.check()
        events.progress("train", step, steps, loss=loss)

    with cancel.installed():
        metadata = train_prostatex_synthesis(
            args.findings,
            out,
            recipe,
            excluded,
            name=args.name or out.stem,
            command="lesionai " + " ".join(shlex.quote(a) for a in sys.argv[1:]),
            progress=progress,
        )
    events.emit(DONE, model=str(out), normal_tissue=metadata.normal_tissue.to_dict())
    print(
        f"synthesis model written to {out} ({metadata.training['findings']} findings of "
        f"{metadata.training['patients']} patients; left out: {', '.join(excluded) or 'none'})"
    )
    return 0

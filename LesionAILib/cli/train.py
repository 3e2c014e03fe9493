"""``lesionai train``: two-phase training from a configuration, or multi-site continuation of a pretrained model."""

from __future__ import annotations

import argparse
from pathlib import Path

from LesionAILib.cli import options
from LesionAILib.errors import LesionAIError


def register(commands: argparse._SubParsersAction) -> None:
    train = options.add_command(
        commands,
        "train",
        run_train,
        help="train the localization (phase 1) and classification (phase 2) networks",
        description="Two-phase joint training from a JSON configuration (see Resources/Configs/). Checkpoints "
        "every epoch into --run-dir and resumes there after an interruption.",
    )
    train.add_argument("--config", required=True, help="training configuration (JSON)")
    train.add_argument("--run-dir", required=True, help="run folder: checkpoints, progress.jsonl, best models")
    train.add_argument("--phase", choices=("1", "2", "both"), default="both")
    train.add_argument("--out", help="final model file (default RUN/model.safetensors)")
    train.add_argument("--train", nargs="+", metavar="COHORT", help="training cohort folders (override the config's)")
    train.add_argument("--val", nargs="+", metavar="COHORT", help="validation cohort folders (override the config's)")
    options.add_device_option(train, default=None)
    options.add_job_options(train)
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


def run_train(args) -> int:
    from LesionAILib.training.config import load_config
    from LesionAILib.training.trainer import Trainer

    config = load_config(args.config)
    if args.device:
        config.device = args.device
    if args.train:
        config.train = [str(Path(p).resolve()) for p in args.train]
    if args.val:
        config.val = [str(Path(p).resolve()) for p in args.val]
    run = Path(args.run_dir)
    events = options.job_events(args, run / "progress.jsonl")
    cancel = options.cancel_token(args, run / "CANCEL")
    if args.multisite:
        from LesionAILib.adaptation.multisite import MultisiteSettings, multisite_train

        if not args.pretrained or not args.reference:
            raise LesionAIError("--multisite needs --pretrained MODEL and --reference COHORT [COHORT ...]")
        settings = MultisiteSettings(order=args.order, replay_fraction=args.replay)
        model = multisite_train(
            config, run, args.pretrained, args.reference, settings, args.phase, args.out, events, cancel
        )
    else:
        model = Trainer(config, run, events, cancel).run(args.phase, args.out)
    print(f"model written to {model}")
    return 0

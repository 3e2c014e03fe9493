"""``lesionai phantom``: a synthetic mpMRI cohort of one acquisition site, in the PI-CAI layout."""

from __future__ import annotations

import argparse
from pathlib import Path

from LesionAILib.cli import options


def register(commands: argparse._SubParsersAction) -> None:
    phantom = options.add_command(
        commands,
        "phantom",
        run_phantom,
        help="generate a synthetic mpMRI cohort in the PI-CAI layout",
        description="Generate synthetic prostate mpMRI cases (T2, ADC, high-b on their own oblique grids, "
        "lesion masks and grades) for one acquisition site, deterministically from the seed.",
    )
    phantom.add_argument("--out", required=True, help="output folder (PI-CAI layout)")
    phantom.add_argument("--cases", type=int, default=10, help="number of cases (default 10)")
    phantom.add_argument(
        "--site",
        default="A",
        help="acquisition profile: A, B, C, D, or E, the held-out test site outside the range of A-D (default A)",
    )
    phantom.add_argument("--seed", type=int, default=0, help="random seed (default 0)")


def run_phantom(args) -> int:
    from LesionAILib.phantom.cohort import write_cohort

    events = options.job_events(args, bar=args.cases > 1)
    progress = events.progress_callback(f"phantom site {args.site}")
    ids = write_cohort(Path(args.out), args.cases, site=args.site, seed=args.seed, progress=progress)
    events.close()
    print(f"wrote {len(ids)} synthetic case(s) of site {args.site} (seed {args.seed}) to {args.out}")
    return 0

"""Committed state of the long adaptation benchmarks, so a run can span working sessions.

The work folder (``.benchmark-work/``) is ignored by git and does not survive a fresh checkout, so
the cache that lets a stopped benchmark resume would be lost with it. This module keeps the part
of that cache a resumed run needs and that is small, in the repository:

* the site-A model every fine-tune starts from (``site-A-model.safetensors``, about 1 MB): a
  retrained one would differ in its last bits and make the cached arms incomparable with new ones;
* the per-arm, per-seed result files (``results/<bench>/*.json``, a few kB each);
* ``size.json``: the benchmark size (:class:`adaptation_setup.Size`) they belong to. State of one
  size is never restored into a run of another (``--quick`` and ``--smoke`` runs start clean).

Cohorts and preprocessed cases are not kept: a phantom case depends only on (seed, site, index)
and is rewritten bit-identically. Commands::

    .venv/bin/python benchmarks/benchmark_state.py save      # work folder -> benchmarks/state/adaptation
    .venv/bin/python benchmarks/benchmark_state.py restore   # the other way (also done by every run)

``restore`` never overwrites a file that exists in the work folder.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import shutil
from pathlib import Path

from LesionAILib.atomic_io import write_atomic, write_text_atomic

STATE = Path(__file__).resolve().parent / "state" / "adaptation"
KEPT = ("site-A-model.safetensors",)
RESULT_FOLDERS = ("active-learning", "multisite")


def _size_document(size) -> dict:
    return {k: list(v) if isinstance(v, tuple) else v for k, v in dataclasses.asdict(size).items()}


def restore(work: Path, size, state: Path = STATE) -> list[Path]:
    """Copy the committed state of ``size`` into ``work`` where the work folder lacks it; returns
    the files copied. Nothing is copied when the state belongs to another size or is absent."""
    marker = state / "size.json"
    if not marker.exists() or json.loads(marker.read_text(encoding="utf-8")) != _size_document(size):
        return []
    copied = []
    for source in [state / name for name in KEPT] + sorted(state.glob("results/*/*.json")):
        target = work / source.relative_to(state)
        if source.exists() and not target.exists():
            target.parent.mkdir(parents=True, exist_ok=True)
            copied.append(write_atomic(target, lambda temporary, source=source: shutil.copyfile(source, temporary)))
    return copied


def save(work: Path, size, state: Path = STATE) -> list[Path]:
    """Copy the site-A model and every finished result file of ``work`` into ``state``."""
    saved = []
    state.mkdir(parents=True, exist_ok=True)
    write_text_atomic(state / "size.json", json.dumps(_size_document(size), indent=1) + "\n")
    sources = [work / name for name in KEPT]
    for folder in RESULT_FOLDERS:
        sources += sorted((work / "results" / folder).glob("*.json"))
    for source in sources:
        if source.exists():
            target = state / source.relative_to(work)
            target.parent.mkdir(parents=True, exist_ok=True)
            saved.append(write_atomic(target, lambda temporary, source=source: shutil.copyfile(source, temporary)))
    return saved


def main() -> None:
    from adaptation_setup import Size
    from common import ROOT

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("action", choices=("save", "restore"))
    parser.add_argument("--work", default=str(ROOT / ".benchmark-work" / "adaptation"))
    args = parser.parse_args()
    work = Path(args.work)
    files = save(work, Size()) if args.action == "save" else restore(work, Size())
    print(f"{args.action}: {len(files)} files")
    for path in files:
        print(f"  {path}")


if __name__ == "__main__":
    main()

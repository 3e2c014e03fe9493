"""Robustness run: analyze phantom cases of random acquisition profiles, count crashes and inconsistent outputs.

Each case is drawn from its own random acquisition profile (``LesionAILib.phantom.random_profiles``:
matrix, in-plane resolution, slice thickness and count, SNR, b-values, computed/acquired high-b,
ADC calibration, DWI tilt, bias field, misregistration — wider ranges than sites A–D), written as
files, opened through the file path a user takes (``studies`` readers), analyzed with the bundled
demo model, and checked with ``LesionAILib.evaluation.result_checks.result_problems``: every map in
the T2 geometry, every candidate of the table in the maps, the detection map accepted by
picai-eval's own ``parse_detection_map`` with one blob per candidate.

What it shows: the analysis path does not crash and writes consistent outputs on acquisitions it
was not built for. What it does not show: that the candidates are right (accuracy is
``benchmarks/accuracy.py``'s job); the demo model's scores on these profiles mean little.

Run: ``.venv/bin/python benchmarks/robustness.py [--cases 300] [--cache DIR]``. Results are cached
per case (one JSON line each in ``DIR/robustness.jsonl``); a stopped run resumes where it stopped.
Last line: ``cases=<n> crashes=<n> invalid_maps=<n> inconsistent=<n>``.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
import traceback
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import SimpleITK as sitk  # noqa: E402
from common import ROOT, machine, print_table  # noqa: E402

from LesionAILib.evaluation.result_checks import result_problems  # noqa: E402
from LesionAILib.inference.analyzer import Analyzer  # noqa: E402
from LesionAILib.phantom.cases import generate_case  # noqa: E402
from LesionAILib.phantom.random_profiles import random_profile  # noqa: E402
from LesionAILib.studies.files import open_files  # noqa: E402


def run_case(index: int, analyzer: Analyzer, folder: Path) -> dict:
    """One random-profile case end to end; a record of what happened (never raises)."""
    profile = random_profile(index)
    started = time.perf_counter()
    record = {"index": index, "profile": profile.name, "t2_slice_mm": profile.t2_slice_mm}
    try:
        phantom = generate_case(seed=index, site=profile)
        paths = {}
        for role in ("t2w", "adc", "hbv"):
            paths[role] = folder / f"{role}.mha"
            sitk.WriteImage(getattr(phantom, role), str(paths[role]))
        case = open_files(paths["t2w"], paths["adc"], paths["hbv"], patient_id=profile.name)
        result = analyzer.analyze(case)
        problems = result_problems(result, case.t2w)
        record.update(candidates=len(result.candidates), problems=problems, dropped=len(result.warnings))
    except Exception as error:  # a crash is what this run counts
        record.update(crash=f"{type(error).__name__}: {error}", traceback=traceback.format_exc(limit=4))
    record["seconds"] = round(time.perf_counter() - started, 2)
    return record


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--cases", type=int, default=300)
    parser.add_argument("--cache", type=Path, default=ROOT / ".lesionai-cache" / "benchmarks" / "robustness")
    args = parser.parse_args(argv)
    args.cache.mkdir(parents=True, exist_ok=True)
    log = args.cache / "robustness.jsonl"
    done = {}
    if log.exists():
        for line in log.read_text().splitlines():
            record = json.loads(line)
            done[record["index"]] = record
    print(f"machine: {machine()}; {len(done)} cases cached in {log}")
    analyzer = Analyzer(None, device="cpu")
    with tempfile.TemporaryDirectory() as scratch, log.open("a") as handle:
        for index in range(args.cases):
            if index in done:
                continue
            record = run_case(index, analyzer, Path(scratch))
            handle.write(json.dumps(record) + "\n")
            handle.flush()
            done[index] = record
            if "crash" in record or record["problems"]:
                print(f"case {index}: {record.get('crash') or record['problems']}")
    records = [done[i] for i in range(args.cases)]
    crashes = [r for r in records if "crash" in r]
    invalid = [r for r in records if any("picai-eval" in p for p in r.get("problems", []))]
    inconsistent = [r for r in records if r.get("problems")]
    rows = [
        ("cases", len(records)),
        ("crashes", len(crashes)),
        ("detection maps picai-eval refuses", len(invalid)),
        ("cases with any inconsistency", len(inconsistent)),
        ("candidates in tables", sum(r.get("candidates", 0) for r in records)),
        ("candidates dropped (no voxel in the T2 volume)", sum(r.get("dropped", 0) for r in records)),
        ("median seconds per case (generate + write + analyze)", statistics.median(r["seconds"] for r in records)),
    ]
    print_table(["quantity", "value"], rows)
    for record in crashes[:5]:
        print(f"case {record['index']} ({record['profile']}):\n{record['traceback']}")
    print(f"cases={len(records)} crashes={len(crashes)} invalid_maps={len(invalid)} inconsistent={len(inconsistent)}")
    return 0 if not inconsistent and not crashes else 1


if __name__ == "__main__":
    sys.exit(main())

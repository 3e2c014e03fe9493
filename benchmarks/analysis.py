"""Speed and memory of ``Analyzer.analyze`` per case (preprocessing included, DICOM reading excluded).

Cases: the real ProstateX-0000 study and one synthetic phantom case. Stages: preprocess,
localization network, candidate extraction, classification network, resampling back to T2.
Peak RSS is the whole process's high-water mark (Python, torch and the model included).

Run: ``.venv/bin/python benchmarks/analysis.py [--model M] [--repeats N]``. Last line:
``cpu_seconds_per_case=<median total seconds on the CPU for ProstateX-0000>``.
"""

from __future__ import annotations

import argparse
import statistics
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import torch  # noqa: E402
from common import machine, peak_rss_mb, print_table, require_shared  # noqa: E402

from LesionAILib.inference.analyzer import Analyzer  # noqa: E402
from LesionAILib.phantom.cases import generate_case  # noqa: E402
from LesionAILib.studies.case import Case, SeriesSource  # noqa: E402
from LesionAILib.studies.dicom_study import open_dicom_study  # noqa: E402

STAGES = ("preprocess", "localization", "candidates", "classification", "resample_to_t2", "total")


def phantom_case() -> Case:
    phantom = generate_case(seed=7, site="A", index=3)
    sources = {r: SeriesSource(r, "synthetic", [phantom.case_id]) for r in ("t2w", "adc", "hbv")}
    return Case(phantom.t2w, phantom.adc, phantom.hbv, phantom.patient_id, phantom.study_id, sources)


def measure(analyzer: Analyzer, case: Case, repeats: int) -> dict[str, float]:
    analyzer.analyze(case)  # warm-up (allocators, oneDNN/cuDNN kernels)
    runs = [analyzer.analyze(case).timings for _ in range(repeats)]
    return {stage: statistics.median(run[stage] for run in runs) for stage in STAGES}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", help="model file (default: the bundled demo model)")
    parser.add_argument("--repeats", type=int, default=10)
    args = parser.parse_args()

    cases = {
        "ProstateX-0000": open_dicom_study(require_shared("prostatex") / "ProstateX-0000"),
        "phantom (site A)": phantom_case(),
    }
    devices = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
    rows, cpu_total = [], None
    for device in devices:
        analyzer = Analyzer(args.model, device=device)
        for name, case in cases.items():
            timing = measure(analyzer, case, args.repeats)
            rows.append([name, device, *(f"{1000 * timing[s]:.1f}" for s in STAGES)])
            if device == "cpu" and name == "ProstateX-0000":
                cpu_total = timing["total"]
    print(f"machine: {machine()}")
    print(
        f"model: {analyzer.metadata.display_name}; grid {analyzer.metadata.preprocess.shape} "
        f"at {analyzer.metadata.preprocess.spacing} mm; median of {args.repeats} runs, milliseconds"
    )
    print_table(["case", "device", *[f"{s} ms" for s in STAGES]], rows)
    print(
        f"peak RSS of the process: {peak_rss_mb():.0f} MB"
        + (
            f"; GPU peak allocated {torch.cuda.max_memory_allocated() / 2**20:.0f} MB"
            if torch.cuda.is_available()
            else ""
        )
    )
    print(f"cpu_seconds_per_case={cpu_total:.3f}")


if __name__ == "__main__":
    main()

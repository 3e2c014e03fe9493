"""Preprocessing speed and memory on ProstateX-0000: LesionAI vs picai-prep, same case, same run.

Both take the three series already in memory (DICOM reading excluded) and produce T2, ADC and
high-b on a 20 × 256 × 256 grid at 3.0 × 0.5 × 0.5 mm. picai-prep's ``Sample.preprocess``
resamples each scan to the spacing (B-spline), centre-crops/pads and resamples to the first scan;
LesionAI resamples each series once into the T2-aligned grid (trilinear) and normalises intensities.

Run: ``.venv/bin/python benchmarks/preprocessing.py [--repeats N]``. Last line:
``speedup_vs_picai_prep=<picai-prep median / LesionAI CPU median>``.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import SimpleITK as sitk  # noqa: E402
import torch  # noqa: E402
from common import current_rss_mb, machine, median_ms, peak_rss_mb, print_table, require_shared, time_call  # noqa: E402

from LesionAILib.preprocessing.pipeline import PreprocessConfig, preprocess  # noqa: E402
from LesionAILib.studies.dicom_study import open_dicom_study  # noqa: E402

SHAPE, SPACING = (20, 256, 256), (3.0, 0.5, 0.5)


def picai_prep_once(case) -> None:
    from picai_prep.preprocessing import PreprocessingSettings, Sample

    scans = [sitk.Image(case.image(role)) for role in ("t2w", "adc", "hbv")]
    sample = Sample(scans=scans, settings=PreprocessingSettings(matrix_size=list(SHAPE), spacing=list(SPACING)))
    sample.preprocess()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=15)
    parser.add_argument("--picai-repeats", type=int, default=5)
    args = parser.parse_args()

    case = open_dicom_study(require_shared("prostatex") / "ProstateX-0000")
    config = PreprocessConfig(shape=SHAPE, spacing=SPACING)
    rows = []

    before = current_rss_mb()
    picai = time_call(lambda: picai_prep_once(case), args.picai_repeats)
    picai_peak = peak_rss_mb() - before
    rows.append(["picai-prep Sample.preprocess (B-spline, 2 passes)", "cpu", f"{median_ms(picai):.1f}", "1.0"])

    ours = time_call(lambda: preprocess(case, config, device="cpu", backend="sitk"), args.repeats, warmup=2)
    ratio = median_ms(picai) / median_ms(ours)
    rows.append(
        ["LesionAI preprocess (SimpleITK linear + numpy normalise)", "cpu", f"{median_ms(ours):.1f}", f"{ratio:.1f}"]
    )

    torch_cpu = time_call(lambda: preprocess(case, config, device="cpu", backend="torch"), max(3, args.repeats // 3))
    rows.append(
        [
            "LesionAI preprocess (torch grid_sample)",
            "cpu",
            f"{median_ms(torch_cpu):.1f}",
            f"{median_ms(picai) / median_ms(torch_cpu):.1f}",
        ]
    )
    gpu_note = ""
    if torch.cuda.is_available():
        torch.cuda.reset_peak_memory_stats()
        gpu = time_call(
            lambda: preprocess(case, config, device="cuda"), args.repeats, warmup=3, synchronize=torch.cuda.synchronize
        )
        rows.append(
            [
                "LesionAI preprocess (torch, incl. host→device copy)",
                "cuda",
                f"{median_ms(gpu):.2f}",
                f"{median_ms(picai) / median_ms(gpu):.1f}",
            ]
        )
        gpu_note = f"; GPU peak allocated {torch.cuda.max_memory_allocated() / 2**20:.0f} MB"

    print(f"machine: {machine()}")
    print(f"case: ProstateX-0000 (T2 384×384×19, ADC/high-b 84×128×19) → {SHAPE} at {SPACING} mm; medians")
    print_table(["method", "device", "ms per case", "speed-up vs picai-prep"], rows)
    print(
        f"peak RSS increase over the loaded case: {peak_rss_mb() - before:.0f} MB "
        f"(picai-prep phase {picai_peak:.0f} MB){gpu_note}"
    )
    print(f"speedup_vs_picai_prep={ratio:.1f}")


if __name__ == "__main__":
    main()

"""Gland segmentation: LesionAI's 1–2 window TAPS inference vs the TAPS package's full sliding window, same run.

Per case (ProstateX-0000 and -0001 from DICOM; synthetic phantoms), in this order and in one process:

* **ours** — ``GlandSegmenter("cpu").segment(t2)`` (model already loaded; preprocessing, windows,
  blur, back to the T2 grid and quality checks included), ``--repeats`` times: median, sample std.
* **package** — ``taps.segment(t2.nii.gz, out, None, device="cpu", exact=True)`` of ``lavlab-taps``
  1.1.2 (MONAI preprocessing, onnxruntime, half-overlapping 128 × 128 × 32 windows over the whole
  foreground box), once per case (it is slow): its wall time includes reading and writing NIfTI and
  building its onnxruntime session, which ours does once outside the timing (model load reported apart).

Reported: wall seconds, the ratio, Dice between the two masks, volumes, windows; for phantoms the
Dice of each against the phantom's prostate (zones) mask — the phantom is not real anatomy, so that
says how a real-patient model sees our synthetic T2, nothing about accuracy on patients. Also the
largest logit difference between our torch network and onnxruntime on one real window.

Caveat: wall times depend on what else runs on the machine; the load average before and after is
printed. Results are cached per arm and case in ``--work`` (rerun to resume; ``--fresh`` to redo).

Run: ``nice -n 10 .venv/bin/python benchmarks/gland.py [--repeats 3] [--phantoms 2] [--work DIR]``.
Needs ``lavlab-taps==1.1.2`` with ``monai``, ``nibabel`` and ``onnxruntime`` (the package's own arm).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import numpy as np  # noqa: E402
import SimpleITK as sitk  # noqa: E402
import torch  # noqa: E402
from common import machine, print_table, require_shared  # noqa: E402

from LesionAILib.geometry import Grid  # noqa: E402
from LesionAILib.gland.model_file import installed_model_path  # noqa: E402
from LesionAILib.gland.segmentation import WINDOW_ZYX, GlandSegmenter, crop_block, window_start  # noqa: E402


def dice(a: np.ndarray, b: np.ndarray) -> float:
    total = float(a.sum() + b.sum())
    return 2.0 * float((a & b).sum()) / total if total else 1.0


def cases(phantoms: int) -> list[tuple[str, sitk.Image, np.ndarray | None]]:
    """``(name, T2, phantom prostate mask or None)`` for the real studies and ``phantoms`` synthetic ones."""
    from LesionAILib.phantom.cases import generate_case
    from LesionAILib.studies.dicom_study import open_dicom_study

    found = []
    for study in ("ProstateX-0000", "ProstateX-0001"):
        found.append((study, open_dicom_study(require_shared("prostatex") / study).t2w, None))
    for seed in range(1, phantoms + 1):
        phantom = generate_case(seed=seed, site="A", index=0)
        found.append((f"phantom-A-{seed}", phantom.t2w, sitk.GetArrayFromImage(phantom.zones) > 0))
    return found


def run_ours(segmenter: GlandSegmenter, t2: sitk.Image, repeats: int, folder: Path) -> dict:
    times, gland = [], None
    for _ in range(repeats):
        start = time.perf_counter()
        gland = segmenter.segment(t2, "benchmark")
        times.append(time.perf_counter() - start)
    sitk.WriteImage(gland.mask, str(folder / "ours.nii.gz"))
    return {"times_s": times, "windows": gland.windows, "volume_ml": gland.volume_ml, "warnings": gland.warnings}


def run_package(t2: sitk.Image, folder: Path) -> dict:
    import taps
    from taps.inference import BlankMaskError

    t2_file, out = folder / "t2.nii.gz", folder / "package.nii.gz"
    sitk.WriteImage(t2, str(t2_file))
    start = time.perf_counter()
    try:
        taps.segment(str(t2_file), str(out), None, device="cpu", exact=True)
        blank = False
    except BlankMaskError:
        blank = True
    seconds = time.perf_counter() - start
    if blank:
        sitk.WriteImage(sitk.Image(t2.GetSize(), sitk.sitkUInt8), str(out))
    return {"times_s": [seconds], "blank": blank}


def cached(path: Path, fresh: bool, compute) -> dict:
    if path.is_file() and not fresh:
        return json.loads(path.read_text())
    result = compute()
    path.write_text(json.dumps(result, indent=1))
    return result


def runtime_difference(segmenter: GlandSegmenter, t2: sitk.Image) -> tuple[float, float]:
    """(largest |logit difference| torch network vs onnxruntime, largest |logit|) on the first window of ``t2``."""
    import onnxruntime

    from LesionAILib.gland.preprocessing import gland_input

    prepared = gland_input(t2)
    centre = prepared.grid.lps_to_index(Grid.from_image(t2).center_lps)
    window = crop_block(prepared.image, window_start(prepared, centre), WINDOW_ZYX)
    ours = segmenter.window_logits(window)
    session = onnxruntime.InferenceSession(str(installed_model_path()), providers=["CPUExecutionProvider"])
    theirs = session.run(None, {"input": window.transpose(2, 1, 0)[None, None].copy()})[0][0, 0].transpose(2, 1, 0)
    return float(np.abs(ours - theirs).max()), float(np.abs(theirs).max())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--phantoms", type=int, default=2)
    parser.add_argument("--work", default="/tmp/lesionai-gland-benchmark")
    parser.add_argument("--fresh", action="store_true", help="ignore cached results")
    args = parser.parse_args()
    torch.set_num_threads(min(2, os.cpu_count() or 2))
    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    load_before = os.getloadavg()
    start = time.perf_counter()
    segmenter = GlandSegmenter("cpu")
    load_seconds = time.perf_counter() - start
    rows, phantom_rows = [], []
    selected = cases(args.phantoms)
    for name, t2, truth in selected:
        folder = work / name
        folder.mkdir(exist_ok=True)
        ours = cached(
            folder / "ours.json", args.fresh, lambda t2=t2, f=folder: run_ours(segmenter, t2, args.repeats, f)
        )
        package = cached(folder / "package.json", args.fresh, lambda t2=t2, f=folder: run_package(t2, f))
        mine = sitk.GetArrayFromImage(sitk.ReadImage(str(folder / "ours.nii.gz"))) > 0
        theirs = sitk.GetArrayFromImage(sitk.ReadImage(str(folder / "package.nii.gz"))) > 0
        voxel_ml = float(np.prod(t2.GetSpacing())) / 1000.0
        median = statistics.median(ours["times_s"])
        spread = statistics.stdev(ours["times_s"]) if len(ours["times_s"]) > 1 else 0.0
        rows.append(
            [
                name,
                f"{median:.2f} ± {spread:.2f} (n={len(ours['times_s'])})",
                ours["windows"],
                f"{package['times_s'][0]:.1f}",
                f"{package['times_s'][0] / median:.1f}×",
                f"{dice(mine, theirs):.4f}",
                f"{mine.sum() * voxel_ml:.1f} / {theirs.sum() * voxel_ml:.1f}",
            ]
        )
        if truth is not None:
            phantom_rows.append(
                [
                    name,
                    f"{truth.sum() * voxel_ml:.1f}",
                    f"{dice(mine, truth):.3f}",
                    f"{dice(theirs, truth):.3f}",
                    "; ".join(ours["warnings"]) or "none",
                ]
            )
    difference, scale = runtime_difference(segmenter, selected[0][1])
    load_after = os.getloadavg()
    print(f"machine: {machine()}; load average before {load_before[0]:.2f}, after {load_after[0]:.2f} (1 min)")
    print(f"ours: model load (sha256 check, ONNX parse, torch module) {load_seconds:.1f} s, once per process\n")
    print_table(
        [
            "case",
            "ours s (median ± sd)",
            "windows",
            "package s",
            "package / ours",
            "Dice ours vs package",
            "ml ours / package",
        ],
        rows,
    )
    if phantom_rows:
        print("\nphantoms (not real anatomy): Dice against the phantom's prostate mask")
        print_table(["case", "phantom gland ml", "Dice ours", "Dice package", "our warnings"], phantom_rows)
    print(
        f"\ntorch vs onnxruntime on one real window: max |logit difference| {difference:.2e} (logits up to {scale:.1f})"
    )
    real = [r for r in rows if r[0].startswith("ProstateX")]
    speedups = [float(r[4].rstrip("×")) for r in real]
    print(f"speedup_vs_package_real_studies={statistics.median(speedups):.1f}")


if __name__ == "__main__":
    main()

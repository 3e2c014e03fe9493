"""Preprocessing speed and accuracy on ProstateX-0000 at equal interpolation order: LesionAI vs picai-prep.

Same case, same run, same target (T2, ADC and high-b on a 20 × 256 × 256 grid at 3.0 × 0.5 × 0.5 mm),
the three series already in memory (DICOM reading excluded). Arms, at each order (trilinear,
cubic B-spline):

* **picai-prep** ``Sample.preprocess`` with ``scan_interpolator`` ``sitkLinear`` / ``sitkBSpline``
  (its default): resample each scan to the spacing, centre-crop/pad, resample to the first scan.
  It does not normalise intensities.
* **LesionAI** ``preprocess`` with ``interpolation`` ``"linear"`` / ``"bspline"``: one SimpleITK
  pass per series straight into the T2-aligned grid, field of view, per-role normalisation. On
  this case the grid lies on the T2's lattice, so the T2 is copied, not interpolated
  (``resampling.lattice_steps``); ADC and high-b are resampled.
* **LesionAI, T2 interpolated too**: the same steps with every series resampled — what a study
  whose T2 spacing the model grid is not a multiple of costs (same voxel counts).
* **SimpleITK floor**: one plain ``sitk.Resample`` per series onto the same grid at the same order,
  nothing else — what any implementation that resamples the three series once must spend.
* **SimpleITK floor with our shortcut**: the floor, the T2 copied on its lattice instead of
  resampled: ours / this is what normalisation and the field of view cost on top of the least
  work that gives the same voxels.

The repeats are interleaved (every round runs every arm once, in a rotated order), so load from
other processes hits all arms alike; ratios are also given per round (paired). Then: where our
time goes (a breakdown of the same steps), accuracy of each order against a high-order reference
resampling (SimpleITK's Lanczos windowed sinc, and 5th-order B-spline) per series, and a CUDA line
(host → device copy included) when a GPU is present.

Run: ``.venv/bin/python benchmarks/preprocessing.py [--repeats N] [--cache DIR] [--fresh]``. Each
round is cached (``DIR/timings.json``), so a stopped run resumes. Last line:
``speedup_linear_vs_picai_prep=<x> speedup_bspline_vs_picai_prep=<y> ratio_to_sitk_floor=<z>``
(medians; z: ours / floor at the worse of the two orders).
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
from common import ROOT, machine, peak_rss_mb, print_table, require_shared  # noqa: E402

from LesionAILib.atomic_io import write_json_atomic  # noqa: E402
from LesionAILib.geometry import Grid  # noqa: E402
from LesionAILib.preprocessing.pipeline import PreprocessConfig, _percentiles, normalise, preprocess  # noqa: E402
from LesionAILib.preprocessing.pipeline import target_grid as model_grid  # noqa: E402
from LesionAILib.preprocessing.resampling import (  # noqa: E402
    lattice_steps,
    resample_sitk_image,
    resample_sitk_into,
    sample_on_lattice,
)
from LesionAILib.studies.dicom_study import open_dicom_study  # noqa: E402

SHAPE, SPACING = (20, 256, 256), (3.0, 0.5, 0.5)
BUNDLED_GRID = ((20, 96, 96), (3.0, 1.0, 1.0))  # the bundled model's grid, for the accuracy table
ROLES = ("t2w", "adc", "hbv")
ORDERS = {"linear": sitk.sitkLinear, "bspline": sitk.sitkBSpline}
ORDER_NAMES = {"linear": "trilinear", "bspline": "cubic B-spline"}
REFERENCES = {"Lanczos windowed sinc": sitk.sitkLanczosWindowedSinc, "B-spline order 5": sitk.sitkBSpline5}


def picai_prep_once(case, interpolator: int) -> None:
    from picai_prep.preprocessing import PreprocessingSettings, Sample

    scans = [sitk.Image(case.image(role)) for role in ROLES]
    settings = PreprocessingSettings(matrix_size=list(SHAPE), spacing=list(SPACING), scan_interpolator=interpolator)
    Sample(scans=scans, settings=settings).preprocess()


def sitk_floor_once(case, reference: sitk.Image, interpolator: int) -> None:
    for role in ROLES:
        sitk.Resample(case.image(role), reference, sitk.Transform(), interpolator, 0.0, sitk.sitkFloat32)


def same_shortcut_floor_once(case, reference: sitk.Image, grid: Grid, interpolator: int) -> None:
    """The floor, taking LesionAI's shortcut: a series whose lattice the grid lies on is copied, not resampled."""
    for role in ROLES:
        steps = lattice_steps(case.grid(role), grid)
        if steps is not None:
            sample_on_lattice(sitk.GetArrayViewFromImage(case.image(role)), steps, grid.shape, 0.0)
        else:
            sitk.Resample(case.image(role), reference, sitk.Transform(), interpolator, 0.0, sitk.sitkFloat32)


def ours_interpolated_once(case, config: PreprocessConfig) -> None:
    """LesionAI's CPU steps with every series resampled, the T2 included: what a study whose T2
    lattice the model grid does not lie on (another spacing) costs, on this case's voxel counts."""
    grid = model_grid(case.grid("t2w"), config)
    image = np.empty((len(config.roles), *grid.shape), np.float32)
    fov = np.empty((len(config.roles), *grid.shape), bool)
    for index, role in enumerate(config.roles):
        resampled = resample_sitk_image(case.image(role), grid, config.interpolation, default=float("nan"))
        values = sitk.GetArrayViewFromImage(resampled)
        inside = np.equal(values, values, out=fov[index])
        normalise(values, inside, config.intensity[role], out=image[index])


def breakdown_once(case, config: PreprocessConfig) -> dict[str, float]:
    """Seconds per step of LesionAI's CPU path, running the steps ``preprocess`` runs, one by one."""
    clock = time.perf_counter
    spent = dict.fromkeys(("resampling", "field of view", "percentiles", "normalisation"), 0.0)
    start = clock()
    grid = model_grid(case.grid("t2w"), config)
    image = np.empty((len(config.roles), *grid.shape), np.float32)
    fov = np.empty((len(config.roles), *grid.shape), bool)
    for index, role in enumerate(config.roles):
        t0 = clock()
        values, _keep = resample_sitk_into(case.image(role), grid, config.interpolation, image[index])
        t1 = clock()
        inside = np.equal(values, values, out=fov[index])
        t2 = clock()
        intensity = config.intensity[role]
        if intensity.method == "robust_zscore":
            _percentiles(values, inside, intensity.low, intensity.high)
        t3 = clock()
        normalise(values, inside, intensity, out=image[index])
        t4 = clock()
        spent["resampling"] += t1 - t0
        spent["field of view"] += t2 - t1
        spent["percentiles"] += t3 - t2
        # normalise computes the percentiles again: count them once
        spent["normalisation"] += (t4 - t3) - (t3 - t2)
    total = clock() - start
    spent["output arrays, target grid, Python"] = total - sum(spent.values())
    spent["total"] = total
    return spent


def arms(case, gpu: bool) -> dict[str, tuple[str, str, object]]:
    """name → (order, device, zero-argument callable) for every timed arm."""
    grid = model_grid(case.grid("t2w"), PreprocessConfig(shape=SHAPE, spacing=SPACING))
    reference = grid.reference_image()
    table = {}
    for order, interpolator in ORDERS.items():
        config = PreprocessConfig(shape=SHAPE, spacing=SPACING, interpolation=order)
        table[f"picai-{order}"] = (order, "cpu", lambda i=interpolator: picai_prep_once(case, i))
        table[f"ours-{order}"] = (order, "cpu", lambda c=config: preprocess(case, c, device="cpu"))
        table[f"interpolated-{order}"] = (order, "cpu", lambda c=config: ours_interpolated_once(case, c))
        table[f"floor-{order}"] = (order, "cpu", lambda i=interpolator: sitk_floor_once(case, reference, i))
        table[f"shortcut-floor-{order}"] = (
            order,
            "cpu",
            lambda i=interpolator: same_shortcut_floor_once(case, reference, grid, i),
        )
        if gpu:
            table[f"cuda-{order}"] = (order, "cuda", lambda c=config: preprocess(case, c, device="cuda"))
    table["torch-cpu-linear"] = (
        "linear",
        "cpu",
        lambda: preprocess(case, PreprocessConfig(shape=SHAPE, spacing=SPACING), device="cpu", backend="torch"),
    )
    return table


def run_rounds(case, repeats: int, cache: Path, fresh: bool) -> tuple[dict[str, list[float]], dict]:
    """Interleaved timing rounds (resumed from ``cache``); returns per-arm seconds and per-order breakdowns."""
    gpu = torch.cuda.is_available()
    timed = arms(case, gpu)
    state = {} if fresh or not cache.exists() else json.loads(cache.read_text())
    if state.get("arms") != sorted(timed):
        state = {"arms": sorted(timed), "rounds": []}
    synchronize = torch.cuda.synchronize if gpu else (lambda: None)
    for _, _, function in timed.values():  # warm-up: imports, caches, CUDA context
        function()
        synchronize()
    names = list(timed)
    configs = {order: PreprocessConfig(shape=SHAPE, spacing=SPACING, interpolation=order) for order in ORDERS}
    while len(state["rounds"]) < repeats:
        done = len(state["rounds"])
        rotation = done % len(names)
        seconds = {}
        for name in names[rotation:] + names[:rotation]:
            start = time.perf_counter()
            timed[name][2]()
            synchronize()
            seconds[name] = time.perf_counter() - start
        for order, config in configs.items():
            seconds[f"breakdown-{order}"] = breakdown_once(case, config)
        state["rounds"].append(seconds)
        write_json_atomic(cache, state)
        print(f"round {done + 1}/{repeats} done", file=sys.stderr)
    rounds = state["rounds"][:repeats]
    per_arm = {name: [r[name] for r in rounds] for name in names}
    breakdown = {}
    for order in ORDERS:
        steps = rounds[0][f"breakdown-{order}"]
        breakdown[order] = {step: [r[f"breakdown-{order}"][step] for r in rounds] for step in steps}
    return per_arm, breakdown


def accuracy(case, cache: Path, fresh: bool) -> list[dict]:
    """Per grid, series and order: RMSE against each reference resampling inside the field of view (cached)."""
    if cache.exists() and not fresh:
        return json.loads(cache.read_text())
    rows = []
    for shape, spacing in ((SHAPE, SPACING), BUNDLED_GRID):
        grid = model_grid(case.grid("t2w"), PreprocessConfig(shape=shape, spacing=spacing))
        for role in ROLES:
            image = case.image(role)
            references = {name: resample_sitk_image_with(image, grid, i) for name, i in REFERENCES.items()}
            for order in ORDERS:
                ours = resample_sitk_into(image, grid, order, np.empty(grid.shape, np.float32))[0].copy()
                for name, reference in references.items():
                    inside = ~np.isnan(ours) & ~np.isnan(reference)
                    error = ours[inside].astype(np.float64) - reference[inside]
                    rmse = float(np.sqrt(np.mean(error**2)))
                    rows.append(
                        {
                            "grid": f"{'×'.join(map(str, shape))} at {'×'.join(f'{s:g}' for s in spacing)} mm",
                            "series": role,
                            "order": order,
                            "reference": name,
                            "rmse": rmse,
                            "relative": rmse / float(np.std(reference[inside])),
                            "max": float(np.abs(error).max()),
                        }
                    )
    write_json_atomic(cache, rows)
    return rows


def resample_sitk_image_with(image: sitk.Image, grid, interpolator: int) -> np.ndarray:
    """A float32 array of ``image`` resampled onto ``grid`` with any SimpleITK interpolator (NaN outside)."""
    reference = grid.reference_image()
    resampled = sitk.Resample(image, reference, sitk.Transform(), interpolator, float("nan"), sitk.sitkFloat32)
    return sitk.GetArrayFromImage(resampled)


def summary(values: list[float]) -> str:
    """``median ± sample std`` in ms."""
    return f"{1000 * statistics.median(values):.1f} ± {1000 * statistics.stdev(values):.1f}"


def paired(numerators: list[float], denominators: list[float]) -> str:
    """Ratio of the medians, and median [min, max] of the per-round ratios."""
    per_round = [a / b for a, b in zip(numerators, denominators, strict=True)]
    ratio = statistics.median(numerators) / statistics.median(denominators)
    return f"{ratio:.2f} (per round {statistics.median(per_round):.2f} [{min(per_round):.2f}, {max(per_round):.2f}])"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=11, help="interleaved rounds (every arm once per round)")
    parser.add_argument("--cache", type=Path, default=ROOT / ".lesionai-cache" / "benchmarks" / "preprocessing")
    parser.add_argument("--fresh", action="store_true", help="discard the cached rounds")
    args = parser.parse_args()
    if args.repeats < 2:
        parser.error("--repeats must be at least 2 (a sample std needs two)")

    case = open_dicom_study(require_shared("prostatex") / "ProstateX-0000")
    wall = time.perf_counter()
    times, breakdown = run_rounds(case, args.repeats, args.cache / "timings.json", args.fresh)
    errors = accuracy(case, args.cache / "accuracy.json", args.fresh)

    print(f"machine: {machine()}; OPENBLAS_CORETYPE={os.environ.get('OPENBLAS_CORETYPE', '(unset)')}")
    print(f"load average at the end: {', '.join(f'{v:.1f}' for v in os.getloadavg())} (1, 5, 15 min)")
    print(
        f"case: ProstateX-0000 (T2 384×384×19, ADC/high-b 84×128×19) → {SHAPE} at {SPACING} mm; "
        f"{args.repeats} interleaved rounds; median ± sample std"
    )
    rows = []
    for order in ORDERS:
        picai = times[f"picai-{order}"]
        for name, label in (
            (f"picai-{order}", f"picai-prep Sample.preprocess ({ORDER_NAMES[order]}, 2 passes)"),
            (f"ours-{order}", f"LesionAI preprocess ({ORDER_NAMES[order]}: 1 SimpleITK pass + normalise)"),
            (f"interpolated-{order}", "LesionAI's steps with the T2 interpolated too (a T2 off the grid's lattice)"),
            (f"floor-{order}", f"SimpleITK floor (1 plain Resample per series, {ORDER_NAMES[order]})"),
            (f"shortcut-floor-{order}", "SimpleITK floor with the T2 copied on its lattice (our shortcut)"),
            (f"cuda-{order}", f"LesionAI preprocess (torch {ORDER_NAMES[order]}, incl. host→device copy)"),
        ):
            if name in times:
                device = "cuda" if name.startswith("cuda") else "cpu"
                speedup = statistics.median(picai) / statistics.median(times[name])
                rows.append([label, device, summary(times[name]), f"{speedup:.2f}"])
    rows.append(
        [
            "LesionAI preprocess (torch grid_sample trilinear)",
            "cpu",
            summary(times["torch-cpu-linear"]),
            f"{statistics.median(times['picai-linear']) / statistics.median(times['torch-cpu-linear']):.2f}",
        ]
    )
    print_table(["method", "device", "ms per case", "speed-up vs picai-prep (same order)"], rows)
    if "cuda-linear" not in times:
        print("CUDA: no GPU here, CUDA rows skipped")

    print("\npaired ratios (ratio of medians; median [min, max] over rounds):")
    for order in ORDERS:
        print(f"  {order}: picai-prep / ours = {paired(times[f'picai-{order}'], times[f'ours-{order}'])}")
        print(f"  {order}: ours / SimpleITK floor = {paired(times[f'ours-{order}'], times[f'floor-{order}'])}")
        print(
            f"  {order}: ours with the T2 interpolated / SimpleITK floor = "
            f"{paired(times[f'interpolated-{order}'], times[f'floor-{order}'])}"
        )
        print(
            f"  {order}: ours / floor with the same T2 shortcut = "
            f"{paired(times[f'ours-{order}'], times[f'shortcut-floor-{order}'])}"
        )

    print("\nwhere LesionAI's CPU time goes (the same steps run one by one; ms, median ± sample std):")
    table = [[step] + [summary(breakdown[order][step]) for order in ORDERS] for step in breakdown["linear"]]
    print_table(["step"] + [ORDER_NAMES[o] for o in ORDERS], table)

    print("\naccuracy against a high-order reference resampling on the same grid (inside the field of view):")
    print_table(
        ["grid", "series", "order", "reference", "RMSE (scanner units)", "RMSE / reference std", "max |error|"],
        [
            [e["grid"], e["series"], ORDER_NAMES[e["order"]], e["reference"]]
            + [f"{e['rmse']:.2f}", f"{e['relative']:.4f}", f"{e['max']:.1f}"]
            for e in errors
        ],
    )
    print(f"\npeak RSS of the process: {peak_rss_mb():.0f} MB; this run took {time.perf_counter() - wall:.0f} s")
    median = {name: statistics.median(values) for name, values in times.items()}
    floor_ratio = max(median[f"ours-{o}"] / median[f"floor-{o}"] for o in ORDERS)
    shortcut_ratio = max(median[f"ours-{o}"] / median[f"shortcut-floor-{o}"] for o in ORDERS)
    print(
        f"ours / SimpleITK floor that also copies the T2 (normalisation and field-of-view overhead), "
        f"worse order: {shortcut_ratio:.2f}"
    )
    print(
        f"speedup_linear_vs_picai_prep={median['picai-linear'] / median['ours-linear']:.2f} "
        f"speedup_bspline_vs_picai_prep={median['picai-bspline'] / median['ours-bspline']:.2f} "
        f"ratio_to_sitk_floor={floor_ratio:.2f}"
    )


if __name__ == "__main__":
    main()

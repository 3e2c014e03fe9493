"""Where the expert csPCa lesion ranks in the real-patient abnormality map (2D patch synthesis) of ProstateX-0000/-0001.

The bundled model (``Resources/Models/lesionai-synthesis-prostatex-2d.safetensors``, trained by
``lesionai train-synthesis-prostatex`` on the ProstateX finding patches with these two patients left
out) is slid over every slice of each study's gland (the TAPS reference gland mask of
``../shared/data/prostatex/gland-taps``; with ``--segment`` also the gland segmented here, timed).
For each window score (signed, absolute) it reports the candidates (up to 20), the rank and value
of the first candidate whose region on the T2 grid overlaps the expert csPCa mask (label value ≥ 2
= ISUP grade group ≥ 2), the map inside the mask against the gland, and wall times. Two studies,
one lesion: this shows what the map does on these cases, not a detection rate.

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/synthesis_prostatex_map.py --figures docs/figures

Last line: ``prostatex0000_signed_rank=<r> prostatex0000_absolute_rank=<r>`` (0 = not among the candidates).
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import SimpleITK as sitk

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data" / "prostatex"
MODEL = ROOT / "Resources" / "Models" / "lesionai-synthesis-prostatex-2d.safetensors"
CASES = ("ProstateX-0000", "ProstateX-0001")
FINDINGS_LPS = {"ProstateX-0000": (25.7457, 31.8707, -38.511), "ProstateX-0001": (-40.5367, 29.3207, -16.7077)}
CSPCA_LOWEST_GRADE_GROUP = 2


def lesion_rank(result, lesion: np.ndarray) -> tuple[int, float]:
    """(1-based rank of the first candidate whose T2 region overlaps ``lesion``, its peak z); (0, nan) if none."""
    labels = sitk.GetArrayFromImage(result.candidate_map)
    for rank, candidate in enumerate(result.candidates, start=1):
        if (lesion & (labels == candidate.candidate_id)).any():
            return rank, candidate.peak * 10.0
    return 0, float("nan")


def map_summary(result, gland: np.ndarray, lesion: np.ndarray) -> dict:
    values = sitk.GetArrayFromImage(result.abnormality)
    inside = values[gland]
    summary = {"gland_median": float(np.median(inside)), "gland_p95": float(np.percentile(inside, 95))}
    if lesion.any():
        mean = float(values[lesion & gland].mean())
        summary |= {"lesion_mean": mean, "lesion_percentile_in_gland": float((inside < mean).mean() * 100)}
    return summary


def table_row(case_id: str, score: str, gland_name: str, result, lesion: np.ndarray, wall: float, mask) -> str:
    rank, peak = lesion_rank(result, lesion)
    summary = map_summary(result, sitk.GetArrayFromImage(mask) > 0, lesion)
    top = result.candidates[0] if result.candidates else None
    distance = np.linalg.norm(np.subtract(top.center_lps_mm, FINDINGS_LPS[case_id])) if top else float("nan")
    cells = [
        case_id,
        score,
        gland_name,
        len(result.candidates),
        rank if lesion.any() else "no csPCa",
        f"{peak:.2f}",
        f"{top.peak * 10:.2f}" if top else "-",
        f"{distance:.1f}",
        f"{summary.get('lesion_mean', float('nan')):.2f}",
        f"{summary['gland_median']:.2f}",
        f"{wall:.1f} ({result.boxes})",
    ]
    return "| " + " | ".join(str(c) for c in cells) + " |"


def map_over_t2(results: dict, cases: dict, path: Path, title: str) -> Path:
    from LesionAILib.rendering import percentile_window, plt, save_figure

    figure, axes = plt.subplots(1, len(results), figsize=(5.2 * len(results), 5.4), facecolor="black", squeeze=False)
    for axis, (case_id, result) in zip(axes[0], results.items(), strict=True):
        case, lesion, gland = cases[case_id]
        t2 = sitk.GetArrayFromImage(case.t2w).astype(np.float32)
        values = sitk.GetArrayFromImage(result.abnormality)
        if lesion.any():  # the slice with most of the expert lesion, else the ProstateX finding's
            k = int(np.argmax(lesion.sum((1, 2))))
        else:
            k = int(round(case.grid("t2w").lps_to_index(FINDINGS_LPS[case_id])[0]))
        rows, columns = np.nonzero(gland.any(0))
        margin = 40  # T2 pixels (20 mm) around the gland
        view = (
            slice(max(rows.min() - margin, 0), rows.max() + margin),
            slice(max(columns.min() - margin, 0), columns.max() + margin),
        )
        t2, values, gland, lesion = t2[k][view], values[k][view], gland[k][view], lesion[k][view]
        labels = sitk.GetArrayFromImage(result.candidate_map)[k][view]
        low, high = percentile_window(t2)
        axis.imshow(t2, cmap="gray", vmin=low, vmax=high, interpolation="nearest")
        shown = axis.imshow(
            np.ma.masked_where(~gland | (values <= 0), values),
            cmap="inferno",
            vmin=0,
            vmax=2.5,
            alpha=0.7,
            interpolation="nearest",
        )
        axis.contour(gland.astype(float), levels=[0.5], colors=["#5ec8ff"], linewidths=0.8)
        if lesion.any():
            axis.contour(lesion.astype(float), levels=[0.5], colors=["#00ff66"], linewidths=1.4)
        for candidate in result.candidates:
            if (labels == candidate.candidate_id).any():
                axis.contour(
                    (labels == candidate.candidate_id).astype(float),
                    levels=[0.5],
                    colors=["white"],
                    linewidths=0.6,
                    linestyles="dashed",
                )
        axis.set_title(f"{case_id}, T2 slice {k}", color="white", fontsize=10)
        axis.axis("off")
        figure.colorbar(shown, ax=axis, fraction=0.046).set_label("abnormality (normal-tissue spreads)", color="white")
    figure.suptitle(title, color="white", fontsize=10)
    return save_figure(figure, path)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default=str(MODEL))
    parser.add_argument("--stride", type=int, default=None, help="window stride in pixels (default: the model's)")
    parser.add_argument("--figures", help="folder for the FIG 7A/7B panels and the map-over-T2 picture")
    parser.add_argument("--segment", action="store_true", help="also segment the gland here (LesionAILib.gland), timed")
    args = parser.parse_args()

    from LesionAILib.studies.dicom_study import open_dicom_study
    from LesionAILib.synthesis.figures import box_panels
    from LesionAILib.synthesis.model_file import load_synthesis_model
    from LesionAILib.synthesis.slice_analysis import SliceAbnormalityAnalyzer
    from LesionAILib.synthesis.slice_map import ABSOLUTE, SIGNED

    model = load_synthesis_model(args.model, "cpu")
    print(f"model {model[1].name} sha256 {model[1].sha256[:12]}… left out: {model[1].training['excluded_patients']}")
    cases, results, last = {}, {}, {}
    rows = [
        "| study | score | gland | candidates | lesion rank | its peak z | top peak z | top to finding mm "
        "| lesion mean | gland median | map s (windows) |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for case_id in CASES:
        case = open_dicom_study(DATA / case_id)
        gland_image = sitk.ReadImage(str(DATA / "gland-taps" / f"{case_id}_gland_taps.nii.gz"))
        lesion = sitk.GetArrayFromImage(sitk.ReadImage(str(DATA / "labels" / f"{case_id}_lesions.nii.gz")))
        lesion = lesion >= CSPCA_LOWEST_GRADE_GROUP
        gland = sitk.GetArrayFromImage(gland_image) > 0
        cases[case_id] = (case, lesion, gland)
        glands = {"TAPS reference": gland_image}
        if args.segment:
            from LesionAILib.gland.segmentation import GlandSegmenter

            start = time.perf_counter()
            glands["segmented here"] = GlandSegmenter("cpu").segment(case.t2w).mask
            print(f"{case_id}: gland segmented in {time.perf_counter() - start:.1f} s")
        for gland_name, mask in glands.items():
            for score in (SIGNED, ABSOLUTE):
                analyzer = SliceAbnormalityAnalyzer(model, score=score, stride=args.stride, max_candidates=20)
                start = time.perf_counter()
                result = analyzer.analyze(case, mask)
                wall = time.perf_counter() - start
                rank, _ = lesion_rank(result, lesion)
                rows.append(table_row(case_id, score, gland_name, result, lesion, wall, mask))
                top = ", ".join(f"{c.peak * 10:.2f}" for c in result.candidates[:5])
                print(f"{case_id} {score} {gland_name}: rank {rank}, top peaks z {top}; timings {result.timings}")
                if gland_name == "TAPS reference":
                    last[(case_id, score)] = rank
                    if score == SIGNED:
                        results[case_id] = (result, analyzer)
    print("\n".join(rows))
    if args.figures:
        out = Path(args.figures)
        case, lesion, _ = cases["ProstateX-0000"]
        result, analyzer = results["ProstateX-0000"]
        centre_lps = case.grid("t2w").index_to_lps(np.argwhere(lesion).mean(0))
        view = analyzer.view_at(result.volume, tuple(result.volume.grid.lps_to_index(centre_lps)))
        box_panels(
            view,
            result.volume.roles,
            out / "synthesis_fig7_prostatex0000.png",
            "ProstateX-0000, hidden 16 mm box at the expert csPCa lesion (GG3) — 2D model trained on ProstateX "
            "patches without this patient (ADC, high-b equalised)",
            model[1].notice,
        )
        map_over_t2(
            {k: v[0] for k, v in results.items()},
            cases,
            out / "synthesis_map_prostatex.png",
            "Abnormality map (2D patch synthesis, signed score) over T2 — green: expert csPCa mask; blue: gland; "
            "dashed: candidates — research use only",
        )
        print(f"figures written to {out}")
    print(
        f"prostatex0000_signed_rank={last[('ProstateX-0000', SIGNED)]} "
        f"prostatex0000_absolute_rank={last[('ProstateX-0000', ABSOLUTE)]}"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

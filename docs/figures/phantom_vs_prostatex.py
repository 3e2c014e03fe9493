"""Figure: the real ProstateX-0000 study next to a LesionAI phantom case (T2w, ADC, high-b).

Usage (from the repository root):
    .venv/bin/python docs/figures/phantom_vs_prostatex.py [PROSTATEX_DIR] [--site A] [--seed 0] [--index 0]

PROSTATEX_DIR defaults to ../shared/data/prostatex (the folder that holds ProstateX-0000). Writes
docs/phantom_vs_prostatex.png. One axial slice per row through the middle of the prostate (ProstateX: the
middle T2 slice; phantom: the T2 slice with the largest gland area); the ADC and high-b slices are the
ones through the same physical point. ADC is shown with the same fixed window (um^2/s) on both rows; T2w
and high-b are in arbitrary scanner units, so each is windowed to its own 1-99th percentiles.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import SimpleITK as sitk  # noqa: E402

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))

from LesionAILib.phantom.cases import generate_case  # noqa: E402

STUDY = Path("ProstateX-0000") / "07-07-2011"
SERIES = {
    "t2w": "4.000000-t2tsetra-00702",
    "adc": "7.000000-ep2ddifftraDYNDISTADC-48780",
    "hbv": "8.000000-ep2ddifftraDYNDISTCALCBVAL-83202",
}
ADC_WINDOW = (0.0, 3000.0)  # um^2/s


def read_series(folder: Path) -> sitk.Image:
    """A DICOM series folder as one SimpleITK image."""
    reader = sitk.ImageSeriesReader()
    names = reader.GetGDCMSeriesFileNames(str(folder))
    if not names:
        raise SystemExit(f"no DICOM series in {folder}")
    reader.SetFileNames(names)
    return reader.Execute()


def slice_through(image: sitk.Image, point: tuple[float, float, float]) -> np.ndarray:
    """The axial slice [Y, X] of `image` nearest to an LPS point (mm)."""
    k = image.TransformPhysicalPointToContinuousIndex(point)[2]
    k = int(np.clip(round(k), 0, image.GetSize()[2] - 1))
    return sitk.GetArrayViewFromImage(image)[k].astype(np.float32)


def row_slices(t2w: sitk.Image, adc: sitk.Image, hbv: sitk.Image, k: int) -> list[np.ndarray]:
    """T2w slice k and the ADC/high-b slices through the centre of that slice."""
    size = t2w.GetSize()
    centre = t2w.TransformContinuousIndexToPhysicalPoint(((size[0] - 1) / 2, (size[1] - 1) / 2, float(k)))
    return [
        sitk.GetArrayViewFromImage(t2w)[k].astype(np.float32),
        slice_through(adc, centre),
        slice_through(hbv, centre),
    ]


def show(ax, image: np.ndarray, spacing: tuple[float, float], window: tuple[float, float], title: str) -> None:
    height, width = image.shape
    ax.imshow(
        image,
        cmap="gray",
        vmin=window[0],
        vmax=window[1],
        interpolation="nearest",
        extent=(0, width * spacing[0], height * spacing[1], 0),
    )
    ax.set_title(title, fontsize=10)
    ax.set_xticks([])
    ax.set_yticks([])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("prostatex_dir", nargs="?", type=Path, default=REPO / ".." / "shared" / "data" / "prostatex")
    parser.add_argument("--site", default="A")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--index", type=int, default=0)
    parser.add_argument("--out", type=Path, default=REPO / "docs" / "phantom_vs_prostatex.png")
    args = parser.parse_args(argv)

    study = args.prostatex_dir / STUDY
    real = {name: read_series(study / series) for name, series in SERIES.items()}
    real_rows = row_slices(real["t2w"], real["adc"], real["hbv"], real["t2w"].GetSize()[2] // 2)

    case = generate_case(args.seed, args.site, args.index)
    zones = sitk.GetArrayViewFromImage(case.zones)
    k = int(np.argmax((zones > 0).sum(axis=(1, 2))))
    phantom_rows = row_slices(case.t2w, case.adc, case.hbv, k)

    fig, axes = plt.subplots(2, 3, figsize=(12, 8), dpi=100)
    for row, (label, slices, images) in enumerate(
        (
            ("ProstateX-0000", real_rows, real),
            (
                f"phantom {case.case_id} (site {case.site})",
                phantom_rows,
                {"t2w": case.t2w, "adc": case.adc, "hbv": case.hbv},
            ),
        )
    ):
        titles = ("T2w (1-99 %ile window)", "ADC (0-3000 um^2/s)", "high-b (1-99 %ile window)")
        for col, (name, title) in enumerate(zip(("t2w", "adc", "hbv"), titles, strict=True)):
            image = slices[col]
            window = (
                ADC_WINDOW if name == "adc" else tuple(np.percentile(sitk.GetArrayViewFromImage(images[name]), [1, 99]))
            )
            show(axes[row, col], image, images[name].GetSpacing()[:2], window, f"{label}: {title}")
    fig.suptitle(
        "Real ProstateX-0000 (top) vs LesionAI synthetic phantom (bottom); same windowing rule per column", fontsize=11
    )
    fig.tight_layout()
    args.out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(args.out)
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

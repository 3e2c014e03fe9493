"""Render docs/slicer_heatmap.png: a 3D Slicer slice view of a study's T2 with the LesionAI heatmap and outlines.

Everything in the picture is drawn by Slicer's own MRML slice-view pipeline (slicer-core +
trame-slicer, off-screen): T2 as background, the heatmap as foreground with the module's heat
colour node and threshold, the candidate outlines of the candidate segmentation. Only the caption
is added with matplotlib. Run it from the repository root after the demo model ships::

    .venv/bin/python docs/figures/slicer_heatmap.py                       # ProstateX-0000, bundled model
    .venv/bin/python docs/figures/slicer_heatmap.py --phantom 7           # a synthetic case (GG4 lesion)
    .venv/bin/python docs/figures/slicer_heatmap.py --model MODEL --study STUDY --out FILE.png

The bundled demo model is trained on synthetic phantoms: on a real study its heatmap is weak and not
clinically meaningful (the caption says which model and case produced the picture).
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "LesionAI"))
os.environ.setdefault("VTK_DEFAULT_OPENGL_WINDOW", "vtkEGLRenderWindow")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--study", default=str(ROOT.parent / "shared" / "data" / "prostatex" / "ProstateX-0000"))
    parser.add_argument("--phantom", type=int, metavar="SEED", help="render a generated synthetic case instead")
    parser.add_argument("--model", help="model file (default: the bundled demo model)")
    parser.add_argument("--out", default=str(ROOT / "docs" / "slicer_heatmap.png"))
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--field-of-view", type=float, default=100.0, help="view width in mm")
    args = parser.parse_args()

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from LesionAILogic import offscreen
    from LesionAILogic.logic import LesionAILogic
    from trame_slicer.core import SlicerApp

    from LesionAILib.models.bundled import bundled_model_path

    app = SlicerApp()
    logic = LesionAILogic(app.scene, app.segmentations_logic)
    view = offscreen.create_slice_view(app, "Axial", size=(720, 720))
    if args.phantom is not None:
        from LesionAILib.phantom.cases import generate_case

        phantom = generate_case(seed=args.phantom, site="A", index=0)
        volumes = {
            role: logic.addVolumeFromImage(getattr(phantom, role), f"synthetic case {phantom.case_id} {role}", role)
            for role in ("t2w", "adc", "hbv")
        }
    else:
        volumes = logic.loadStudy(args.study)
    t2 = volumes["t2w"]
    analysis = logic.analyze(
        t2, volumes["adc"], volumes["hbv"], model=args.model or bundled_model_path(), device=args.device
    )
    logic.showResult(t2, opacity=0.7)
    rows = logic.candidateRows(t2)
    centre = (rows[0]["R mm"], rows[0]["A mm"], rows[0]["S mm"]) if rows else None
    pixels = offscreen.render(view, center_ras=centre, field_of_view_mm=args.field_of_view)

    figure = plt.figure(figsize=(7.2, 7.9), dpi=100, facecolor="black")
    axis = figure.add_axes((0.0, 0.09, 1.0, 0.91))
    axis.imshow(pixels)
    axis.axis("off")
    top = f"top candidate p = {rows[0]['probability']:.2f}, {rows[0]['volume ml']:.2f} ml" if rows else "no candidate"
    caption = (
        f"{t2.GetName()}: LesionAI heatmap over T2 in a 3D Slicer slice view — case score {analysis.caseScore:.2f}, "
        f"{top}\nmodel: {analysis.modelName}"
    )
    figure.text(0.02, 0.045, caption, color="white", fontsize=8.5, va="center", wrap=True)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(args.out, facecolor="black")
    view.finalize()
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()

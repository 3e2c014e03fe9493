"""The panel's behaviour, walked through as a radiologist and an annotator use it, on a real MRML scene.

The Qt panel (``LesionAI.py``) and the browser page only bind widgets to
:class:`LesionAILogic.panel.controller.PanelController`; these tests drive that controller the way
the buttons do and assert what the user would see (status line, table, enabled buttons, views). Real
data: the ProstateX-0000 DICOM study; the detector is a small *untrained* network (seeded), so the
tests pin behaviour and geometry, not accuracy. Steps run in order and share one session.
"""

from __future__ import annotations

import os
import shutil
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from conftest import ROOT, require_module, save_and_reopen_mrb, save_tiny_model, skip_or_fail, write_known_result

from LesionAILib.errors import ModelFileError
from LesionAILib.gland.model_file import installed_model_path

require_module("trame_slicer", "needs the slicer-core and trame-slicer wheels (pip install -e '.[mrml]')")
sys.path.insert(0, str(ROOT / "LesionAI"))

import slicer  # noqa: E402
from LesionAILogic import display, offscreen  # noqa: E402
from LesionAILogic.logic import LesionAILogic  # noqa: E402
from LesionAILogic.panel.controller import SHORTCUTS, PanelController  # noqa: E402
from LesionAILogic.panel.state import PanelState  # noqa: E402
from LesionAILogic.panel.views import GRADE_CHOICES  # noqa: E402

pytestmark = pytest.mark.mrml
T2_SLICE_MM = 3.0  # ProstateX-0000 T2 slice spacing


class RecordingHost:
    """The front end's dialogs: records every question (answering OK) and every error message."""

    def __init__(self):
        self.questions: list[str] = []
        self.errors: list[str] = []

    def confirm(self, message: str) -> bool:
        self.questions.append(message)
        return True

    def showError(self, message: str) -> None:
        self.errors.append(message)


def _poll_until_idle(panel: PanelController, timeout_s: float = 240.0) -> list[int]:
    """Poll as the panel's timer does; returns the analysis progress values seen."""
    seen, deadline = [], time.monotonic() + timeout_s
    while panel.busy:
        assert time.monotonic() < deadline, "a job did not end"
        panel.poll()
        seen.append(panel.view().reading.analysisProgress)
        time.sleep(0.2)
    return seen


@pytest.fixture(scope="module")
def session(slicer_app, prostatex_dir, tmp_path_factory, offscreen_gl):
    root = tmp_path_factory.mktemp("walkthrough")
    logic = LesionAILogic(slicer_app.scene, slicer_app.segmentations_logic, root / "store", root / "jobs")
    tiny = save_tiny_model(root / "tiny.safetensors", "tiny-untrained", seed=1)
    logic.activateModelVersion(logic.addModelFile(tiny, note="walkthrough"))
    views = {name: offscreen.create_slice_view(slicer_app, "Axial", size=(300, 300), name=name) for name in
             ("Red", "Yellow", "Green")}
    host = RecordingHost()
    panel = PanelController(logic, PanelState(logic.getParameterNode()), host)
    yield {"panel": panel, "logic": logic, "host": host, "views": views, "root": root, "study": prostatex_dir,
           "app": slicer_app}
    panel.stopAll()
    for view in views.values():
        view.finalize()
        slicer_app.view_manager.remove_view(view.get_singleton_tag())


def _composite(scene, layout_name):
    composites = display.nodes_of_class(scene, "vtkMRMLSliceCompositeNode")
    return next(c for c in composites if c.GetLayoutName() == layout_name)


def _slice(scene, layout_name):
    return next(s for s in display.nodes_of_class(scene, "vtkMRMLSliceNode") if s.GetLayoutName() == layout_name)


class TestRadiologist:
    def test_01_load_study_shows_the_roles_with_reasons_in_the_reading_layout(self, session):
        panel, scene = session["panel"], session["logic"].scene
        panel.reading.loadStudy(session["study"] / "ProstateX-0000")
        view = panel.view().reading
        assert session["host"].errors == []
        assert view.status == f"Loaded {panel.state.caseId}." and panel.state.caseId.startswith("ProstateX-0000")
        assert [line.role for line in view.roles] == ["t2w", "adc", "hbv"]
        assert [line.volume.split("(")[1].split(":")[0] for line in view.roles] == ["4", "7", "8"]  # series numbers
        assert all(line.reason and line.reason != "chosen by hand" for line in view.roles)
        assert view.analyzeEnabled and view.analyzeLabel == "Analyze" and view.analyzeTooltip == ""
        state = panel.state
        for layout, node in (("Red", state.t2Volume), ("Yellow", state.adcVolume), ("Green", state.hbvVolume)):
            assert _composite(scene, layout).GetBackgroundVolumeID() == node.GetID(), layout
        # all three views in the T2's (oblique) acquisition plane: the same normal as the T2's slice axis
        t2_normal = np.array([slicer.util.arrayFromVTKMatrix(_ijk_to_ras(state.t2Volume))[i, 2] for i in range(3)])
        for layout in ("Red", "Yellow", "Green"):
            matrix = slicer.util.arrayFromVTKMatrix(_slice(scene, layout).GetSliceToRAS())
            normal = matrix[:3, 2] / np.linalg.norm(matrix[:3, 2])
            assert abs(abs(normal @ (t2_normal / np.linalg.norm(t2_normal))) - 1) < 1e-6, layout

    def test_02_analyze_then_cancel_leaves_no_result_and_the_button_says_analyze(self, session):
        panel = session["panel"]
        panel.reading.analyze()
        running = panel.view().reading
        assert running.analysisRunning and running.analyzeLabel == "Cancel" and running.analyzeEnabled
        job = panel.job("analysis")
        panel.reading.analyze()  # the same button cancels
        assert panel.view().reading.status == "Cancelling the analysis…"
        _poll_until_idle(panel)
        view = panel.view().reading
        assert not job.alive and job.state.status == "cancelled"
        assert view.status == "Analysis cancelled." and view.rows == [] and view.analyzeLabel == "Analyze"
        assert not (job.work_folder / "result" / "result.json").exists()

    def test_03_analyze_again_fills_the_table_sorted_by_probability(self, session):
        panel = session["panel"]
        panel.reading.analyze()
        progress = _poll_until_idle(panel)
        view = panel.view().reading
        assert session["host"].errors == []
        assert max(progress) > 0 and progress == sorted(progress), progress  # the bar moves, forward only
        probabilities = [row["probability"] for row in view.rows]
        assert len(probabilities) >= 1 and probabilities == sorted(probabilities, reverse=True)
        assert view.status == f"{len(view.rows)} candidate(s); case score {float(view.caseScore):.2f}"
        assert float(view.caseScore) == pytest.approx(probabilities[0], abs=0.005)
        assert view.modelName.startswith("tiny-untrained") and "synthetic" in view.demoNotice
        assert view.selectedCandidate == view.rows[0]["id"]
        maps = session["logic"].heatmapNodes(panel.state.t2Volume)
        scene = session["logic"].scene
        assert _composite(scene, "Red").GetForegroundVolumeID() == maps["combined"].GetID()
        assert _composite(scene, "Yellow").GetForegroundVolumeID() == maps["adc"].GetID()
        assert _composite(scene, "Green").GetForegroundVolumeID() == maps["hbv"].GetID()
        hidden = set(panel.reading.hiddenInputIds())
        assert {maps[key].GetID() for key in ("combined", "t2w", "adc", "hbv")} <= hidden
        assert panel.state.t2Volume.GetID() not in hidden

    def test_04_clicking_a_row_centres_all_three_views_and_highlights_its_outline(self, session):
        panel, logic = session["panel"], session["logic"]
        rows = panel.view().reading.rows
        row = rows[-1]
        panel.reading.selectCandidate(row["id"])
        centre = (row["R mm"], row["A mm"], row["S mm"])
        for layout in ("Red", "Yellow", "Green"):
            assert display.distance_to_slice_plane(_slice(logic.scene, layout), centre) < T2_SLICE_MM / 2, layout
        assert panel.view().reading.selectedCandidate == row["id"]
        outlines = logic.resultNodes(panel.state.t2Volume)["candidates"]
        shown = outlines.GetDisplayNode()
        segmentation = outlines.GetSegmentation()
        fills = {segmentation.GetNthSegment(i).GetName(): shown.GetSegmentOpacity2DFill(segmentation.GetNthSegmentID(i))
                 for i in range(segmentation.GetNumberOfSegments())}
        assert sorted(fills.values(), reverse=True)[:1] == [0.25] and list(fills.values()).count(0.25) == 1

    def test_04b_export_to_dicom_writes_objects_that_reference_the_t2_series(self, session, tmp_path):
        import pydicom

        panel = session["panel"]
        assert panel.view().reading.exportEnabled
        panel.reading.exportDicom(str(tmp_path / "dicom"))
        assert session["host"].errors == []
        expected = f"Wrote 3 DICOM object(s) to {tmp_path / 'dicom'} (SEG, parametric map, SR)."
        assert panel.view().reading.status == expected
        objects = [pydicom.dcmread(path) for path in sorted((tmp_path / "dicom").glob("*.dcm"))]
        assert sorted(o.Modality for o in objects) == ["OT", "SEG", "SR"]  # OT: the parametric map
        t2_uid = panel.state.t2Volume.GetAttribute("DICOM.SeriesInstanceUID")
        seg = next(o for o in objects if o.Modality == "SEG")
        assert seg.ReferencedSeriesSequence[0].SeriesInstanceUID == t2_uid
        assert len(seg.SegmentSequence) == len([row for row in panel.view().reading.rows if row["id"] < 1000])

    def test_04c_the_gland_is_a_job_whose_volume_and_psa_density_the_panel_shows(self, session):
        try:  # the package's model file, not its Python (which imports MONAI and nibabel we do not install)
            installed_model_path()
        except ModelFileError as error:
            skip_or_fail(f"the TAPS gland model is needed: {error}")
        panel = session["panel"]
        panel.gland.segment()
        assert panel.view().gland.running and panel.view().gland.segmentLabel == "Cancel"
        _poll_until_idle(panel)
        view = panel.view().gland
        assert session["host"].errors == [] and view.status.startswith("Prostate gland: ")
        volume = float(view.volume.split()[0])
        assert abs(volume - 40.1) <= 0.03 * 40.1  # the package's own mask of this study: 40.1 ml
        panel.gland.setPsa(6.4)
        view = panel.view().gland
        assert view.psa == pytest.approx(6.4) and view.psaDensity.endswith(" ng/ml²")
        assert float(view.psaDensity.split()[0]) == pytest.approx(6.4 / volume, rel=3e-3)

    def test_05_keyboard_next_previous_candidate_heatmap_toggle_and_opacity(self, session):
        panel, scene = session["panel"], session["logic"].scene
        ids = [row["id"] for row in panel.view().reading.rows]
        panel.state.selectedCandidate = ids[0]
        panel.shortcut("Alt+Down")
        assert panel.view().reading.selectedCandidate == ids[1 % len(ids)]
        panel.shortcut("Alt+Up")
        assert panel.view().reading.selectedCandidate == ids[0]
        opacity = panel.state.heatmapOpacity
        panel.shortcut("Alt+H")
        assert panel.view().reading.heatmapVisible is False
        assert _composite(scene, "Red").GetForegroundOpacity() == 0.0
        panel.shortcut("Alt+H")
        assert _composite(scene, "Red").GetForegroundOpacity() == pytest.approx(opacity)
        panel.shortcut("Alt+Right")
        assert panel.state.heatmapOpacity == pytest.approx(min(1.0, opacity + 0.1))
        assert _composite(scene, "Yellow").GetForegroundOpacity() == pytest.approx(min(1.0, opacity + 0.1))
        panel.shortcut("Alt+Left")
        assert panel.state.heatmapOpacity == pytest.approx(opacity)
        assert len(set(SHORTCUTS)) == len(SHORTCUTS) == 5

    def test_06_opacity_is_applied_only_when_it_changes(self, session, monkeypatch):
        panel, logic = session["panel"], session["logic"]
        calls = []
        monkeypatch.setattr(logic, "setHeatmapOpacity", lambda value: calls.append(value))
        panel.reading.applyDisplay()
        panel.reading.applyDisplay()
        assert calls == []
        panel.state.heatmapOpacity = 0.35
        panel.reading.applyDisplay()
        panel.reading.applyDisplay()
        assert calls == [0.35]

    def test_07_a_placed_point_is_classified_in_a_separate_process_and_joins_the_table(self, session):
        panel, scene = session["panel"], session["logic"].scene
        points = scene.AddNewNodeByClass("vtkMRMLMarkupsFiducialNode", "walkthrough points")
        panel.state.points = points
        points.AddControlPoint(-25.7457, -31.8707, -38.511)  # RAS of the ProstateX-0000 finding
        before = {row["id"] for row in panel.view().reading.rows}
        panel.reading.pointsChanged()
        assert panel.view().reading.pointRunning and panel.view().reading.pointResult == "Classifying the points…"
        _poll_until_idle(panel)
        view = panel.view().reading
        assert session["host"].errors == []
        added = [row for row in view.rows if row["id"] not in before]
        assert len(added) == 1 and 0.0 <= added[0]["probability"] <= 1.0
        assert view.pointResult.startswith(f"{points.GetNthControlPointLabel(0)}: p = {added[0]['probability']:.2f}")
        assert [row["probability"] for row in view.rows] == sorted((row["probability"] for row in view.rows),
                                                                    reverse=True)


def _ijk_to_ras(node):
    import vtk

    matrix = vtk.vtkMatrix4x4()
    node.GetIJKToRASMatrix(matrix)
    return matrix


class TestAnnotator:
    def test_08_annotate_with_prefill_gives_one_lesion_per_candidate_with_its_grade(self, session):
        panel = session["panel"]
        panel.state.prefillFromCandidates = True
        candidates = [row for row in panel.view().reading.rows if row["id"] < 1000]
        panel.annotation.createAnnotation()
        view = panel.view().annotation
        assert session["host"].errors == []
        assert len(view.lesions) == len(candidates) >= 1
        assert all(line.proposedByModel for line in view.lesions)
        assert view.status == f"Annotation created with {len(candidates)} lesion(s) from the candidates."
        assert view.createEnabled and not view.saveEnabled  # no dataset folder yet

    def test_09_grade_save_pool_and_next_case(self, session):
        panel, root = session["panel"], session["root"]
        lesions = panel.view().annotation.lesions
        lesion = lesions[0]
        panel.annotation.setGrade(lesion.segmentId, GRADE_CHOICES.index("GG3"))
        assert panel.view().annotation.lesions[0].gradeChoice == GRADE_CHOICES.index("GG3")
        panel.state.datasetFolder = str(root / "site")
        panel.state.annotator = "dr walkthrough"
        assert panel.view().annotation.saveEnabled
        for index in range(4):  # fine-tuning needs four annotated cases; the same study four times exercises it
            panel.state.caseId = f"case-{index}"
            panel.annotation.saveCase(annotated=True)
        panel.state.caseId = "pool-0"
        panel.annotation.saveCase(annotated=False)
        view = panel.view().annotation
        assert session["host"].errors == []
        assert view.status.startswith("Saved unannotated case (pool) pool-0 to ")
        assert view.datasetSummary.startswith(f"4 annotated and 1 unannotated case(s), {4 * len(lesions)} lesion(s)")
        assert panel.view().models.finetuneEnabled
        panel.annotation.nextCase()
        _poll_until_idle(panel)
        view = panel.view().annotation
        assert session["host"].errors == []
        assert view.status == "Next case: pool-0 (the model is least sure about it)"
        assert panel.state.caseId == "pool-0" and view.lesions == []  # a fresh, empty annotation

    def test_10_finetune_cancel_then_finetune_switch_and_rollback(self, session):
        panel = session["panel"]
        panel.state.finetuneEpochs, panel.state.classifierEpochs, panel.state.device = 1, 1, "cpu"
        panel.models.finetune()
        assert panel.view().models.finetuneLabel == "Cancel fine-tuning"
        versions_before = [line.version for line in panel.view().models.models]
        panel.models.finetune()  # the same button cancels
        _poll_until_idle(panel)
        view = panel.view().models
        assert view.finetuneStatus == "Fine-tuning cancelled; the model store is unchanged."
        assert [line.version for line in view.models] == versions_before and view.finetuneLabel == "Start fine-tuning"
        panel.models.finetune()
        _poll_until_idle(panel, timeout_s=400)
        view = panel.view().models
        assert session["host"].errors == [] and view.finetuneStatus == "Fine-tuning finished."
        made = panel.state.lastFinetunedVersion
        assert made not in versions_before and made in [line.version for line in view.models]
        assert view.validation.startswith(f"version {made}: ")
        base = next(line.version for line in panel.view().models.models if line.active and line.version != made) \
            if "saved but not activated" in view.validation else None
        panel.models.chooseModel(made)
        assert [line.version for line in panel.view().models.models if line.active] == [made]
        panel.models.rollback()
        active = [line.version for line in panel.view().models.models if line.active]
        assert active != [made] and (base is None or active == [base])
        assert panel.view().models.validation == f"active model: {active[0]}"


class TestReopenedScene:
    def test_11_a_saved_and_reopened_scene_restores_what_the_panel_shows(self, session, tmp_path):
        panel, scene = session["panel"], session["logic"].scene
        panel.reading.loadStudy(session["study"] / "ProstateX-0000")
        panel.reading.analyze()
        _poll_until_idle(panel)
        panel.state.heatmapOpacity = 0.45
        panel.reading.selectCandidate(panel.view().reading.rows[-1]["id"])
        shown = panel.view()
        restored = save_and_reopen_mrb(scene, tmp_path)
        logic = LesionAILogic(restored, modelStore=session["root"] / "store", workFolder=session["root"] / "jobs2")
        reopened = PanelController(logic, PanelState(logic.getParameterNode()), RecordingHost()).view()
        assert [(line.role, line.volume, line.reason) for line in reopened.reading.roles] == [
            (line.role, line.volume, line.reason) for line in shown.reading.roles
        ]
        assert [row["id"] for row in reopened.reading.rows] == [row["id"] for row in shown.reading.rows]
        assert reopened.reading.selectedCandidate == shown.reading.selectedCandidate
        assert reopened.reading.caseScore == shown.reading.caseScore
        assert reopened.reading.heatmapOpacity == pytest.approx(0.45)
        assert reopened.annotation.datasetSummary == shown.annotation.datasetSummary


def test_reading_layout_picture_shows_each_sequence_with_its_heat_at_the_candidate(session, tmp_path):
    """The three linked views with their heatmaps, rendered off-screen (docs/reading_layout.png comes from here).

    The heatmap is a known blob at the ProstateX-0000 finding (combined on T2, per-sequence maps on ADC and
    high-b), loaded through the panel's own result reader, so each view must show heat at the candidate.
    """
    panel, logic, views = session["panel"], session["logic"], session["views"]
    panel.reading.loadStudy(session["study"] / "ProstateX-0000")
    state = panel.state
    candidate = write_known_result(tmp_path / "known", logic.caseFromNodes(*state.roleNodes().values()))
    logic.loadAnalysisResult(tmp_path / "known", state.t2Volume, show=False)
    outlines = logic.resultNodes(state.t2Volume)["candidates"]
    hidden = [node for node in display.nodes_of_class(logic.scene, "vtkMRMLDisplayableNode")
              if node.IsA("vtkMRMLSegmentationNode") or node.IsA("vtkMRMLMarkupsNode")]
    hidden = [node for node in hidden if node is not outlines and node.GetDisplayNode() is not None]
    for node in hidden:  # other tests' segmentations and points: not part of this picture
        node.GetDisplayNode().SetVisibility(False)
    try:
        panel.state.heatmapOpacity, panel.state.heatmapVisible = 0.7, True
        panel.reading.showReading()
        panel.reading.selectCandidate(1)
        centre = candidate["center_ras_mm"]
        images = {}
        for name in ("Red", "Yellow", "Green"):
            images[name] = offscreen.render(views[name], center_ras=centre, field_of_view_mm=90)
            row, column = offscreen.ras_to_pixel(views[name], centre)
            near = images[name][row - 15 : row + 16, column - 15 : column + 16].reshape(-1, 3).astype(int)  # ±4.5 mm
            warmth = (near[:, 0] - near[:, 2]).max()
            assert warmth > 60, f"{name}: no heat colour near the candidate (max red - blue {warmth})"
            far = images[name][10:30, 10:30].reshape(-1, 3).astype(int)  # ~40 mm away: greyscale only
            assert np.abs(far[:, 0] - far[:, 2]).max() <= 3, name
    finally:
        for node in hidden:
            node.GetDisplayNode().SetVisibility(True)
    picture = np.concatenate([images[name] for name in ("Red", "Yellow", "Green")], axis=1)
    out = tmp_path / "reading_layout.png"
    _write_png(picture, out)
    assert out.stat().st_size > 20_000
    if os.environ.get("LESIONAI_WRITE_DOCS"):  # how docs/reading_layout.png is made
        shutil.copyfile(out, ROOT / "docs" / "reading_layout.png")


def _write_png(pixels: np.ndarray, path: Path) -> None:
    import vtk
    from vtk.util.numpy_support import numpy_to_vtk

    image = vtk.vtkImageData()
    height, width, _ = pixels.shape
    image.SetDimensions(width, height, 1)
    image.GetPointData().SetScalars(numpy_to_vtk(np.ascontiguousarray(pixels[::-1]).reshape(-1, 3), deep=True))
    writer = vtk.vtkPNGWriter()
    writer.SetFileName(str(path))
    writer.SetInputData(image)
    writer.Write()

"""The Slicer module's scene logic on a real MRML scene (slicer-core + trame-slicer, no GUI).

The scene comes from ``trame_slicer.core.SlicerApp`` (built once per session: a second
segmentations logic would warn). Real data: the ProstateX-0000 DICOM study. The model is a small
*untrained* network saved into a temporary folder — these tests pin geometry, scene plumbing and
agreement with the engine, not accuracy — except the rendered check, which loads a known heatmap
(a blob at the ProstateX finding) through the same loader the panel uses for analysis results.
"""

from __future__ import annotations

import json
import os
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk
from conftest import (
    FINDING_0000_LPS,
    FINDING_0000_T2_IJK,
    ROOT,
    require_module,
    save_and_reopen_mrb,
    save_tiny_model,
    write_known_result,
)

require_module("trame_slicer", "needs the slicer-core and trame-slicer wheels (pip install -e '.[mrml]')")



sys.path.insert(0, str(ROOT / "LesionAI"))

import slicer  # noqa: E402
import vtk  # noqa: E402
from LesionAILogic import candidates as candidate_nodes  # noqa: E402
from LesionAILogic import dependencies, display, offscreen, results  # noqa: E402
from LesionAILogic.logic import LesionAILogic  # noqa: E402
from LesionAILogic.volumes import ijk_to_ras_of_image, ijk_to_ras_of_node  # noqa: E402

from LesionAILib.adaptation.deployment import read_deployment  # noqa: E402
from LesionAILib.errors import LesionAIError  # noqa: E402
from LesionAILib.inference.analyzer import Analyzer  # noqa: E402
from LesionAILib.jobs.runner import JobRunner  # noqa: E402

pytestmark = pytest.mark.mrml


# --------------------------------------------------------------------------- fixtures
@pytest.fixture(scope="session")
def app(slicer_app):
    return slicer_app




@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory) -> Path:
    return save_tiny_model(tmp_path_factory.mktemp("models") / "tiny.safetensors", "tiny-untrained", seed=1)


@pytest.fixture(scope="session")
def logic(app, tmp_path_factory) -> LesionAILogic:
    root = tmp_path_factory.mktemp("lesionai")
    return LesionAILogic(app.scene, app.segmentations_logic, modelStore=root / "store", workFolder=root / "jobs")


@pytest.fixture(scope="session")
def volumes_0000(logic, prostatex_dir) -> dict:
    return logic.loadStudy(prostatex_dir / "ProstateX-0000")


@pytest.fixture(scope="session")
def analysis_0000(logic, volumes_0000, tiny_model):
    return logic.analyze(volumes_0000["t2w"], volumes_0000["adc"], volumes_0000["hbv"], model=tiny_model, device="cpu")


def _matrix(node) -> np.ndarray:
    matrix = vtk.vtkMatrix4x4()
    node.GetIJKToRASMatrix(matrix)
    return np.array([[matrix.GetElement(r, c) for c in range(4)] for r in range(4)])


# --------------------------------------------------------------------------- geometry
def test_loaded_volumes_carry_simpleitk_geometry_after_the_lps_to_ras_flip(volumes_0000, case_0000):
    flip = np.diag([-1.0, -1.0, 1.0])
    for role, node in volumes_0000.items():
        image = case_0000.image(role)
        direction = np.asarray(image.GetDirection()).reshape(3, 3)
        expected = np.eye(4)
        expected[:3, :3] = flip @ direction @ np.diag(image.GetSpacing())
        expected[:3, 3] = flip @ np.asarray(image.GetOrigin())
        np.testing.assert_allclose(_matrix(node), expected, atol=1e-6, err_msg=role)
        np.testing.assert_array_equal(slicer.util.arrayFromVolume(node), sitk.GetArrayViewFromImage(image))
    t2 = volumes_0000["t2w"]
    assert t2.GetAttribute("DICOM.SeriesNumber") == "4"
    assert t2.GetAttribute("DICOM.SeriesDescription") == "t2_tse_tra"
    assert "axial T2" in t2.GetAttribute("LesionAI.RoleReason")
    assert volumes_0000["hbv"].GetAttribute("LesionAI.Role") == "hbv"
    assert t2.GetName() == "ProstateX-0000 T2 (4: t2_tse_tra)"


def test_prostatex_finding_at_lps_appears_at_the_flipped_ras_position(volumes_0000, logic):
    x, y, z = FINDING_0000_LPS
    ras = np.array([-x, -y, z, 1.0])
    ras_to_ijk = np.linalg.inv(_matrix(volumes_0000["t2w"]))
    np.testing.assert_allclose((ras_to_ijk @ ras)[:3], FINDING_0000_T2_IJK, atol=0.1)
    # and back through the logic's node → engine conversion (RAS → LPS)
    case = logic.caseFromNodes(volumes_0000["t2w"], volumes_0000["adc"], volumes_0000["hbv"])
    index = case.t2w.TransformPhysicalPointToContinuousIndex(FINDING_0000_LPS)
    np.testing.assert_allclose(index, FINDING_0000_T2_IJK, atol=0.1)


def test_case_from_nodes_has_the_study_geometry_and_voxels(volumes_0000, logic, case_0000):
    case = logic.caseFromNodes(volumes_0000["t2w"], volumes_0000["adc"], volumes_0000["hbv"])
    for role in ("t2w", "adc", "hbv"):
        mine, reference = case.image(role), case_0000.image(role)
        np.testing.assert_allclose(mine.GetOrigin(), reference.GetOrigin(), atol=1e-6)
        np.testing.assert_allclose(mine.GetSpacing(), reference.GetSpacing(), atol=1e-9)
        np.testing.assert_allclose(mine.GetDirection(), reference.GetDirection(), atol=1e-9)
        np.testing.assert_array_equal(sitk.GetArrayViewFromImage(mine), sitk.GetArrayViewFromImage(reference))
    assert case.sources["t2w"].series_number == 4 and case.patient_id == "ProstateX-0000"


def test_a_linear_parent_transform_moves_the_geometry_the_engine_sees(app, logic, volumes_0000):
    t2 = volumes_0000["t2w"]
    copy = app.scene.AddNewNodeByClass("vtkMRMLScalarVolumeNode", "shifted T2")
    copy.SetAndObserveImageData(t2.GetImageData())
    copy.SetIJKToRASMatrix(_vtk(_matrix(t2)))
    transform = app.scene.AddNewNodeByClass("vtkMRMLLinearTransformNode")
    transform.SetMatrixTransformToParent(_vtk(np.array([[1, 0, 0, 10.0], [0, 1, 0, 0], [0, 0, 1, 0], [0, 0, 0, 1]])))
    copy.SetAndObserveTransformNodeID(transform.GetID())
    np.testing.assert_allclose(ijk_to_ras_of_node(copy)[0, 3], _matrix(t2)[0, 3] + 10.0, atol=1e-9)
    app.scene.RemoveNode(copy)
    app.scene.RemoveNode(transform)


def _vtk(matrix: np.ndarray) -> vtk.vtkMatrix4x4:
    result = vtk.vtkMatrix4x4()
    for r in range(4):
        for c in range(4):
            result.SetElement(r, c, float(matrix[r, c]))
    return result


# --------------------------------------------------------------------------- analysis
def test_heatmap_node_has_exactly_the_t2_geometry_and_the_engine_heatmap(analysis_0000, volumes_0000, case_0000):
    t2 = volumes_0000["t2w"]
    np.testing.assert_allclose(_matrix(analysis_0000.heatmap), _matrix(t2), atol=1e-12)
    assert analysis_0000.heatmap.GetImageData().GetDimensions() == t2.GetImageData().GetDimensions()
    engine = sitk.GetArrayFromImage(analysis_0000.result.heatmap)
    np.testing.assert_allclose(slicer.util.arrayFromVolume(analysis_0000.heatmap), engine, atol=1e-6)
    np.testing.assert_allclose(ijk_to_ras_of_image(analysis_0000.result.heatmap), _matrix(t2), atol=1e-6)


def test_candidate_table_rows_equal_the_engine_candidates(analysis_0000, logic, volumes_0000, case_0000, tiny_model):
    engine = Analyzer(tiny_model, device="cpu").analyze(case_0000)
    rows = logic.candidateRows(volumes_0000["t2w"])
    assert len(rows) == len(engine.candidates) >= 1
    assert [c for c in candidate_nodes.COLUMNS] == [
        analysis_0000.table.GetTable().GetColumn(i).GetName() for i in range(len(candidate_nodes.COLUMNS))
    ]
    for row, candidate in zip(rows, engine.candidates, strict=True):
        assert row["id"] == candidate.candidate_id
        assert row["probability"] == pytest.approx(candidate.probability, abs=1e-6)
        assert row["grade group"] == ("" if candidate.grade_group is None else str(candidate.grade_group))
        assert row["volume ml"] == pytest.approx(candidate.volume_ml, abs=1e-9)
        assert [row["R mm"], row["A mm"], row["S mm"]] == pytest.approx(list(candidate.center_ras_mm), abs=1e-6)
        assert [row["R mm"], row["A mm"], row["S mm"]] == pytest.approx(
            [-candidate.center_lps_mm[0], -candidate.center_lps_mm[1], candidate.center_lps_mm[2]], abs=1e-6
        )
        assert row["peak"] == pytest.approx(candidate.peak, abs=1e-6)
        assert row["model"] == candidate.score_model
    assert analysis_0000.caseScore == pytest.approx(engine.case_score, abs=1e-6)


def test_heatmap_display_uses_the_module_heat_colours_window_and_threshold(analysis_0000, logic, volumes_0000, app):
    display = analysis_0000.heatmap.GetScalarVolumeDisplayNode()
    colour = display.GetColorNode()
    assert colour.IsA("vtkMRMLProceduralColorNode") and colour.GetName() == "LesionAI Heat"
    assert colour.GetColorTransferFunction().GetRange() == (0.0, 1.0)
    assert (display.GetWindow(), display.GetLevel()) == pytest.approx((1.0, 0.5))
    assert display.GetApplyThreshold() and display.GetLowerThreshold() == pytest.approx(0.2)
    logic.setHeatmapThreshold(volumes_0000["t2w"], 0.35)
    assert display.GetLowerThreshold() == pytest.approx(0.35)
    composite = app.scene.AddNewNodeByClass("vtkMRMLSliceCompositeNode")
    logic.showResult(volumes_0000["t2w"], opacity=0.4)
    assert composite.GetBackgroundVolumeID() == volumes_0000["t2w"].GetID()
    assert composite.GetForegroundVolumeID() == analysis_0000.heatmap.GetID()
    logic.setHeatmapOpacity(0.7)
    assert composite.GetForegroundOpacity() == pytest.approx(0.7)
    summary = logic.resultSummary(volumes_0000["t2w"])
    assert summary == {
        "caseScore": pytest.approx(analysis_0000.caseScore, abs=1e-6),
        "modelName": "tiny-untrained (demo model — synthetic training data, not for clinical use)",
        "modelNotice": "demo model — synthetic training data, not for clinical use",
        "isDemoModel": True,
    }
    assert analysis_0000.table.GetAttribute("LesionAI.ModelName") == summary["modelName"]
    logic.setHeatmapThreshold(volumes_0000["t2w"], 0.2)
    app.scene.RemoveNode(composite)


def test_one_outlined_segment_per_candidate_with_its_voxels(analysis_0000):
    labels = sitk.GetArrayFromImage(analysis_0000.result.candidate_map)
    segmentation = analysis_0000.candidateSegmentation
    for candidate in analysis_0000.candidates:
        segment_id = candidate_nodes.segment_of_candidate(segmentation, candidate.candidate_id)
        voxels = int((labels == candidate.candidate_id).sum())
        if voxels == 0:
            assert segment_id is None
            continue
        segment = segmentation.GetSegmentation().GetSegment(segment_id)
        assert segment.GetName().startswith(f"Candidate {candidate.candidate_id} ")
        assert candidate_nodes.segment_tag(segment, "LesionAI.Probability") == f"{candidate.probability:.6f}"
        scene = segmentation.GetScene()
        exported = scene.AddNewNodeByClass("vtkMRMLLabelMapVolumeNode")
        ids = vtk.vtkStringArray()
        ids.InsertNextValue(segment_id)
        reference = analysis_0000.heatmap
        slicer.vtkSlicerSegmentationsModuleLogic.ExportSegmentsToLabelmapNode(segmentation, ids, exported, reference)
        assert int((slicer.util.arrayFromVolume(exported) > 0).sum()) == voxels
        scene.RemoveNode(exported)
    assert segmentation.GetDisplayNode().GetVisibility2DOutline()


def test_reanalysis_updates_the_same_nodes(analysis_0000, logic, volumes_0000, tiny_model):
    again = logic.analyze(*volumes_0000.values(), model=tiny_model, device="cpu")
    assert again.heatmap is analysis_0000.heatmap and again.table is analysis_0000.table
    assert again.candidateSegmentation is analysis_0000.candidateSegmentation


def test_jumping_to_a_candidate_centres_every_slice_view_on_it(analysis_0000, logic, volumes_0000, app):
    slice_node = app.scene.AddNewNodeByClass("vtkMRMLSliceNode")
    slice_node.SetDimensions(256, 256, 1)
    slice_node.SetOrientationToAxial()
    first = analysis_0000.candidates[0]
    point = logic.jumpToCandidate(volumes_0000["t2w"], first.candidate_id)
    assert point == pytest.approx(first.center_ras_mm, abs=1e-6)
    matrix = slice_node.GetSliceToRAS()
    assert [matrix.GetElement(i, 3) for i in range(3)] == pytest.approx(list(first.center_ras_mm), abs=1e-6)
    with pytest.raises(LesionAIError, match="no candidate 99"):
        logic.jumpToCandidate(volumes_0000["t2w"], 99)
    app.scene.RemoveNode(slice_node)


# --------------------------------------------------------------------------- bad inputs
def test_missing_role_and_same_volume_twice_give_clear_errors(logic, volumes_0000):
    with pytest.raises(LesionAIError, match=r"^missing ADC \(load a study or choose"):
        logic.caseFromNodes(volumes_0000["t2w"], None, volumes_0000["hbv"])
    with pytest.raises(LesionAIError, match="selected as both axial T2 and ADC"):
        logic.caseFromNodes(volumes_0000["t2w"], volumes_0000["t2w"], volumes_0000["hbv"])


def test_adc_moved_far_from_the_t2_is_refused_as_a_mismatched_study(logic, volumes_0000, app):
    adc = volumes_0000["adc"]
    moved = app.scene.AddNewNodeByClass("vtkMRMLScalarVolumeNode", "ADC of another study")
    moved.SetAndObserveImageData(adc.GetImageData())
    matrix = _matrix(adc)
    matrix[:3, 3] += (0.0, 0.0, 500.0)
    moved.SetIJKToRASMatrix(_vtk(matrix))
    with pytest.raises(LesionAIError) as error:
        logic.analyze(volumes_0000["t2w"], moved, volumes_0000["hbv"], device="cpu")
    message = str(error.value)
    assert message.startswith("ADC of another study: the ADC image does not cover the T2 volume's centre")
    assert "500 mm apart" in message and "same study" in message and "\n" not in message
    app.scene.RemoveNode(moved)


def test_roles_come_from_recorded_attributes_then_names(logic, volumes_0000, app):
    assert logic.assignRoles(list(volumes_0000.values())) == volumes_0000
    nodes = {}
    for name, source in (
        ("7: ep2d_diff_tra_ADC", "adc"),
        ("8: ep2d_diff_tra_CALC_BVAL", "hbv"),
        ("4: t2_tse_tra", "t2w"),
    ):
        nodes[source] = app.scene.AddNewNodeByClass("vtkMRMLScalarVolumeNode", name)
        nodes[source].SetAndObserveImageData(volumes_0000[source].GetImageData())
        nodes[source].SetIJKToRASMatrix(_vtk(_matrix(volumes_0000[source])))
    localizer = app.scene.AddNewNodeByClass("vtkMRMLScalarVolumeNode", "1: t2_localizer")
    localizer.SetAndObserveImageData(volumes_0000["t2w"].GetImageData())
    chosen = logic.assignRoles([localizer, *nodes.values()])
    assert chosen == nodes
    assert "looks like the ADC" in nodes["adc"].GetAttribute("LesionAI.RoleReason")
    assert logic.assignRoles([localizer, *nodes.values()], overrides={"t2w": localizer})["t2w"] is localizer
    with pytest.raises(LesionAIError, match="no volume looks like the ADC"):
        logic.assignRoles([localizer])
    for node in [localizer, *nodes.values()]:
        app.scene.RemoveNode(node)


# --------------------------------------------------------------------------- annotation
def _paint(logic, segmentation, mask: np.ndarray, t2, name: str) -> str:
    """Add a segment holding ``mask`` ([K, J, I] bool on the T2 grid) the way a label map import does."""
    scene = segmentation.GetScene()
    labelmap = scene.AddNewNodeByClass("vtkMRMLLabelMapVolumeNode")
    slicer.util.updateVolumeFromArray(labelmap, mask.astype(np.uint8))
    labelmap.SetIJKToRASMatrix(_vtk(_matrix(t2)))
    before = segmentation.GetSegmentation().GetNumberOfSegments()
    slicer.vtkSlicerSegmentationsModuleLogic.ImportLabelmapToSegmentationNode(labelmap, segmentation)
    scene.RemoveNode(labelmap)
    segment_id = segmentation.GetSegmentation().GetNthSegmentID(before)
    segmentation.GetSegmentation().GetSegment(segment_id).SetName(name)
    return segment_id


def test_annotation_round_trip_gives_the_same_voxels_from_the_engine_reader(logic, volumes_0000, tmp_path):
    t2, adc, hbv = volumes_0000["t2w"], volumes_0000["adc"], volumes_0000["hbv"]
    shape = tuple(reversed(t2.GetImageData().GetDimensions()))
    first, second = np.zeros(shape, bool), np.zeros(shape, bool)
    first[7:10, 215:232, 158:176] = True  # around the ProstateX finding (k 8.5, j 223.9, i 166.8)
    second[11:13, 150:160, 200:212] = True
    second[11, 150:155, 200:205] = True
    annotation = logic.createAnnotation(t2)
    assert annotation.GetNodeReference(annotation.GetReferenceImageGeometryReferenceRole()) is t2
    assert t2.GetNodeReference("LesionAI.Annotation") is annotation
    ids = [_paint(logic, annotation, first, t2, "PZ lesion"), _paint(logic, annotation, second, t2, "TZ nodule")]
    empty = logic.addLesion(annotation)
    with pytest.raises(LesionAIError, match="lesion 'PZ lesion' has no grade group"):
        logic.saveAnnotatedCase(tmp_path / "site", "ProstateX-0000", t2, adc, hbv, annotation, "dr test")
    logic.setLesionGrade(annotation, ids[0], 3, zone="PZ")
    logic.setLesionGrade(annotation, ids[1], 1)
    assert [row["gradeGroup"] for row in logic.lesionGrades(annotation)] == [3, 1, None]
    scene = t2.GetScene()
    before = sorted(scene.GetNthNode(i).GetID() for i in range(scene.GetNumberOfNodes()))
    folder = logic.saveAnnotatedCase(tmp_path / "site", "ProstateX-0000", t2, adc, hbv, annotation, "dr test")
    after = sorted(scene.GetNthNode(i).GetID() for i in range(scene.GetNumberOfNodes()))
    assert after == before, "saving a case leaves no node behind (temporary label maps, their colour tables)"
    dataset = read_deployment(tmp_path / "site")
    assert dataset.problems == [] and [c.case_id for c in dataset.annotated] == ["ProstateX-0000"]
    saved = dataset.annotated[0]
    assert [(l.id, l.grade_group, l.zone) for l in saved.lesions] == [(1, 3, "PZ"), (2, 1, "")]
    assert saved.annotator == "dr test"
    mask = sitk.ReadImage(str(folder / "lesions.nii.gz"))
    array = sitk.GetArrayFromImage(mask)
    np.testing.assert_array_equal(array == 1, first)
    np.testing.assert_array_equal(array == 2, second)
    np.testing.assert_allclose(ijk_to_ras_of_image(mask), _matrix(t2), atol=1e-4)  # NIfTI stores float32
    t2_saved = sitk.ReadImage(str(folder / "t2w.nii.gz"))
    np.testing.assert_array_equal(sitk.GetArrayFromImage(t2_saved), slicer.util.arrayFromVolume(t2))
    assert json.loads((folder / "annotation.json").read_text())["source"]["t2w"].endswith("t2tsetra-00702")
    logic.scene.RemoveNode(annotation)
    assert empty


def test_a_lesion_hidden_under_later_segments_is_refused(logic, volumes_0000, tmp_path):
    t2 = volumes_0000["t2w"]
    shape = tuple(reversed(t2.GetImageData().GetDimensions()))
    small, large = np.zeros(shape, bool), np.zeros(shape, bool)
    small[8, 200:205, 160:165] = True
    large[7:10, 195:210, 155:170] = True
    annotation = logic.createAnnotation(t2)
    for mask, name in ((small, "small"), (large, "large")):
        logic.setLesionGrade(annotation, _paint(logic, annotation, mask, t2, name), 2)
    with pytest.raises(LesionAIError, match="small are completely covered"):
        logic.saveAnnotatedCase(tmp_path / "site", "hidden", t2, volumes_0000["adc"], volumes_0000["hbv"], annotation)
    logic.scene.RemoveNode(annotation)


def test_prefilled_annotation_copies_candidates_with_predicted_grades(logic, volumes_0000, analysis_0000):
    annotation = logic.createAnnotation(volumes_0000["t2w"], prefillFromCandidates=True)
    rows = logic.lesionGrades(annotation)
    outlined = analysis_0000.candidateSegmentation.GetSegmentation().GetNumberOfSegments()
    assert len(rows) == outlined >= 1
    assert rows[0]["name"] == "Lesion 1" and rows[0]["proposedByModel"] == (rows[0]["gradeGroup"] is not None)
    logic.scene.RemoveNode(annotation)


def test_next_case_is_the_most_uncertain_unannotated_case(logic, volumes_0000, tiny_model, tmp_path):
    from LesionAILib.adaptation.ordering import order_by_uncertainty
    from LesionAILib.inference.analyzer import Analyzer

    pool = tmp_path / "pool"
    t2, adc, hbv = volumes_0000["t2w"], volumes_0000["adc"], volumes_0000["hbv"]
    logic.saveAnnotatedCase(pool, "case-a", t2, adc, hbv, None)
    flipped = logic.addVolumeFromImage(
        sitk.Flip(logic.caseFromNodes(t2, adc, hbv).t2w, [True, False, False], flipAboutOrigin=False), "flipped T2"
    )
    logic.saveAnnotatedCase(pool, "case-b", flipped, adc, hbv, None)
    assert logic.datasetSummary(pool)["unannotated"] == 2
    records = [c.record() for c in read_deployment(pool).unannotated]
    expected = order_by_uncertainty(Analyzer(tiny_model, device="cpu"), records, samples=2)[0].case_id
    assert logic.nextCaseToAnnotate(pool, model=tiny_model, device="cpu", samples=2) == expected
    job = logic.startNextCaseSearch(pool, model=tiny_model, device="cpu", samples=2, python=sys.executable)
    state = job.wait(timeout_s=120)
    assert state.status == "finished", state.error
    assert state.result["first"] == expected and [item["case"] for item in state.result["order"]][0] == expected
    assert [e["done"] for e in state.events if e.get("stage") == "uncertainty"] == [1, 2]
    logic.scene.RemoveNode(flipped)


# --------------------------------------------------------------------------- models
def test_model_version_switch_and_rollback_change_the_model_analysis_uses(
    app, tmp_path, monkeypatch, volumes_0000, tiny_model
):
    import LesionAILib.models.bundled as bundled

    monkeypatch.setattr(bundled, "DEMO_MODEL", tiny_model)  # stands in for the bundled demo model
    logic = LesionAILogic(app.scene, modelStore=tmp_path / "store", workFolder=tmp_path / "jobs")
    assert [v["version"] for v in logic.modelVersions()] == ["demo"] and logic.modelVersions()[0]["active"]
    other = save_tiny_model(tmp_path / "other.safetensors", "site-model", seed=2)
    version = logic.addModelFile(other, note="from the site")
    assert version == "v2" and not logic.modelVersions()[1]["active"]
    logic.activateModelVersion(version)
    assert logic.activeModelPath().name == "v2.safetensors"
    assert "(active)" in logic.modelVersions()[1]["label"]
    t2, adc, hbv = volumes_0000["t2w"], volumes_0000["adc"], volumes_0000["hbv"]
    assert logic.analyze(t2, adc, hbv, device="cpu").modelName.startswith("site-model")
    assert logic.rollbackModel() == "demo"
    assert logic.analyze(t2, adc, hbv, device="cpu").modelName.startswith("tiny-untrained")
    with pytest.raises(LesionAIError, match="no model version 'v9'"):
        logic.activateModelVersion("v9")


# --------------------------------------------------------------------------- jobs
def _script_job(tmp_path: Path, body: str, **kwargs) -> JobRunner:
    return JobRunner([sys.executable, "-c", textwrap.dedent(body)], tmp_path / "job", **kwargs).start()


def test_job_runner_follows_json_progress_lines_without_blocking(tmp_path):
    job = _script_job(
        tmp_path,
        """
        import json, sys, time
        def emit(**event):
            print(json.dumps(event), flush=True)
        emit(event="progress", stage="prepare", done=1, total=2)
        print("a plain log line", flush=True)
        for epoch in (1, 2):
            emit(event="progress", phase=1, epoch=epoch, done=3, total=4, loss=0.5 / epoch)
            emit(event="epoch", phase=1, epoch=epoch, train_loss=0.4, val_score=0.1 * epoch)
        sys.stdout.write('{"event": "progress", "phase": 2, "epoch": 1, "done": 1, ')
        sys.stdout.flush()
        time.sleep(0.3)
        sys.stdout.write('"total": 2}\\n')
        emit(event="finetuned", version="v2", activated=True, validation_after={"score": 0.42})
        """,
        epochs={1: 2, 2: 1},
    )
    started = time.monotonic()
    assert job.poll() == [] or job.state.status == "running"
    assert time.monotonic() - started < 0.2
    state = job.wait(timeout_s=30)
    assert state.status == "finished" and state.returncode == 0
    assert [e["event"] for e in state.events] == [
        "progress",
        "progress",
        "epoch",
        "progress",
        "epoch",
        "progress",
        "finetuned",
    ]
    assert state.log == ["a plain log line"]
    assert (state.phase, state.epoch, state.done, state.total) == (2, 1, 1, 2)
    assert state.loss == pytest.approx(0.25) and state.validation_score == pytest.approx(0.42)
    assert state.result == {"version": "v2", "activated": True, "validation_after": {"score": 0.42}}
    assert state.epoch_fraction == pytest.approx((2 + 0 + 0.5) / 3)


def test_job_runner_cancel_stops_the_process(tmp_path):
    job = _script_job(
        tmp_path,
        """
        import json, time
        for step in range(600):
            print(json.dumps({"event": "progress", "stage": "work", "done": step, "total": 600}), flush=True)
            time.sleep(0.05)
        """,
    )
    while not job.state.events:
        job.poll()
        time.sleep(0.05)
    job.cancel(grace_s=5)
    state = job.wait(timeout_s=10)
    assert state.status == "cancelled" and state.done < 599
    assert "cancelled" in state.describe()


def test_job_runner_reports_the_one_line_error_of_a_failed_job(tmp_path):
    job = _script_job(
        tmp_path,
        """
        import sys
        print("lesionai: error: /data/x: no DICOM MR series found (point to the study)", file=sys.stderr)
        sys.exit(2)
        """,
    )
    state = job.wait(timeout_s=30)
    assert state.status == "failed" and state.returncode == 2
    assert state.error == "/data/x: no DICOM MR series found (point to the study)"


def test_analysis_in_a_separate_process_gives_the_in_process_table(logic, volumes_0000, tiny_model, analysis_0000):
    t2, adc, hbv = volumes_0000["t2w"], volumes_0000["adc"], volumes_0000["hbv"]
    in_process = logic.candidateRows(t2)
    heatmap_before = slicer.util.arrayFromVolume(analysis_0000.heatmap).copy()
    job = logic.startAnalysis(t2, adc, hbv, model=tiny_model, device="cpu", python=sys.executable)
    state = job.wait(timeout_s=120)
    assert state.status == "finished", state.error or (job.stderr_path.read_text())
    assert [e["stage"] for e in state.events if e["event"] == "progress"][-1] == "resample_to_t2"
    assert state.result["candidates"] == len(in_process)
    loaded = logic.loadAnalysisResult(job.work_folder / "result", t2)
    assert loaded.heatmap is analysis_0000.heatmap and loaded.isDemoModel
    for mine, theirs in zip(logic.candidateRows(t2), in_process, strict=True):
        assert mine.keys() == theirs.keys()
        for key, value in theirs.items():
            assert mine[key] == (pytest.approx(value, abs=1e-5) if isinstance(value, float) else value), key
    np.testing.assert_allclose(slicer.util.arrayFromVolume(analysis_0000.heatmap), heatmap_before, atol=1e-5)
    logic.removeJobFolder(job)
    assert not job.work_folder.exists()


def test_finetuning_in_a_separate_process_adds_a_version_to_switch_to_and_back(app, volumes_0000, tiny_model, tmp_path):
    """The panel's fine-tuning path end to end: annotated cases → `lesionai finetune` job → new version → rollback."""
    logic = LesionAILogic(app.scene, modelStore=tmp_path / "store", workFolder=tmp_path / "jobs")
    t2, adc, hbv = volumes_0000["t2w"], volumes_0000["adc"], volumes_0000["hbv"]
    annotation = logic.createAnnotation(t2)
    lesion = np.zeros(tuple(reversed(t2.GetImageData().GetDimensions())), bool)
    lesion[7:10, 215:232, 158:176] = True
    logic.setLesionGrade(annotation, _paint(logic, annotation, lesion, t2, "PZ lesion"), 3)
    for index in range(4):  # the engine's minimum; the same study four times is enough to exercise the path
        logic.saveAnnotatedCase(tmp_path / "site", f"case-{index}", t2, adc, hbv, annotation, "dr test")
    logic.scene.RemoveNode(annotation)
    assert logic.datasetSummary(tmp_path / "site")["annotated"] == 4
    base = logic.addModelFile(tiny_model)
    logic.activateModelVersion(base)
    job = logic.startFinetuning(tmp_path / "site", epochs=1, classifierEpochs=1, device="cpu", python=sys.executable)
    assert job.command[1:5] == ["-m", "LesionAILib.cli", "finetune", "--json-events"]
    assert job.command[job.command.index("--store") + 1] == str(tmp_path / "store")
    assert job.state.epochs == {1: 1, 2: 1}
    state = job.wait(timeout_s=300)
    assert state.status == "finished", state.error
    kinds = [event["event"] for event in state.events]
    assert {"progress", "epoch", "validation", "finetuned"} <= set(kinds) and kinds[-1] == "finetuned"
    assert [(e["phase"], e["epoch"]) for e in state.events if e["event"] == "epoch"] == [(1, 1), (2, 1)]
    assert state.validation_score is not None and state.epoch_fraction >= 0.5
    result = state.result
    assert result["base"] == base and result["version"] == "v3"
    assert logic.activeModelPath().name == ("v3.safetensors" if result["activated"] else f"{base}.safetensors")
    logic.activateModelVersion("v3")
    assert logic.rollbackModel() == base and logic.activeModelPath().name == f"{base}.safetensors"


# --------------------------------------------------------------------------- rendering
def test_rendered_slice_view_shows_heat_at_the_candidate_and_grey_far_away(
    app, logic, volumes_0000, tmp_path, offscreen_gl
):
    view = offscreen.create_slice_view(app, "Axial", size=(400, 400))
    for crosshair in display.nodes_of_class(app.scene, "vtkMRMLCrosshairNode"):  # the reading layout shows it
        crosshair.SetCrosshairMode(crosshair.NoCrosshair)
    # the session scene keeps what earlier tests made (annotations, glands, points): hide it, so the
    # picture shows only this result's layers
    t2 = volumes_0000["t2w"]
    outlines = t2.GetNodeReference(results.CANDIDATES_REFERENCE)  # reused by the load below: stays shown
    earlier = [
        node
        for kind in ("vtkMRMLSegmentationDisplayNode", "vtkMRMLMarkupsDisplayNode", "vtkMRMLModelDisplayNode")
        for node in display.nodes_of_class(app.scene, kind)
        if node.GetVisibility() and not (outlines and node.GetDisplayableNode() is outlines)
    ]
    for node in earlier:
        node.SetVisibility(False)
    for composite in display.nodes_of_class(app.scene, "vtkMRMLSliceCompositeNode"):
        composite.SetLabelVolumeID(None)
    candidate = write_known_result(tmp_path / "known", logic.caseFromNodes(*volumes_0000.values()))
    try:
        logic.loadAnalysisResult(tmp_path / "known", t2)
        logic.showResult(t2, opacity=0.8)
        centre = candidate["center_ras_mm"]
        pixels = offscreen.render(view, center_ras=centre, field_of_view_mm=80, png_path=tmp_path / "view.png")
        row, column = offscreen.ras_to_pixel(view, centre)
    finally:
        view.finalize()
        app.view_manager.remove_view(view.get_singleton_tag())
        for node in earlier:
            node.SetVisibility(True)
    assert (tmp_path / "view.png").stat().st_size > 10_000 and pixels.shape == (400, 400, 3)
    assert abs(row - 200) <= 1 and abs(column - 200) <= 1  # centred
    centre_rgb = pixels[row - 2 : row + 3, column - 2 : column + 3].reshape(-1, 3).mean(0)
    assert centre_rgb[0] >= centre_rgb[1] > centre_rgb[2] + 20, f"heat peak not yellow-white: {centre_rgb}"
    ring = column + 20  # 4 mm from the centre (5 px/mm): heat ≈ 0.6, red-orange
    red, green, blue = pixels[row - 1 : row + 2, ring - 1 : ring + 2].reshape(-1, 3).mean(0)
    assert red > 150 and red > green + 60 and red > blue + 60, f"no heat colour near the candidate: {red, green, blue}"
    far = pixels[60:80, 40:60].reshape(-1, 3).astype(int)  # 30-35 mm from the candidate: T2 only
    assert np.abs(far[:, 0] - far[:, 2]).max() <= 2 and np.abs(far[:, 0] - far[:, 1]).max() <= 2
    assert far.mean() > 5, "the T2 background is not drawn"
    cyan = (pixels[..., 2] > 150) & (pixels[..., 1] > 150) & (pixels[..., 0] < 90)
    assert cyan.sum() > 50, "no candidate outline"
    rows, columns = np.nonzero(cyan)
    assert abs(rows.mean() - row) < 15 and abs(columns.mean() - column) < 15


# --------------------------------------------------------------------------- module plumbing
def test_a_saved_scene_restores_the_analysis_the_panel_shows(app, logic, volumes_0000, analysis_0000, tmp_path):
    """What the panel reads back after a scene is reopened: references, summary, table, outlines, colours."""
    scene = app.scene
    parameters = logic.getParameterNode()
    parameters.SetNodeReferenceID("t2Volume", volumes_0000["t2w"].GetID())  # as the panel's wrapper stores it
    restored = save_and_reopen_mrb(scene, tmp_path)
    reopened = LesionAILogic(restored)
    t2 = reopened.getParameterNode().GetNodeReference("t2Volume")
    assert t2.GetName() == volumes_0000["t2w"].GetName()
    assert reopened.resultSummary(t2) == pytest.approx(logic.resultSummary(volumes_0000["t2w"]), abs=1e-6)
    rows, expected = reopened.candidateRows(t2), logic.candidateRows(volumes_0000["t2w"])
    assert [r["id"] for r in rows] == [r["id"] for r in expected]
    assert rows[0]["probability"] == pytest.approx(expected[0]["probability"], rel=1e-5)  # CSV keeps 6 digits
    heatmap = reopened.resultNodes(t2)["heatmap"]
    np.testing.assert_allclose(_matrix(heatmap), _matrix(t2), atol=1e-9)
    assert heatmap.GetScalarVolumeDisplayNode().GetColorNode().GetName() == "LesionAI Heat"
    outlines = reopened.resultNodes(t2)["candidates"].GetSegmentation().GetNumberOfSegments()
    assert outlines == analysis_0000.candidateSegmentation.GetSegmentation().GetNumberOfSegments()


_SELF_TEST = """
import sys, types, unittest
from trame_slicer.core import SlicerApp
import slicer

app = SlicerApp()
# stand-ins for the parts of Slicer that only the application has
qt = types.ModuleType("qt")
wrapper = types.ModuleType("slicer.parameterNodeWrapper")
wrapper.parameterNodeWrapper = lambda cls: cls
for name in ("Choice", "Decimals", "SingleStep", "WithinRange"):
    setattr(wrapper, name, lambda *args, **kwargs: ("annotation", args))
scripted = types.ModuleType("slicer.ScriptedLoadableModule")
scripted.ScriptedLoadableModule = type("ScriptedLoadableModule", (), {})
scripted.ScriptedLoadableModuleWidget = type("ScriptedLoadableModuleWidget", (), {})
scripted.ScriptedLoadableModuleTest = type("ScriptedLoadableModuleTest", (unittest.TestCase,), {"delayDisplay": print})
sys.modules.update({"qt": qt, "slicer.parameterNodeWrapper": wrapper, "slicer.ScriptedLoadableModule": scripted})
slicer.mrmlScene = app.scene
slicer.modules = types.SimpleNamespace(segmentations=types.SimpleNamespace(logic=lambda: app.segmentations_logic))
import LesionAI

for name in ("LesionAI", "LesionAIWidget", "LesionAIParameterNode"):
    assert hasattr(LesionAI, name), name
suite = unittest.defaultTestLoader.loadTestsFromTestCase(LesionAI.LesionAITest)
sys.exit(0 if unittest.TextTestRunner(verbosity=2).run(suite).wasSuccessful() else 1)
"""


def test_the_in_slicer_self_test_passes_on_slicer_core_with_stand_ins_for_the_application(tmp_path):
    """LesionAITest (phantom → load → analyze → table → annotate → save) run outside Slicer, in a child process
    because its setUp clears the scene."""
    import subprocess

    result = subprocess.run(
        [sys.executable, "-c", _SELF_TEST],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=tmp_path,
        env={**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT / "LesionAI"), str(ROOT)])},
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert "test_LoadAnalyzeAnnotate" in result.stderr and "OK" in result.stderr


def test_parameter_node_is_a_scene_singleton(logic):
    node = logic.getParameterNode()
    assert node is logic.getParameterNode() and node.GetAttribute("ModuleName") == "LesionAI"
    assert node.GetSingletonTag() == "LesionAI"


def test_dependency_constraints_pin_the_installed_numpy_simpleitk_and_torch():
    import importlib.metadata

    pins = dependencies.protected_constraints().split()
    assert f"numpy=={importlib.metadata.version('numpy')}" in pins
    assert f"SimpleITK=={importlib.metadata.version('SimpleITK')}" in pins
    assert f"torch=={importlib.metadata.version('torch')}" in pins
    assert dependencies.missing_packages() == [] and dependencies.describe_missing() == ""
    assert dependencies.torch_status()["in_range"]


# --------------------------------------------------------------------------- point and classify
FINDING_0000_RAS = (-25.7457, -31.8707, -38.511)


def test_classify_point_at_the_ras_finding_gives_the_engine_probability_at_the_lps_point(
    logic, volumes_0000, case_0000
):
    from LesionAILib.prostatex.classifier import CLASSIFIER_NAME
    from LesionAILib.prostatex.point_classification import PointClassifier

    result = logic.classifyPoint(volumes_0000, FINDING_0000_RAS)
    engine = PointClassifier().classify(case_0000, FINDING_0000_LPS)
    assert result.model_name == CLASSIFIER_NAME and 0.0 <= result.probability <= 1.0
    assert result.probability == pytest.approx(engine.probability, abs=1e-6)
    assert result.patches.point_lps == pytest.approx(FINDING_0000_LPS)
    for role in ("t2w", "adc", "hbv"):
        np.testing.assert_array_equal(result.patches.images[role], engine.patches.images[role])
    triple = logic.classifyPoint(
        (volumes_0000["t2w"], volumes_0000["adc"], volumes_0000["hbv"]), FINDING_0000_RAS, zone="PZ"
    )
    assert triple.probability == pytest.approx(
        PointClassifier().classify(case_0000, FINDING_0000_LPS, zone="PZ").probability
    )
    with pytest.raises(LesionAIError, match="outside") as caught:
        logic.classifyPoint(volumes_0000, (0.0, 0.0, 400.0))
    assert "\n" not in str(caught.value)


def test_a_placed_control_point_puts_its_probability_and_model_in_the_candidate_table(app, logic, volumes_0000):
    from LesionAILogic.points import POINT_ROW_ID_BASE

    from LesionAILib.prostatex.classifier import CLASSIFIER_NAME

    t2 = volumes_0000["t2w"]
    before = logic.candidateRows(t2)
    points = app.scene.AddNewNodeByClass("vtkMRMLMarkupsFiducialNode", "LesionAI points")
    try:
        points.AddControlPoint(list(FINDING_0000_RAS))
        result = logic.classifyControlPoint(volumes_0000, points, 0)
        rows = logic.candidateRows(t2)
        assert len(rows) == len(before) + 1 and rows[: len(before)] == before
        row = rows[-1]
        assert row["id"] == POINT_ROW_ID_BASE + 1 and row["model"] == CLASSIFIER_NAME
        assert row["probability"] == pytest.approx(result.probability)
        assert (row["R mm"], row["A mm"], row["S mm"]) == pytest.approx(FINDING_0000_RAS)
        assert np.isnan(row["volume ml"]) and np.isnan(row["peak"]) and row["grade group"] == ""
        assert points.GetNthControlPointDescription(0) == f"p = {result.probability:.2f} ({CLASSIFIER_NAME})"
        moved = (FINDING_0000_RAS[0] - 6.0, FINDING_0000_RAS[1], FINDING_0000_RAS[2])
        points.SetNthControlPointPositionWorld(0, *moved)
        again = logic.classifyControlPoint(volumes_0000, points, 0)
        rows = logic.candidateRows(t2)
        assert [r["id"] for r in rows].count(POINT_ROW_ID_BASE + 1) == 1  # the row is replaced, not added
        assert rows[-1]["R mm"] == pytest.approx(moved[0]) and rows[-1]["probability"] == pytest.approx(
            again.probability
        )
    finally:
        app.scene.RemoveNode(points)
        table = logic.resultNodes(t2)["table"]
        table.GetTable().RemoveRow(table.GetTable().GetNumberOfRows() - 1)
    assert logic.candidateRows(t2) == before


def test_point_classification_in_a_separate_process_puts_the_in_process_probability_in_the_table(
    app, logic, volumes_0000
):
    """The panel's path: `lesionai classify --json-events` in a job (torch stays out of Slicer), then the table."""
    from LesionAILogic.points import POINT_ROW_ID_BASE

    from LesionAILib.prostatex.classifier import CLASSIFIER_NAME

    t2 = volumes_0000["t2w"]
    before = logic.candidateRows(t2)
    points = app.scene.AddNewNodeByClass("vtkMRMLMarkupsFiducialNode", "LesionAI points (job)")
    moved = (FINDING_0000_RAS[0] - 6.0, FINDING_0000_RAS[1], FINDING_0000_RAS[2])
    try:
        points.AddControlPoint(list(FINDING_0000_RAS))
        points.AddControlPoint(list(moved))
        job = logic.startPointClassification(volumes_0000, points, python=sys.executable)
        assert job.command[1:5] == ["-m", "LesionAILib.cli", "classify", "--json-events"]
        state = job.wait(timeout_s=300)
        assert state.status == "finished", state.error or job.stderr_path.read_text()
        assert [e["done"] for e in state.events if e.get("stage") == "classifying"] == [1, 2]
        scored = logic.putPointClassifications(job)
        expected = [logic.classifyPoint(volumes_0000, point).probability for point in (FINDING_0000_RAS, moved)]
        assert [point["probability"] for point in scored] == pytest.approx(expected, abs=1e-4)
        rows = logic.candidateRows(t2)
        assert len(rows) == len(before) + 2 and rows[: len(before)] == before
        for number, (row, point) in enumerate(zip(rows[len(before) :], (FINDING_0000_RAS, moved), strict=True)):
            assert row["id"] == POINT_ROW_ID_BASE + number + 1 and row["model"] == CLASSIFIER_NAME
            assert (row["R mm"], row["A mm"], row["S mm"]) == pytest.approx(point, abs=1e-3)
            assert row["probability"] == pytest.approx(expected[number], abs=1e-4)
        assert points.GetNthControlPointDescription(1) == f"p = {scored[1]['probability']:.2f} ({CLASSIFIER_NAME})"
        logic.removeJobFolder(job)
    finally:
        app.scene.RemoveNode(points)
        table = logic.resultNodes(t2)["table"]
        while table.GetTable().GetNumberOfRows() > len(before):
            table.GetTable().RemoveRow(table.GetTable().GetNumberOfRows() - 1)
    assert logic.candidateRows(t2) == before


# --------------------------------------------------------------------------- result folders
def test_a_lesionai_analyze_folder_of_a_phantom_case_opens_onto_its_t2_node(app, tiny_model, tmp_path):
    """`lesionai analyze` writes the folder, the panel's loader reads it: heatmap on the T2 grid, table = CSV."""
    import csv

    from LesionAILib.cli.main import main
    from LesionAILib.phantom.cohort import write_cohort

    ids = write_cohort(tmp_path / "cohort", 1, site="C", seed=4)
    study = next((tmp_path / "cohort" / "images").iterdir())
    out = tmp_path / "analysis"
    arguments = ["analyze", str(study), "--out", str(out), "--model", str(tiny_model), "--device", "cpu"]
    assert main([*arguments, "--no-figures"]) == 0 and len(ids) == 1
    logic = LesionAILogic(app.scene, modelStore=tmp_path / "store", workFolder=tmp_path / "jobs")
    volumes = logic.loadStudy(study)
    t2 = volumes["t2w"]
    analysis = logic.loadAnalysisResult(out, t2)
    try:
        np.testing.assert_allclose(_matrix(analysis.heatmap), _matrix(t2), atol=1e-9)
        assert analysis.heatmap.GetImageData().GetDimensions() == t2.GetImageData().GetDimensions()
        written = sitk.GetArrayFromImage(sitk.ReadImage(str(out / "heatmap.nrrd")))
        np.testing.assert_array_equal(slicer.util.arrayFromVolume(analysis.heatmap), written)
        with open(out / "candidates.csv", newline="") as handle:
            table = list(csv.DictReader(handle))
        rows = logic.candidateRows(t2)
        assert len(rows) == len(table) >= 1
        for row, line in zip(rows, table, strict=True):
            assert row["id"] == int(line["id"]) and row["grade group"] == line["grade_group"]
            assert row["model"] == line["score_model"]
            for column, key, places in (("probability", "probability", 4), ("volume ml", "volume_ml", 4)):
                assert row[column] == pytest.approx(float(line[key]), abs=0.6 * 10**-places), column
            assert row["peak"] == pytest.approx(float(line["peak"]), abs=6e-5)
            ras = [float(line[key]) for key in ("center_r_mm", "center_a_mm", "center_s_ras_mm")]
            assert [row["R mm"], row["A mm"], row["S mm"]] == pytest.approx(ras, abs=6e-3)
        summary = logic.resultSummary(t2)
        assert summary["isDemoModel"] and summary["modelName"].startswith("tiny-untrained")
        assert summary["caseScore"] == pytest.approx(float(table[0]["probability"]), abs=6e-5)
    finally:
        for node in [*volumes.values(), *(n for n in logic.resultNodes(t2).values() if n is not None)]:
            app.scene.RemoveNode(node)

"""Evaluation: our numbers are picai_eval's, files are paired and checked, intervals and sites are right."""

from __future__ import annotations

import contextlib
import io
import json
import shutil

import numpy as np
import pytest
import SimpleITK as sitk

from LesionAILib.errors import LesionAIError
from LesionAILib.evaluation.case_files import evaluate_folders
from LesionAILib.evaluation.metrics import FP_PER_CASE, evaluate_arrays
from LesionAILib.evaluation.plots import write_plots
from LesionAILib.evaluation.sites import read_sites_csv
from LesionAILib.geometry import Grid

with contextlib.redirect_stdout(io.StringIO()):
    import picai_eval

SHAPE = (16, 48, 48)
CELL = (8, 16, 16)  # the volume is cut into 2 x 3 x 3 cells; every blob stays inside its cell with a margin
LESION_START, LESION_SIZE = (2, 5, 5), (4, 6, 6)
# Few values, so scores tie within and across cases; hits tend to score higher than false positives.
HIT_CONFIDENCES, OTHER_CONFIDENCES = (0.6, 0.8, 0.9), (0.2, 0.4, 0.6, 0.8)


def put_box(volume, start, size, value):
    volume[tuple(slice(a, a + n) for a, n in zip(start, size, strict=True))] = value


def cell_origin(cell):
    z, y, x = np.unravel_index(cell, (2, 3, 3))
    return np.array([z * CELL[0], y * CELL[1], x * CELL[2]])


def random_case(rng):
    """A label with 0-3 lesions (ISUP 2-5) and a detection map with hits at varied IoU, weak hits
    (IoU < 0.1: a false positive and a missed lesion), missed lesions, split hits (two candidates on
    one lesion) and false positives. Returns the arrays and what was placed."""
    label = np.zeros(SHAPE, np.uint8)
    detection = np.zeros(SHAPE, np.float32)
    lesions, false_positives = int(rng.integers(0, 4)), int(rng.integers(0, 3))
    cells = rng.permutation(18)[: lesions + false_positives]
    kinds = []
    for cell in cells[:lesions]:
        base = cell_origin(cell) + LESION_START
        put_box(label, base, LESION_SIZE, rng.integers(2, 6))
        kind = rng.choice(["hit", "hit", "weak", "miss", "split"])
        kinds.append(kind)
        confidence = rng.choice(HIT_CONFIDENCES if kind in ("hit", "split") else OTHER_CONFIDENCES)
        if kind == "hit":  # shifted 0-3 voxels in x: IoU from 1 down to 1/3
            put_box(detection, base + [0, 0, rng.integers(0, 4)], LESION_SIZE, confidence)
        elif kind == "weak":  # 4 x 2 x 2 voxels in common: IoU 16 / 272 < 0.1
            put_box(detection, base + [0, 4, 4], LESION_SIZE, confidence)
        elif kind == "split":  # IoU 0.5 and 0.33, separated by one empty row
            put_box(detection, base, (4, 3, 6), confidence)
            put_box(detection, base + [0, 4, 0], (4, 2, 6), rng.choice(OTHER_CONFIDENCES))
    for cell in cells[lesions:]:
        put_box(detection, cell_origin(cell) + [2, 4, 4], (3, 5, 4), rng.choice(OTHER_CONFIDENCES))
    return detection, label, kinds


@pytest.fixture(scope="module")
def cohort():
    rng = np.random.default_rng(7)
    detections, labels, kinds = [], [], []
    for _ in range(30):
        detection, label, placed = random_case(rng)
        detections.append(detection)
        labels.append(label)
        kinds.append(placed)
    # one negative case with an empty map, one positive case whose lesion is not detected at all
    detections[0][:] = 0
    labels[0][:] = 0
    kinds[0] = []
    detections[1][:] = 0
    placed = set(sum(kinds, []))
    assert {"hit", "weak", "miss", "split"} <= placed, placed
    assert sum(not label.any() for label in labels) >= 5 and sum(label.any() for label in labels) >= 10
    ids = [f"case{i:02d}" for i in range(30)]
    binary = [(label > 0).astype(np.uint8) for label in labels]
    reference = picai_eval.evaluate(y_det=detections, y_true=binary, subject_list=ids, num_parallel_calls=1)
    return {
        "detections": detections,
        "labels": labels,
        "binary": binary,
        "ids": ids,
        "reference": reference,
        "lesions_placed": sum(len(placed) for placed in kinds),
    }


def froc_from_curve(metrics, false_positives_per_case):
    """Highest sensitivity among the FROC points with at most x false positives per case."""
    points = zip(metrics.lesion_TPR, metrics.lesion_FPR, strict=True)
    return max((float(tpr) for tpr, fpr in points if fpr <= false_positives_per_case), default=0.0)


def test_metrics_equal_picai_eval_on_varied_random_cases(cohort):
    reference = cohort["reference"]
    result = evaluate_arrays(cohort["detections"], cohort["labels"], cohort["ids"], bootstrap=0)

    assert result.picai_metrics.lesion_results == reference.lesion_results
    assert abs(result.ap - reference.AP) <= 1e-12
    assert abs(result.auroc - reference.auroc) <= 1e-12
    assert abs(result.score - reference.score) <= 1e-12
    assert result.num_cases == 30
    assert result.num_lesions == reference.num_lesions == cohort["lesions_placed"]
    assert result.num_positive_cases == sum(label.any() for label in cohort["labels"])
    flat = reference.lesion_results_flat
    assert result.num_candidates == sum(1 for _, confidence, _ in flat if confidence > 0)
    for x in FP_PER_CASE:
        assert result.froc_sensitivity[x] == pytest.approx(froc_from_curve(reference, x), abs=1e-12)
    assert 0 < result.froc_sensitivity[0.25] <= result.froc_sensitivity[2.0] < 1
    assert 0.3 < result.ap < 0.95 and 0.5 < result.auroc < 1.0  # a dataset that discriminates, imperfectly


def hand_example():
    """Four cases whose metrics are worked out by hand in the test below. Shape (6, 16, 32)."""
    shape = (6, 16, 32)
    maps = {name: np.zeros(shape, np.float32) for name in "abcd"}
    labels = {name: np.zeros(shape, np.uint8) for name in "abcd"}
    put_box(labels["a"], (1, 4, 4), (4, 4, 4), 3)
    put_box(maps["a"], (1, 4, 5), (4, 4, 4), 0.9)  # IoU 48/80: hit
    put_box(labels["b"], (1, 4, 4), (4, 4, 4), 1)
    put_box(labels["b"], (1, 4, 24), (4, 4, 4), 1)
    put_box(maps["b"], (1, 4, 4), (4, 4, 4), 0.5)  # IoU 1: hit
    put_box(maps["b"], (1, 7, 27), (4, 4, 4), 0.6)  # IoU 4/124 < 0.1: a false positive, and a missed lesion
    put_box(maps["c"], (1, 4, 4), (3, 3, 3), 0.7)  # benign case: false positive
    return maps, labels  # case d: benign, empty map


def test_hand_computed_four_cases():
    # Lesion list (is_lesion, confidence): a (1, .9); b (1, .5), (1, 0) missed, (0, .6); c (0, .7).
    # PR by threshold: .9 P=1 R=1/3; .7 P=1/2 R=1/3; .6 P=1/3 R=1/3; .5 P=1/2 R=2/3; the miss adds R=1 at P=0.
    # AP = 1/3 * 1 + 1/3 * 1/2 + 1/3 * 0 = 1/2.
    # Case scores: a .9 (+), b .6 (+), c .7 (-), d 0 (-): pairs (a>c, a>d, b<c, b>d) -> AUROC 3/4.
    # FROC (4 cases): FP/case 0, .25, .5, .5 at sensitivity 1/3, 1/3, 1/3, 2/3.
    maps, labels = hand_example()
    calls = []
    result = evaluate_arrays(
        list(maps.values()), list(labels.values()), list(maps), bootstrap=0, progress=lambda *done: calls.append(done)
    )
    assert calls == [(1, 4), (2, 4), (3, 4), (4, 4)]
    assert result.ap == pytest.approx(0.5, abs=1e-12)
    assert result.auroc == pytest.approx(0.75, abs=1e-12)
    assert result.score == pytest.approx(0.625, abs=1e-12)
    assert result.froc_sensitivity == pytest.approx({0.25: 1 / 3, 0.5: 2 / 3, 1.0: 2 / 3, 2.0: 2 / 3})
    assert (result.num_cases, result.num_positive_cases, result.num_lesions, result.num_candidates) == (4, 2, 3, 4)


def test_cases_without_lesions_give_undefined_metrics_not_errors(tmp_path):
    maps, labels = hand_example()
    result = evaluate_arrays([maps["c"], maps["d"]], [labels["c"], labels["d"]], ["c", "d"], bootstrap=20)
    assert (result.auroc, result.ap, result.score, result.num_lesions, result.num_candidates) == (
        None,
        None,
        None,
        0,
        1,
    )
    assert set(result.froc_sensitivity.values()) == {None} and set(result.ci95.values()) == {None}
    assert json.loads(json.dumps(result.to_dict()))["auroc"] is None
    assert "n/a" in result.table() and any("undefined" in text for text in result.warnings)
    paths = write_plots(result, tmp_path)
    assert all(path.stat().st_size > 1000 for path in paths.values())


def write_image(array, path, grid):
    sitk.WriteImage(grid.image_from_array(array), str(path))


GRID = Grid((6, 16, 32), (3.0, 0.5, 0.5), (-20.5, 10.25, 3.0), np.eye(3))


@pytest.fixture
def hand_folders(tmp_path):
    maps, labels = hand_example()
    formats = {"a": (".nii.gz", ".mha"), "b": (".mha", ".nrrd"), "c": (".nrrd", ".nii"), "d": (".nii", ".nii.gz")}
    (tmp_path / "pred").mkdir()
    (tmp_path / "labels").mkdir()
    (tmp_path / "labels" / "notes.txt").write_text("not an image")
    for name, (pred_suffix, label_suffix) in formats.items():
        write_image(maps[name], tmp_path / "pred" / f"{name}{pred_suffix}", GRID)
        write_image(labels[name], tmp_path / "labels" / f"{name}{label_suffix}", GRID)
    return tmp_path / "pred", tmp_path / "labels"


def test_folders_pair_by_stem_across_formats_and_write_json_and_plots(hand_folders, tmp_path):
    pred_dir, label_dir = hand_folders
    result = evaluate_folders(
        pred_dir, label_dir, out_json=tmp_path / "out" / "metrics.json", plots_dir=tmp_path / "plots", bootstrap=0
    )
    assert result.picai_metrics.subject_list == ["a", "b", "c", "d"]
    assert (result.ap, result.auroc, result.score) == pytest.approx((0.5, 0.75, 0.625), abs=1e-12)
    saved = json.loads((tmp_path / "out" / "metrics.json").read_text())
    assert saved["ap"] == pytest.approx(0.5) and saved["auroc"] == pytest.approx(0.75)
    assert saved["score"] == pytest.approx(0.625)
    assert saved["froc_sensitivity"]["0.5"] == pytest.approx(2 / 3)
    assert saved["num_lesions"] == 3 and saved["cases"]["b"]["target"] == 1
    assert set(saved["definitions"]) >= {"ap", "auroc", "score", "froc_sensitivity"}
    for name in ("froc.png", "roc.png"):
        png = (tmp_path / "plots" / name).read_bytes()
        assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 5000


def test_geometry_mismatch_names_both_files(hand_folders):
    pred_dir, label_dir = hand_folders
    maps, _ = hand_example()
    shifted = Grid(GRID.shape, GRID.spacing, (-20.5, 10.25, 6.0), GRID.direction)
    write_image(maps["c"], pred_dir / "c.nrrd", shifted)
    with pytest.raises(LesionAIError) as error:
        evaluate_folders(pred_dir, label_dir, bootstrap=0)
    message = str(error.value)
    assert str(pred_dir / "c.nrrd") in message and str(label_dir / "c.nii") in message
    assert "\n" not in message


def test_label_without_prediction_refused_unless_allow_missing(hand_folders):
    pred_dir, label_dir = hand_folders
    (pred_dir / "b.mha").unlink()
    with pytest.raises(LesionAIError, match="allow_missing") as error:
        evaluate_folders(pred_dir, label_dir, bootstrap=0)
    assert str(label_dir / "b.nrrd") in str(error.value)

    result = evaluate_folders(pred_dir, label_dir, bootstrap=0, allow_missing=True)
    maps, labels = hand_example()
    maps["b"][:] = 0
    reference = picai_eval.evaluate(
        y_det=list(maps.values()), y_true=list(labels.values()), subject_list=list(maps), num_parallel_calls=1
    )
    assert result.ap == pytest.approx(reference.AP, abs=1e-12)
    assert result.auroc == pytest.approx(reference.auroc, abs=1e-12)
    assert result.num_lesions == 3
    assert any("without detection map" in text and "b" in text for text in result.warnings)


def test_prediction_without_label_refused(hand_folders):
    pred_dir, label_dir = hand_folders
    (label_dir / "d.nii.gz").unlink()
    with pytest.raises(LesionAIError, match="has no label") as error:
        evaluate_folders(pred_dir, label_dir, bootstrap=0)
    assert str(pred_dir / "d.nii") in str(error.value)


def test_two_files_for_one_case_refused(hand_folders):
    pred_dir, label_dir = hand_folders
    maps, _ = hand_example()
    write_image(maps["a"], pred_dir / "a.nrrd", GRID)
    with pytest.raises(LesionAIError, match="two detection map files for case a"):
        evaluate_folders(pred_dir, label_dir, bootstrap=0)


@pytest.fixture
def result_folders(hand_folders, tmp_path):
    """The hand example as `lesionai analyze` writes it: PRED/<case>/detection_map.nrrd and .nii.gz, with
    result.json and a heatmap beside them (a decoy: scored instead, it would change every metric), plus a
    plots/ folder without a detection map."""
    _, label_dir = hand_folders
    maps, labels = hand_example()
    pred_dir = tmp_path / "PRED"
    for name in maps:
        folder = pred_dir / name
        folder.mkdir(parents=True)
        write_image(maps[name], folder / "detection_map.nii.gz", GRID)
        write_image(maps[name], folder / "detection_map.nrrd", GRID)
        write_image((labels[name] > 0).astype(np.float32) * 0.95, folder / "heatmap.nii.gz", GRID)
        (folder / "result.json").write_text(json.dumps({"case_id": name}))
    (pred_dir / "plots").mkdir()
    (pred_dir / "plots" / "froc.png").write_bytes(b"\x89PNG")
    return pred_dir, label_dir


def test_analyze_result_folders_pair_by_folder_name_and_read_the_detection_map(result_folders):
    pred_dir, label_dir = result_folders
    result = evaluate_folders(pred_dir, label_dir, bootstrap=0)
    assert result.picai_metrics.subject_list == ["a", "b", "c", "d"]
    assert (result.ap, result.auroc, result.score) == pytest.approx((0.5, 0.75, 0.625), abs=1e-12)
    assert result.num_candidates == 4 and not result.warnings


def test_label_without_result_folder_names_the_folder_looked_for(result_folders):
    pred_dir, label_dir = result_folders
    shutil.rmtree(pred_dir / "b")
    with pytest.raises(LesionAIError, match="allow_missing") as error:
        evaluate_folders(pred_dir, label_dir, bootstrap=0)
    message = str(error.value)
    assert message.startswith(str(label_dir / "b.nrrd")) and "result folder b/ with a detection_map.nrrd" in message
    assert str(pred_dir) in message and "\n" not in message
    result = evaluate_folders(pred_dir, label_dir, bootstrap=0, allow_missing=True)
    assert result.picai_metrics.case_pred["b"] == 0 and result.num_lesions == 3
    assert result.warnings == ["1 case(s) without detection map scored as empty (lesions missed): b"]


def test_result_folder_without_label_refused_with_the_case_its_result_json_names(result_folders):
    pred_dir, label_dir = result_folders
    (pred_dir / "d").rename(pred_dir / "study-d")
    with pytest.raises(LesionAIError, match="result folder study-d/ has no label study-d.nii.gz") as error:
        evaluate_folders(pred_dir, label_dir, bootstrap=0)
    assert str(error.value).startswith(str(pred_dir / "study-d" / "detection_map.nrrd"))
    assert "result.json names case d" in str(error.value)


def test_prediction_folder_with_both_layouts_refused_naming_it(result_folders):
    pred_dir, label_dir = result_folders
    maps, _ = hand_example()
    write_image(maps["a"], pred_dir / "a.nii.gz", GRID)
    with pytest.raises(LesionAIError, match=r"both detection map files \(a.nii.gz, ...\) and analysis result") as error:
        evaluate_folders(pred_dir, label_dir, bootstrap=0)
    assert str(error.value).startswith(f"{pred_dir}: ") and "\n" not in str(error.value)


@pytest.mark.parametrize("allow_missing", [False, True])
def test_prediction_folder_with_neither_layout_refused_naming_it(hand_folders, tmp_path, allow_missing):
    _, label_dir = hand_folders
    empty = tmp_path / "empty"
    (empty / "plots").mkdir(parents=True)
    (empty / "notes.txt").write_text("no maps here")
    with pytest.raises(LesionAIError, match="no detection maps found; expected <case>.nii.gz files, or the") as error:
        evaluate_folders(empty, label_dir, bootstrap=0, allow_missing=allow_missing)
    assert str(error.value).startswith(f"{empty}: ")


def test_one_cases_result_folder_refused_as_prediction_folder(result_folders):
    pred_dir, label_dir = result_folders
    with pytest.raises(LesionAIError, match="is the result folder of one analysed case") as error:
        evaluate_folders(pred_dir / "a", label_dir, bootstrap=0)
    assert str(error.value).startswith(str(pred_dir / "a"))


@pytest.mark.parametrize(("value", "match"), [(1.5, r"\[0, 1\].*scale"), (np.nan, "NaN")])
def test_bad_detection_values_refused_naming_the_file(hand_folders, value, match):
    pred_dir, label_dir = hand_folders
    maps, _ = hand_example()
    maps["a"][maps["a"] > 0] = value
    (pred_dir / "a.nii.gz").unlink()
    write_image(maps["a"], pred_dir / "a.mha", GRID)  # not NIfTI: ITK's NIfTI reader turns NaN into 0
    with pytest.raises(LesionAIError, match=match) as error:
        evaluate_folders(pred_dir, label_dir, bootstrap=0)
    assert str(error.value).startswith(str(pred_dir / "a.mha"))


def test_probability_map_refused_naming_the_case():
    maps, labels = hand_example()
    put_box(maps["a"], (1, 4, 5), (2, 4, 4), 0.3)  # one blob, two values: not a detection map
    with pytest.raises(LesionAIError, match="not a detection map") as error:
        evaluate_arrays(list(maps.values()), list(labels.values()), list(maps), bootstrap=0)
    assert str(error.value).startswith("case a:")


def test_bootstrap_matches_picai_eval_draws_contains_estimate_and_is_deterministic(cohort):
    args = (cohort["detections"], cohort["labels"], cohort["ids"])
    first = evaluate_arrays(*args, bootstrap=200, seed=3)
    again = evaluate_arrays(*args, bootstrap=200, seed=3)
    other = evaluate_arrays(*args, bootstrap=200, seed=4)
    reference = cohort["reference"].bootstrap_score_ci(n_bootstraps=200, seed=3)
    assert first.ci95 == again.ci95
    assert first.ci95 != other.ci95
    for name, key in (("auroc", "auroc_95_ci"), ("ap", "ap_95_ci"), ("score", "score_95_ci")):
        low, high = first.ci95[name]
        assert low < getattr(first, name) < high
        assert (low, high) == pytest.approx(tuple(reference[key]), abs=1e-12)


def test_per_site_metrics_equal_picai_eval_on_each_site_alone(cohort):
    ids, binary = cohort["ids"], cohort["binary"]
    negatives = [case_id for case_id, label in zip(ids, binary, strict=True) if not label.any()]
    positives = [case_id for case_id in ids if case_id not in negatives]
    sites = {case_id: "ABC"[i % 3] for i, case_id in enumerate(negatives[3:] + positives)}
    sites |= dict.fromkeys(negatives[:3], "benign-only")
    result = evaluate_arrays(cohort["detections"], cohort["labels"], ids, sites=sites, bootstrap=50)
    assert sorted(result.per_site) == ["A", "B", "C", "benign-only"]
    for site in "ABC":
        members = [i for i, case_id in enumerate(ids) if sites[case_id] == site]
        reference = picai_eval.evaluate(
            y_det=[cohort["detections"][i] for i in members],
            y_true=[binary[i] for i in members],
            subject_list=[ids[i] for i in members],
            num_parallel_calls=1,
        )
        group = result.per_site[site]
        assert group.num_cases == len(members) and group.num_lesions == reference.num_lesions
        assert abs(group.ap - reference.AP) <= 1e-12 and abs(group.auroc - reference.auroc) <= 1e-12
        assert abs(group.score - reference.score) <= 1e-12
        for x in FP_PER_CASE:
            assert group.froc_sensitivity[x] == pytest.approx(froc_from_curve(reference, x), abs=1e-12)
    benign = result.per_site["benign-only"]
    assert (benign.auroc, benign.ap, benign.score, benign.num_lesions) == (None, None, None, 0)
    assert any(text.startswith("site benign-only: AUROC and score undefined") for text in result.warnings)
    table = result.table()
    assert "site benign-only" in table and f"{result.auroc:.3f} [" in table
    assert result.to_dict()["per_site"]["A"]["num_cases"] == sum(site == "A" for site in sites.values())


def test_sites_from_csv_and_picai_marksheet(tmp_path):
    plain = tmp_path / "sites.csv"
    plain.write_text("case_id,site\na,RUMC\nb,ZGT\n")
    assert read_sites_csv(plain) == {"a": "RUMC", "b": "ZGT"}
    marksheet = tmp_path / "marksheet.csv"
    marksheet.write_text("patient_id,study_id,mri_date,center\n10000,1000000,2019-07-02,PCNN\n")
    assert read_sites_csv(marksheet) == {"10000_1000000": "PCNN"}
    maps, labels = hand_example()
    with pytest.raises(LesionAIError, match="have no site: c, d"):
        evaluate_arrays(list(maps.values()), list(labels.values()), list(maps), sites=plain, bootstrap=0)

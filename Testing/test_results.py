"""The one result format: what ``write_result`` writes, ``read_result`` reads back, and the candidate field spec."""

from __future__ import annotations

import csv
import dataclasses
import json

import numpy as np
import pytest
import SimpleITK as sitk

from LesionAILib.errors import LesionAIError
from LesionAILib.inference.analyzer import Analyzer
from LesionAILib.inference.candidates import CANDIDATE_FIELDS, Candidate
from LesionAILib.inference.results import RESULT_FORMAT_VERSION, candidate_table, read_result, write_result
from LesionAILib.models.modelfile import DEMO_NOTICE

# the candidate table's columns as `lesionai analyze` has always written them (README, readers rely on them)
CSV_COLUMNS = [
    "id",
    "probability",
    "grade_group",
    "peak",
    "volume_ml",
    "center_l_mm",
    "center_p_mm",
    "center_s_mm",
    "center_r_mm",
    "center_a_mm",
    "center_s_ras_mm",
    "zone",
    "score_model",
    "in_gland",
]


def _geometry(image: sitk.Image) -> np.ndarray:
    return np.concatenate([image.GetSpacing(), image.GetOrigin(), image.GetDirection()])


@pytest.fixture(scope="module")
def analysed(phantom_cohort, tiny_model_path):
    from LesionAILib.training.cohorts import read_cohort

    case = next(r for r in read_cohort(phantom_cohort).cases if r.lesions).open()
    analyzer = Analyzer(tiny_model_path, device="cpu")
    return case, analyzer.analyze(case), analyzer.metadata


def test_a_written_result_folder_reads_back_exactly(analysed, tmp_path):
    case, result, model = analysed
    assert len(result.candidates) >= 1
    write_result(result, case, tmp_path, model, figures=False)
    stored = read_result(tmp_path)
    assert stored.format_version == RESULT_FORMAT_VERSION == json.loads((tmp_path / "result.json").read_text())[
        "format_version"
    ]
    assert stored.candidates == result.candidates  # every field, full precision
    assert stored.case_id == result.case_id and stored.case_score == result.case_score
    assert (stored.model_name, stored.model_notice, stored.model_sha256) == (
        result.model_name,
        result.model_notice,
        model.sha256,
    )
    for mine, theirs in (
        (stored.heatmap, result.heatmap),
        (stored.detection_map, result.detection_map),
        (stored.candidate_map, result.candidate_map),
    ):
        assert mine.GetSize() == theirs.GetSize() == case.t2w.GetSize()
        np.testing.assert_allclose(_geometry(mine), _geometry(case.t2w), atol=1e-9)  # NRRD: doubles, round-off
        np.testing.assert_array_equal(sitk.GetArrayFromImage(mine), sitk.GetArrayFromImage(theirs))
    with open(tmp_path / "candidates.csv", newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert list(rows[0]) == CSV_COLUMNS and len(rows) == len(result.candidates)
    for row, candidate in zip(rows, result.candidates, strict=True):
        assert int(row["id"]) == candidate.candidate_id
        assert float(row["probability"]) == pytest.approx(candidate.probability, abs=5e-5)
        assert [float(row[k]) for k in ("center_r_mm", "center_a_mm", "center_s_ras_mm")] == pytest.approx(
            candidate.center_ras_mm, abs=5e-3
        )


def test_demo_model_comes_from_the_model_metadata_not_from_the_notice(analysed, tmp_path):
    case, result, model = analysed
    real_data = dataclasses.replace(model, synthetic_training_data=False)
    demo_notice = dataclasses.replace(result, model_notice=DEMO_NOTICE)
    write_result(demo_notice, case, tmp_path / "real", real_data, figures=False)
    write_result(result, case, tmp_path / "synthetic", dataclasses.replace(model, synthetic_training_data=True))
    assert read_result(tmp_path / "real").demo_model is False
    assert read_result(tmp_path / "synthetic").demo_model is True
    assert (tmp_path / "synthetic" / "overview.png").stat().st_size > 5000


def test_a_folder_of_another_format_version_is_refused_in_one_line_naming_it(analysed, tmp_path):
    case, result, model = analysed
    write_result(result, case, tmp_path / "newer", model, figures=False)
    summary = json.loads((tmp_path / "newer" / "result.json").read_text())
    (tmp_path / "newer" / "result.json").write_text(json.dumps({**summary, "format_version": 7}))
    with pytest.raises(LesionAIError) as newer:
        read_result(tmp_path / "newer")
    assert str(newer.value).startswith(f"{tmp_path / 'newer'}: result folder of format version 7;")
    (tmp_path / "older").mkdir()  # the Slicer worker's folders before the format had a version
    (tmp_path / "older" / "result.json").write_text(json.dumps({"case_score": 0.5, "candidates": []}))
    with pytest.raises(LesionAIError, match="result folder of no format version") as older:
        read_result(tmp_path / "older")
    with pytest.raises(LesionAIError, match="not a LesionAI result folder") as empty:
        read_result(tmp_path)
    for error in (newer, older, empty):
        assert "\n" not in str(error.value) and str(tmp_path) in str(error.value)
    (tmp_path / "newer" / "result.json").write_text(json.dumps(summary))
    (tmp_path / "newer" / "heatmap.nrrd").unlink()
    with pytest.raises(LesionAIError, match="heatmap.nrrd is missing"):
        read_result(tmp_path / "newer")


def test_candidate_fields_feed_json_csv_and_the_terminal_table():
    candidate = Candidate(
        candidate_id=2,
        peak=0.61234,
        voxels=40,
        volume_ml=0.123456,
        center_index=(4.0, 10.5, 11.25),
        center_lps_mm=(12.3456, -7.0, 30.125),
        center_ras_mm=(-12.3456, 7.0, 30.125),
        probability=0.87654321,
        grade_group=None,
        score_model="m",
        detector_probability=0.25,
    )
    data = candidate.to_dict()
    assert data["center_ras_mm"] == [-12.3456, 7.0, 30.125] and data["probability"] == 0.87654321
    assert data["grade_group"] is None and data["detector_probability"] == 0.25
    assert Candidate.from_dict(json.loads(json.dumps(data))) == candidate
    assert [spec.name for spec in CANDIDATE_FIELDS] == CSV_COLUMNS
    cells = {spec.name: spec.format(spec.value(candidate)) for spec in CANDIDATE_FIELDS}
    assert cells["probability"] == "0.8765" and cells["center_l_mm"] == "12.35" and cells["grade_group"] == ""
    header, row = candidate_table([candidate]).splitlines()
    expected = ["id", "probability", "grade", "group", "peak", "volume", "ml", *"R mm A mm S mm".split(), "in", "gland"]
    assert header.split() == expected
    assert row.split() == ["2", "0.8765", "0.6123", "0.1235", "-12.35", "7.00", "30.12"]
    assert candidate_table([]).splitlines()[-1].strip() == "(no candidates)"

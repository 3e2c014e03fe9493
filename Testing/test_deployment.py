"""Deployment dataset, model store, orderings and deployment fine-tuning."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
import SimpleITK as sitk

from LesionAILib.adaptation.deployment import LesionAnnotation, read_deployment, save_case
from LesionAILib.adaptation.finetuning import FinetuneSettings, finetune
from LesionAILib.adaptation.ordering import order_by_similarity, order_by_uncertainty, similarity_scores
from LesionAILib.errors import LesionAIError, ModelFileError
from LesionAILib.inference.analyzer import Analyzer
from LesionAILib.models.store import DEMO_VERSION, ModelStore
from LesionAILib.phantom.cases import generate_case
from LesionAILib.training.cohorts import read_cohort


def _save_phantom(root, index: int, site: str = "A", annotated: bool = True):
    case = generate_case(seed=5, site=site, index=index)
    images = {"t2w": case.t2w, "adc": case.adc, "hbv": case.hbv}
    lesions = [LesionAnnotation(l.lesion_id, l.grade_group, l.zone) for l in case.lesions]
    return case, save_case(
        root,
        case.case_id,
        images,
        case.lesion_instances if annotated else None,
        lesions if annotated else None,
        annotator="tester",
    )


def test_saved_case_reads_back_with_the_same_voxels_grades_and_geometry(tmp_path):
    case, folder = _save_phantom(tmp_path / "site", 4)  # two lesions, GG4 and GG2
    dataset = read_deployment(tmp_path / "site")
    assert dataset.problems == [] and len(dataset.annotated) == 1
    stored = dataset.cases[0]
    assert stored.annotator == "tester" and stored.time.endswith("+00:00")
    assert [(l.id, l.grade_group) for l in stored.lesions] == [(l.lesion_id, l.grade_group) for l in case.lesions]
    mask = sitk.ReadImage(str(folder / "lesions.nii.gz"))
    np.testing.assert_array_equal(sitk.GetArrayFromImage(mask), sitk.GetArrayFromImage(case.lesion_instances))
    reopened = stored.record().open()
    np.testing.assert_allclose(reopened.t2w.GetOrigin(), case.t2w.GetOrigin(), atol=1e-4)
    assert json.loads((tmp_path / "site" / "manifest.json").read_text())["cases"][case.case_id]["lesions"] == len(
        case.lesions
    )


def test_corrupt_half_written_and_unlisted_cases_are_reported_and_skipped(tmp_path):
    root = tmp_path / "site"
    for index in range(3):
        _save_phantom(root, index)
    first, second, third = sorted(p for p in (root / "cases").iterdir())
    (second / "lesions.nii.gz").write_bytes(b"half")  # damaged after saving
    shutil.copytree(third, root / "cases" / "stray")  # a folder the manifest does not know
    (first / "t2w.nii.gz").unlink()
    dataset = read_deployment(root)
    assert [c.case_id for c in dataset.cases] == [third.name]
    problems = " | ".join(dataset.problems)
    assert "t2w.nii.gz is missing" in problems and "lesions.nii.gz does not match its checksum" in problems
    assert "stray: folder present but not in the manifest" in problems


def test_saving_refuses_ungraded_lesions_and_keeps_the_previous_version(tmp_path):
    root = tmp_path / "site"
    case, folder = _save_phantom(root, 5)  # one GG3 lesion
    before = (folder / "annotation.json").read_text()
    images = {"t2w": case.t2w, "adc": case.adc, "hbv": case.hbv}
    with pytest.raises(LesionAIError, match="grade every lesion"):
        save_case(root, case.case_id, images, case.lesion_instances, [], annotator="other")
    assert (folder / "annotation.json").read_text() == before
    assert not [p for p in (root / "cases").iterdir() if p.name.startswith(".")], "no staging folder left behind"
    with pytest.raises(LesionAIError, match="grade group must be 0–5"):
        LesionAnnotation(1, 7)


def test_model_store_adds_versions_activates_and_rolls_back(tmp_path, tiny_model_path):
    store = ModelStore(tmp_path / "store")
    assert store.active == DEMO_VERSION
    first = store.add(tiny_model_path, parent=DEMO_VERSION, validation={"after": {"score": 0.5}})
    second = store.add(tiny_model_path, parent=first)
    assert (first, second) == ("v2", "v3") and store.active == DEMO_VERSION
    store.activate(second)
    assert store.active == second and store.active_path().exists()
    assert store.rollback() == DEMO_VERSION
    with pytest.raises(ModelFileError, match="no model version 'v9'"):
        store.activate("v9")
    with pytest.raises(ModelFileError, match="nothing to roll back"):
        store.rollback()
    assert [v.version for v in store.versions()] == [DEMO_VERSION, first, second]


def test_uncertainty_order_is_sorted_and_keeps_its_components(phantom_cohort, tiny_model_path):
    analyzer = Analyzer(tiny_model_path, device="cpu")
    cases = read_cohort(phantom_cohort).cases[:4]
    ordered = order_by_uncertainty(analyzer, cases, samples=3)
    assert sorted(item.case_id for item in ordered) == sorted(c.case_id for c in cases)
    scores = [item.score for item in ordered]
    assert scores == sorted(scores, reverse=True)
    for item in ordered:
        assert set(item.components) == {"mc_dropout", "tta", "entropy"}
        expected = np.mean([2 * item.components["mc_dropout"], 2 * item.components["tta"], item.components["entropy"]])
        assert item.score == pytest.approx(expected) and 0 <= item.score <= 1


def test_similarity_prefers_cases_of_the_reference_site(tmp_path, phantom_cohort, tiny_model_path):
    from LesionAILib.phantom.cohort import write_cohort

    other = tmp_path / "D"
    write_cohort(other, 3, site="D", seed=2)
    reference = read_cohort(phantom_cohort).cases[:4]
    candidates = read_cohort(phantom_cohort).cases[4:] + read_cohort(other).cases
    ordered = order_by_similarity(Analyzer(tiny_model_path, device="cpu"), reference, candidates, k=3)
    ranks = [item.case_id[0] for item in ordered]
    assert ranks[:2] == ["A", "A"], f"site A cases should come first, got {ranks}"
    reference_rows = np.random.default_rng(0).normal(size=(20, 4))
    near, far = reference_rows[:1] + 0.01, reference_rows[:1] + 10
    scores = similarity_scores(reference_rows, np.concatenate([far, near]), k=3)
    assert scores[1] > scores[0]


def test_finetuning_adds_a_version_and_activates_only_if_it_validates(tmp_path, tiny_model_path):
    root = tmp_path / "site"
    for index in range(5):
        _save_phantom(root, index, site="D")
    store = ModelStore(tmp_path / "store")
    base = store.add(tiny_model_path, note="tiny base")
    store.activate(base)
    settings = FinetuneSettings(epochs=1, classifier_epochs=1, crops_per_case=1, uncertainty_samples=2, device="cpu")
    result = finetune(root, store, settings=settings, run_dir=tmp_path / "run")
    assert result.base == base and result.version != base and result.train_cases == 4 and result.val_cases == 1
    assert [item["case"] for item in result.order] and len(result.order) == 4
    expected_active = result.version if result.validation_after["score"] >= result.validation_before["score"] else base
    assert store.active == expected_active and result.activated == (expected_active == result.version)
    assert store.path(base).exists() and store.path(result.version).exists()
    forced = finetune(root, store, base=base, settings=settings, run_dir=tmp_path / "run2", force=True)
    assert forced.activated and store.active == forced.version
    _save_phantom(tmp_path / "small", 0)
    with pytest.raises(LesionAIError, match="at least 4 annotated cases"):
        finetune(tmp_path / "small", store, settings=settings, run_dir=tmp_path / "run3")

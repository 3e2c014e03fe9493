"""Finding patches: the ProstateX findings dataset reproduced from the real DICOM studies."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import SimpleITK as sitk
from conftest import FINDING_0000_LPS, FINDING_0001_LPS, require_module

from LesionAILib.errors import StudyError
from LesionAILib.geometry import lps_to_ras
from LesionAILib.prostatex.findings import load_findings
from LesionAILib.prostatex.patches import (
    BLOB_SIGMA_PIXELS,
    NEAREST_VOXEL_AT,
    PatchExtractor,
    cut_window,
    equalize_histogram,
    localization_blob,
)

STORED = {"t2w": 0, "adc": 1, "hbv": 2}  # channel of each role in the dataset's inputs


@pytest.fixture(scope="module")
def findings(findings_dir):
    return load_findings(findings_dir)


@pytest.fixture(scope="module")
def extractor_0000(case_0000):
    return PatchExtractor(case_0000)


@pytest.fixture(scope="module")
def extractor_0001(case_0001):
    return PatchExtractor(case_0001)


def _correlation(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.corrcoef(a.ravel(), b.ravel())[0, 1])


@pytest.mark.parametrize(
    ("patient", "point", "listed_k"),
    [("ProstateX-0000", FINDING_0000_LPS, 9), ("ProstateX-0001", FINDING_0001_LPS, 10)],
)
def test_extraction_reproduces_the_stored_patches_with_the_nearest_voxel_at_row_15_column_16(
    request, findings, patient, point, listed_k
):
    extractor = request.getfixturevalue("extractor_" + patient[-4:])
    stored = findings.inputs.images[findings.index_of(patient, 1)].numpy()
    patches = extractor.extract(point)
    for role, channel in STORED.items():
        window = patches.windows[role]
        # the convention: nearest slice, and the voxel nearest the point at patch pixel (15, 16)
        k, j, i = (int(np.floor(v + 0.5)) for v in window.point_index)
        assert window.slice_index == k == listed_k - 1  # the README's "k - 1 of images.csv's ijk"
        assert (j - window.row_start, i - window.column_start) == NEAREST_VOXEL_AT
        by_offset = {}
        for rows in range(-2, 3):
            for columns in range(-2, 3):
                moved = dataclasses.replace(
                    window, row_start=window.row_start + rows, column_start=window.column_start + columns
                )
                by_offset[rows, columns] = _correlation(cut_window(extractor.equalised[role], moved), stored[channel])
        best = max(by_offset, key=by_offset.get)
        assert best == (0, 0), f"{patient} {role}: best offset {best}"
        assert by_offset[best] >= 0.99
        np.testing.assert_allclose(patches.images[role], stored[channel], atol=1e-4, err_msg=f"{patient} {role}")


def test_lps_and_ras_points_give_the_same_patches(extractor_0000):
    from_lps = extractor_0000.extract(FINDING_0000_LPS)
    from_ras = extractor_0000.extract(lps_to_ras(FINDING_0000_LPS), ras=True)
    assert from_ras.point_lps == pytest.approx(FINDING_0000_LPS)
    assert from_lps.point_ras == pytest.approx((-25.7457, -31.8707, -38.511))
    for role in STORED:
        np.testing.assert_array_equal(from_lps.images[role], from_ras.images[role])
        assert from_lps.windows[role] == from_ras.windows[role]


def test_equalisation_matches_scikit_image_with_65536_bins(case_0000):
    exposure = require_module("skimage.exposure", "scikit-image is a test dependency")
    for role in ("t2w", "adc"):
        volume = sitk.GetArrayFromImage(case_0000.image(role))
        reference = exposure.equalize_hist(volume, nbins=65536)
        assert np.abs(equalize_histogram(volume) - reference).max() < 1e-4, role
    floats = np.random.default_rng(0).gamma(2.0, 300.0, size=(6, 40, 40))  # the float path: 65536 bins over the range
    assert np.abs(equalize_histogram(floats) - exposure.equalize_hist(floats, nbins=65536)).max() < 1e-4


def test_localization_map_is_a_centred_blob_by_default(extractor_0000):
    patches = extractor_0000.extract(FINDING_0000_LPS)
    assert patches.localization_source == "blob"
    for role, sigma in BLOB_SIGMA_PIXELS.items():
        blob = patches.localization[role]
        assert blob.shape == (32, 32) and blob.dtype == np.float32
        np.testing.assert_allclose(blob, blob[::-1, ::-1], atol=1e-7)  # symmetric about the patch centre
        np.testing.assert_allclose(blob, blob.T, atol=1e-7)
        assert set(zip(*np.nonzero(blob == blob.max()), strict=True)) == {(15, 15), (15, 16), (16, 15), (16, 16)}
        # one sigma from the centre (15.5, 15.5) along a row: exp(-1/2)
        assert localization_blob(sigma)[15, int(15.5 + sigma + 0.5)] == pytest.approx(
            np.exp(-((int(15.5 + sigma + 0.5) - 15.5) ** 2 + 0.25) / (2 * sigma**2)), rel=1e-5
        )
    np.testing.assert_array_equal(patches.localization["adc"], localization_blob(3.0))


def test_a_heatmap_is_sampled_onto_each_patch_grid(extractor_0000, case_0000):
    """A heatmap linear in LPS (on the T2 grid) sampled at every patch pixel equals the function at its centre."""
    t2 = case_0000.grid("t2w")
    positions = t2.index_to_lps(np.stack(np.meshgrid(*[np.arange(n) for n in t2.shape], indexing="ij"), -1))

    def heat(lps: np.ndarray) -> np.ndarray:
        return 0.5 + (lps[..., 0] - 25.0) / 200.0 + (lps[..., 1] - 30.0) / 400.0

    heatmap = t2.image_from_array(heat(positions).astype(np.float32))
    patches = extractor_0000.extract(FINDING_0000_LPS, heatmap=heatmap)
    assert patches.localization_source == "heatmap"
    for role, window in patches.windows.items():
        rows, columns = np.meshgrid(np.arange(32), np.arange(32), indexing="ij")
        index = np.stack(
            [np.full(rows.shape, window.slice_index), rows + window.row_start, columns + window.column_start], -1
        )
        expected = heat(window.grid.index_to_lps(index))
        inside = t2.contains_index(t2.lps_to_index(window.grid.index_to_lps(index)), margin=0.0)
        assert inside.mean() > 0.9, role
        np.testing.assert_allclose(patches.localization[role][inside], expected[inside], atol=1e-3, err_msg=role)


def test_a_point_outside_the_volume_is_refused_in_one_line(extractor_0000):
    with pytest.raises(StudyError) as caught:
        extractor_0000.extract((25.0, 31.0, 200.0))
    message = str(caught.value)
    assert "outside the axial T2 volume" in message and "\n" not in message

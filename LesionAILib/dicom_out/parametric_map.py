"""The heatmap as a DICOM Parametric Map: the combined localization map, float32, one frame per source T2 slice.

A Parametric Map keeps the map's values as they are (32-bit float, 0–1, no units) with a Real World
Value Mapping that says what they mean; a fractional SEG would quantise them to 8 bits and call
them the probability of belonging to a segment, which the heatmap is not (it is a lesion score
whose peak encodes the grade; docs/decisions/0010-dicom-results.md). Content qualification is
RESEARCH.
"""

from __future__ import annotations

import highdicom as hd
import numpy as np
import SimpleITK as sitk
from pydicom import Dataset

from LesionAILib.dicom_out import vocabulary
from LesionAILib.dicom_out.sources import SourceSeries
from LesionAILib.inference.results import StoredResult

HEATMAP_LUT_LABEL = "LESIONAI_SCORE"  # 16 characters at most


def heatmap_parametric_map(stored: StoredResult, source: SourceSeries) -> hd.pm.ParametricMap:
    """The Parametric Map of ``stored.heatmap`` on the T2 series ``source`` (checked against the result's grid:
    frame ``k`` is ``source.datasets[k]``)."""
    values = sitk.GetArrayFromImage(stored.heatmap).astype(np.float32)  # [Z, Y, X], 0–1
    mapping = hd.pm.RealWorldValueMapping(
        lut_label=HEATMAP_LUT_LABEL,
        lut_explanation="LesionAI lesion score (localization map), 0-1",
        unit=vocabulary.NO_UNITS,
        value_range=(float(values.min()), float(values.max())),
        slope=1.0,
        intercept=0.0,
    )
    parametric_map = hd.pm.ParametricMap(
        source_images=source.datasets,
        pixel_array=values,
        series_number=vocabulary.PARAMETRIC_MAP_SERIES_NUMBER,
        **vocabulary.new_instance(),
        contains_recognizable_visual_features=False,
        real_world_value_mappings=[mapping],
        voi_lut_transformations=[hd.VOILUTTransformation(window_center=0.5, window_width=1.0)],
        content_description=vocabulary.ascii_text(f"LesionAI heatmap, {vocabulary.RESEARCH_NOTICE}", 64),
        content_label="LESIONAI_HEATMAP",
        content_qualification=hd.ContentQualificationValues.RESEARCH,
        series_description="LesionAI heatmap (research use only)",
    )
    # Frame Anatomy: the prostate, an unpaired structure (Laterality is then not needed in General Series)
    anatomy = Dataset()
    anatomy.AnatomicRegionSequence = [hd.sr.CodedConcept.from_code(vocabulary.GLAND_TYPE)]
    anatomy.FrameLaterality = "U"
    parametric_map.SharedFunctionalGroupsSequence[0].FrameAnatomySequence = [anatomy]
    return parametric_map

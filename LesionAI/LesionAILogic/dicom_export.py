"""The panel's "Export to DICOM": a result folder of a T2 volume node as DICOM SEG, Parametric Map and SR files.

The objects must reference the T2's own DICOM instances, so the T2 node must have come from DICOM:

1. loaded by Slicer's DICOM module: its ``DICOM.instanceUIDs`` are looked up in Slicer's DICOM
   database (``slicer.dicomDatabase.fileForInstance``), as :mod:`LesionAILogic.roles` does;
2. loaded by LesionAI (:meth:`LesionAILogic.loadStudy`): its ``DICOM.SeriesInstanceUID`` is found in
   the series folder its ``LesionAI.Source`` names.

A T2 from an image file is refused with one line. The export runs in this process: it reads the T2
headers and writes three objects with highdicom (pure Python, about 2 s for ProstateX-0000 on two
CPU cores), no torch.
"""

from __future__ import annotations

from pathlib import Path

from LesionAILib.dicom_out.export import WrittenObject, write_dicom_results
from LesionAILib.dicom_out.sources import SourceSeries, source_series_of_files, source_series_of_study
from LesionAILib.errors import DicomOutputError
from LesionAILib.inference.results import read_result

from .inputs import DICOM_ATTRIBUTES, SOURCE_ATTRIBUTE
from .roles import INSTANCE_UIDS_ATTRIBUTE, InstanceFile, _dicom_database_lookup


def source_series_of_node(t2, instance_file: InstanceFile | None = None) -> SourceSeries:
    """The DICOM series the T2 volume node ``t2`` was loaded from (see module docstring).

    Args:
        instance_file: SOPInstanceUID → file path; default Slicer's DICOM database.

    Raises:
        DicomOutputError: one line when the node did not come from DICOM or its files cannot be found.
    """
    uids = (t2.GetAttribute(INSTANCE_UIDS_ATTRIBUTE) or "").split()
    if uids:
        lookup = instance_file or _dicom_database_lookup()
        paths = [path for path in (lookup(uid) for uid in uids) if path and Path(path).is_file()] if lookup else []
        if not paths:
            raise DicomOutputError(
                f"the DICOM files of '{t2.GetName()}' are not in Slicer's DICOM database",
                hint="import the study into the DICOM database again",
            )
        return source_series_of_files(paths)
    series_uid = t2.GetAttribute(DICOM_ATTRIBUTES["series_uid"]) or ""
    folder = t2.GetAttribute(SOURCE_ATTRIBUTE) or ""
    if series_uid and folder and Path(folder).is_dir():
        return source_series_of_study(folder, series_uid)
    raise DicomOutputError(
        f"'{t2.GetName()}' was not loaded from DICOM; DICOM results reference the source T2 instances",
        hint="load the study from its DICOM files (DICOM module or LesionAI's study loader) and analyze it",
    )


def export_to_dicom(
    t2, result_folder: str | Path, out_folder: str | Path, instance_file: InstanceFile | None = None
) -> list[WrittenObject]:
    """Write the DICOM SEG, Parametric Map and SR of ``result_folder`` (analysed from ``t2``) into ``out_folder``.

    Args:
        t2: the T2 scalar volume node the result belongs to (loaded from DICOM).
        result_folder: the result folder the panel loaded (``lesionai analyze --out``, e.g. an analysis
            job's ``result`` folder); its gland (``gland.nii.gz``) is included when present.
        out_folder: new, empty, or an earlier export (replaced atomically).
        instance_file: SOPInstanceUID → file path; default Slicer's DICOM database.

    Returns:
        The objects written (file, modality, UIDs), for the panel's status line.

    Raises:
        DicomOutputError: one line: ``t2`` not from DICOM, the result not on ``t2``'s series, ``out_folder``
            holding other files.
    """
    return write_dicom_results(read_result(result_folder), source_series_of_node(t2, instance_file), out_folder)

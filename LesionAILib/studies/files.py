"""Image files in: one 3D file per role (NIfTI, MHA/MHD, NRRD), read with its geometry and checked to be a volume."""

from __future__ import annotations

from pathlib import Path

import SimpleITK as sitk

from LesionAILib.errors import StudyError
from LesionAILib.studies.case import MIN_SLICES, Case, SeriesSource, make_case
from LesionAILib.studies.roles import ROLE_NAMES

IMAGE_SUFFIXES = (".nii.gz", ".nii", ".mha", ".mhd", ".nrrd", ".nhdr")


def image_suffix(path: Path) -> str | None:
    """The supported image suffix ``path`` ends with (``.nii.gz``, ``.mha``, …), or ``None``."""
    name = path.name.lower()
    return next((s for s in IMAGE_SUFFIXES if name.endswith(s)), None)


def read_image_file(path: str | Path, role: str) -> sitk.Image:
    """Read one 3D image file for ``role``; a clear error for missing, unsupported or 2D files."""
    path = Path(path)
    if not path.exists():
        raise StudyError(f"{ROLE_NAMES.get(role, role)} file does not exist", path)
    if path.is_dir():
        raise StudyError(f"expected an image file for {role}, got a folder", path, "give a .nii.gz/.mha/.nrrd file")
    if image_suffix(path) is None:
        raise StudyError(
            f"not a supported image file for {role}",
            path,
            "use .nii, .nii.gz, .mha, .mhd or .nrrd (DICOM: give the study folder)",
        )
    previous = sitk.ProcessObject.GetGlobalWarningDisplay()
    sitk.ProcessObject.SetGlobalWarningDisplay(False)
    try:
        image = sitk.ReadImage(str(path))
    except RuntimeError as error:
        detail = "data file missing" if path.suffix.lower() in (".mhd", ".nhdr") else "unreadable or damaged"
        first_line = str(error).strip().splitlines()[-1][:120] if str(error).strip() else ""
        raise StudyError(f"cannot read {role} image: {detail} ({first_line})", path) from None
    finally:
        sitk.ProcessObject.SetGlobalWarningDisplay(previous)
    if image.GetNumberOfComponentsPerPixel() != 1:
        raise StudyError(
            f"{role} image has {image.GetNumberOfComponentsPerPixel()} components; need a scalar image", path
        )
    if image.GetDimension() == 4 and image.GetSize()[3] == 1:
        image = image[:, :, :, 0]
    if image.GetDimension() != 3 or image.GetSize()[2] < MIN_SLICES:
        raise StudyError(
            f"{role} image is {image.GetDimension()}D with size {image.GetSize()}; "
            f"a 3D volume with at least {MIN_SLICES} slices is needed",
            path,
        )
    return image


def open_files(
    t2w: str | Path,
    adc: str | Path,
    hbv: str | Path,
    patient_id: str | None = None,
    study_id: str = "",
    lesion_mask: str | Path | None = None,
) -> Case:
    """Open one image file per role. Geometry is taken from the files (LPS mm)."""
    paths = {"t2w": Path(t2w), "adc": Path(adc), "hbv": Path(hbv)}
    images = {role: read_image_file(path, role) for role, path in paths.items()}
    sources = {
        role: SeriesSource(role=role, reason=f"given as the {ROLE_NAMES[role]} file", paths=[str(path)])
        for role, path in paths.items()
    }
    if patient_id is None:
        name = paths["t2w"].name
        patient_id = name[: -len(image_suffix(paths["t2w"]) or "")]
    mask = read_image_file(lesion_mask, "label") if lesion_mask else None
    return make_case(images, patient_id, study_id, sources, None, mask)

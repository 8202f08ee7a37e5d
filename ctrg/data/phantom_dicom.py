"""One DICOM CT slice (CT Image Storage) of a phantom series, built with pydicom."""

from __future__ import annotations

import hashlib

import numpy as np
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import CTImageStorage, ExplicitVRLittleEndian, generate_uid

from ctrg.data.phantom_grid import Grid

RESCALE_INTERCEPT = -1024.0
RESCALE_SLOPE = 1.0


def deterministic_uid(*parts: object) -> str:
    """A valid DICOM UID (``2.25.<int>``) derived from a hash of ``parts``."""
    digest = hashlib.sha256("/".join(map(str, parts)).encode()).digest()
    return "2.25." + str(int.from_bytes(digest[:15], "big"))


STUDY_DATE = "20240101"


def slice_dataset(
    pixels: np.ndarray,
    grid: Grid,
    index: int,
    series_uid: str,
    study_uid: str,
    patient: dict[str, str],
    case_id: str,
    seed: int,
) -> Dataset:
    """The dataset of canonical slice ``index``.

    Args:
        pixels: int16 stored values ``(rows, columns)`` = (posterior, left) order, i.e. the
            canonical slice flipped on both axes.
        grid: the case grid (canonical ``(S, A, R)``, RAS+ origin).
        index: canonical slice index (inferior -> superior).
    """
    (_, ny, nx), (sz, sy, sx), (z0, y0, x0) = grid.shape, grid.spacing, grid.origin

    sop_uid = deterministic_uid("sop", seed, case_id, index)
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = CTImageStorage
    meta.MediaStorageSOPInstanceUID = sop_uid
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    meta.ImplementationClassUID = generate_uid(
        prefix="1.2.826.0.1.3680043.8.498.", entropy_srcs=["ctrg"]
    )
    ds = Dataset()
    ds.file_meta = meta
    ds.SOPClassUID = CTImageStorage
    ds.SOPInstanceUID = sop_uid
    ds.StudyInstanceUID = study_uid
    ds.SeriesInstanceUID = series_uid
    ds.FrameOfReferenceUID = deterministic_uid("frame", seed, case_id)
    ds.Modality = "CT"
    ds.Manufacturer = "ctrg phantom"
    ds.StudyDate = ds.SeriesDate = ds.ContentDate = STUDY_DATE
    ds.StudyDescription = "CT CHEST"
    ds.SeriesDescription = "phantom chest"
    ds.SeriesNumber = 1
    ds.InstanceNumber = index + 1
    for key, val in patient.items():
        setattr(ds, key, val)
    ds.PatientSex = "O"
    ds.ImageType = ["ORIGINAL", "PRIMARY", "AXIAL"]
    ds.ImagePositionPatient = [
        float(-(x0 + (nx - 1) * sx)),
        float(-(y0 + (ny - 1) * sy)),
        float(z0 + index * sz),
    ]
    ds.ImageOrientationPatient = [1.0, 0.0, 0.0, 0.0, 1.0, 0.0]
    ds.PixelSpacing = [float(sy), float(sx)]
    ds.SliceThickness = float(sz)
    ds.SpacingBetweenSlices = float(sz)
    ds.SliceLocation = float(z0 + index * sz)
    ds.KVP = 120
    ds.RescaleIntercept = RESCALE_INTERCEPT
    ds.RescaleSlope = RESCALE_SLOPE
    ds.RescaleType = "HU"
    ds.WindowCenter, ds.WindowWidth = -600, 1500
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.Rows, ds.Columns = int(pixels.shape[0]), int(pixels.shape[1])
    ds.BitsAllocated, ds.BitsStored, ds.HighBit = 16, 16, 15
    ds.PixelRepresentation = 1
    ds.PixelData = pixels.astype("<i2").tobytes()
    return ds

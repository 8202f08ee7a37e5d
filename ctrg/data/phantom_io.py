"""Write phantom volumes: byte-reproducible NIfTI (``.nii.gz``) and DICOM series.

Stored orientation (both formats) follows what scanners and dcm2niix produce: voxel axis
``i`` runs towards the patient's left, ``j`` towards posterior (DICOM rows/columns in LPS),
``k`` along the slices, superior or inferior depending on ``slice_order``. The NIfTI affine
maps these indices to RAS+ millimetres.
"""

from __future__ import annotations

import gzip
import hashlib
from pathlib import Path

import nibabel as nib
import numpy as np

from ctrg.data.phantom_dicom import (
    RESCALE_INTERCEPT,
    RESCALE_SLOPE,
    deterministic_uid,
    slice_dataset,
)
from ctrg.data.phantom_grid import Grid
from ctrg.runtime import atomic_path


def stored_affine(grid: Grid, descending: bool) -> np.ndarray:
    """RAS+ affine of the stored array ``(i, j, k)`` (LPS in-plane, slices up or down).

    Returns:
        float64 ``(4, 4)``.
    """
    (nz, ny, nx), (sz, sy, sx), (z0, y0, x0) = grid.shape, grid.spacing, grid.origin
    affine = np.eye(4)
    affine[0, 0], affine[0, 3] = -sx, x0 + (nx - 1) * sx
    affine[1, 1], affine[1, 3] = -sy, y0 + (ny - 1) * sy
    if descending:
        affine[2, 2], affine[2, 3] = -sz, z0 + (nz - 1) * sz
    else:
        affine[2, 2], affine[2, 3] = sz, z0
    return affine


def to_stored(canonical: np.ndarray, descending: bool) -> np.ndarray:
    """Canonical ``(S, A, R)`` array -> stored ``(i, j, k)`` array (see module docstring)."""
    stored = canonical[:, ::-1, ::-1].transpose(2, 1, 0)
    return np.ascontiguousarray(stored[:, :, ::-1] if descending else stored)


def nifti_bytes(array: np.ndarray, affine: np.ndarray, compresslevel: int = 1) -> bytes:
    """A ``.nii.gz`` file's bytes with a fixed gzip header (mtime 0), hence reproducible."""
    image = nib.Nifti1Image(array, affine)
    image.header.set_xyzt_units("mm", "sec")
    image.set_qform(affine, code=1)
    image.set_sform(affine, code=1)
    return gzip.compress(image.to_bytes(), compresslevel=compresslevel, mtime=0)


def write_nifti(path: Path, array: np.ndarray, affine: np.ndarray, compresslevel: int = 1) -> None:
    """Write a reproducible ``.nii.gz`` atomically."""
    data = nifti_bytes(array, affine, compresslevel)
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)


def fake_patient(case_id: str, seed: int) -> dict[str, str]:
    """Made-up identifying fields, so that de-identification can be tested."""
    rng = np.random.default_rng(
        int(hashlib.sha256(f"{seed}/{case_id}".encode()).hexdigest()[:12], 16)
    )
    family = ["Doe", "Roe", "Smith", "Miller", "Novak", "Garcia", "Yilmaz", "Kowalski"]
    given = ["Jane", "John", "Alex", "Maria", "Ali", "Eva", "Tom", "Lena"]
    year = int(rng.integers(1940, 2000))
    return {
        "PatientName": f"{family[int(rng.integers(8))]}^{given[int(rng.integers(8))]}",
        "PatientID": f"PID{int(rng.integers(10**6, 10**7))}",
        "PatientBirthDate": f"{year}{int(rng.integers(1, 13)):02d}{int(rng.integers(1, 29)):02d}",
        "AccessionNumber": f"ACC{int(rng.integers(10**7, 10**8))}",
    }


def write_dicom_series(
    folder: Path, canonical_hu: np.ndarray, grid: Grid, case_id: str, seed: int
) -> int:
    """Write one CT Image Storage file per axial slice (LPS, rescaled int16 pixels).

    Args:
        canonical_hu: int16 ``(D, H, W)`` HU in canonical ``(S, A, R)`` order.

    Returns:
        the number of files written.
    """
    folder.mkdir(parents=True, exist_ok=True)
    series_uid = deterministic_uid("series", seed, case_id)
    study_uid = deterministic_uid("study", seed, case_id)
    patient = fake_patient(case_id, seed)
    stored = np.round((canonical_hu.astype(np.float32) - RESCALE_INTERCEPT) / RESCALE_SLOPE)
    stored = stored.astype(np.int16)
    for d in range(grid.shape[0]):
        pixels = np.ascontiguousarray(stored[d, ::-1, ::-1])  # rows posterior, columns left
        ds = slice_dataset(pixels, grid, d, series_uid, study_uid, patient, case_id, seed)
        with atomic_path(folder / f"slice_{d:04d}.dcm") as tmp:
            ds.save_as(tmp, enforce_file_format=True)
    return grid.shape[0]

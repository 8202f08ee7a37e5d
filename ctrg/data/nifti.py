"""NIfTI reading into the native ``(K, J, I)`` layout, and the types every reader returns."""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import nibabel as nib
import numpy as np

log = logging.getLogger(__name__)

NIFTI_SUFFIXES = (".nii", ".nii.gz")


class VolumeError(ValueError):
    """A case that cannot be used; the message is the ``reason`` written to ``rejected.csv``."""


@dataclass
class RawVolume:
    """A volume as stored, before any resampling.

    Attributes:
        data: ``(K, J, I)`` array of stored values (the affine's voxel axes reversed).
        affine: 4x4 voxel ``(i, j, k)`` -> RAS mm.
        slope: stored-value -> HU slope (from the file header; 1 if none).
        inter: stored-value -> HU intercept (from the file header; 0 if none).
        source: the file or folder read.
        files: the files whose bytes make up the volume (hashed for provenance).
        warnings: non-fatal problems found while reading.
        meta: non-identifying facts about the source (format, slice count, series rule...).
    """

    data: np.ndarray
    affine: np.ndarray
    slope: float = 1.0
    inter: float = 0.0
    source: str = ""
    files: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    meta: dict[str, Any] = field(default_factory=dict)


def is_nifti(path: str | os.PathLike) -> bool:
    """Whether the file name looks like NIfTI (``.nii`` or ``.nii.gz``)."""
    return str(path).lower().endswith(NIFTI_SUFFIXES)


def read_nifti(path: str | os.PathLike) -> RawVolume:
    """Read a 3D NIfTI volume without applying its scaling (applied later, after resampling).

    Args:
        path: a ``.nii`` / ``.nii.gz`` file.

    Returns:
        RawVolume with ``data`` ``(K, J, I)`` in the stored dtype (C-contiguous for the usual
        Fortran-ordered NIfTI payload, so no copy is made).

    Raises:
        VolumeError: unreadable path, not an image, not 3D, truncated or corrupt data.
    """
    path = Path(path)
    if not path.is_file():
        raise VolumeError(f"unreadable path: {path} is not a readable file")
    try:
        img = nib.load(str(path))
    except Exception as err:  # nibabel raises several types for non-images
        raise VolumeError(f"not a readable NIfTI image ({type(err).__name__}: {err})") from err
    shape = tuple(int(s) for s in img.shape)
    if len(shape) > 3 and int(np.prod(shape[3:])) == 1:
        shape = shape[:3]
    if len(shape) != 3:
        raise VolumeError(f"expected a 3D volume, got shape {shape} ({len(shape)}D)")
    if sum(s > 1 for s in shape) < 3:
        raise VolumeError(f"2D image: shape {shape} has fewer than 3 axes longer than 1")
    try:
        raw = np.asanyarray(img.dataobj.get_unscaled())
    except Exception as err:  # truncated gzip: EOFError, zlib.error, OSError ...
        raise VolumeError(
            f"cannot read voxel data, truncated or corrupt ({type(err).__name__}: {err})"
        ) from err
    if raw.dtype.kind not in "iuf" or raw.size != int(np.prod(shape)):
        raise VolumeError(f"not a scalar image: dtype {raw.dtype}, shape {raw.shape}")
    raw = raw.reshape(shape, order="A")
    slope = float(getattr(img.dataobj, "slope", 1.0))
    inter = float(getattr(img.dataobj, "inter", 0.0))
    affine = np.asarray(img.affine, dtype=float)
    if not np.all(np.isfinite(affine)) or abs(np.linalg.det(affine[:3, :3])) < 1e-12:
        raise VolumeError(f"invalid affine in header: {affine.tolist()}")
    return RawVolume(
        data=raw.T,
        affine=affine,
        slope=slope if np.isfinite(slope) and slope != 0 else 1.0,
        inter=inter if np.isfinite(inter) else 0.0,
        source=str(path),
        files=[str(path)],
        meta={"format": "nifti"},
    )


def read_label_map(
    path: str | os.PathLike, shape: tuple[int, ...], affine: np.ndarray, kind: str
) -> np.ndarray:
    """Read a label map that must share the image's grid.

    Args:
        path: NIfTI label map.
        shape: the image's native ``(K, J, I)`` shape.
        affine: the image's header affine.
        kind: what it is (``structure_map``, ``finding_map``), for messages.

    Returns:
        ``(K, J, I)`` uint8 array in the image's native layout.

    Raises:
        VolumeError: unreadable, wrong grid, or labels outside 0..255.
    """
    try:
        labels = read_nifti(path)
    except VolumeError as err:
        raise VolumeError(f"{kind} {path}: {err}") from err
    if labels.data.shape != tuple(shape) or not np.allclose(labels.affine, affine, atol=1e-3):
        raise VolumeError(
            f"{kind} {path}: grid differs from the image (shape {labels.data.shape[::-1]} vs "
            f"{tuple(shape)[::-1]}, or affine)"
        )
    values = labels.data
    if labels.slope != 1.0 or labels.inter != 0.0:
        values = values * labels.slope + labels.inter
    if values.min() < 0 or values.max() > 255:
        raise VolumeError(f"{kind} {path}: labels outside 0..255")
    return np.asarray(values, dtype=np.uint8)

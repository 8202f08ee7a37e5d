"""DICOM series reading with pydicom: choose the CT series, order slices, derive the affine.

Slices are ordered by their position along the slice normal (``ImagePositionPatient`` dotted
with ``row x column`` direction cosines), never by file name or ``InstanceNumber``. Missing
slices and uneven spacing are detected from those positions. Patient-identifying header
fields (name, ID, birth date, accession number...) are never read into outputs or logs: a
series is named by its ``SeriesNumber`` and slice count, and :func:`pseudonym` gives a
stable id derived from (hashed) UIDs.
"""

from __future__ import annotations

import hashlib
import logging
import os
import re
from collections import defaultdict
from pathlib import Path

import numpy as np
import pydicom

from ctrg.data.nifti import RawVolume, VolumeError

log = logging.getLogger(__name__)

_HEADER_TAGS = [
    "SeriesInstanceUID", "StudyInstanceUID", "Modality", "SeriesNumber", "SeriesDescription",
    "ImagePositionPatient", "ImageOrientationPatient", "PixelSpacing", "Rows", "Columns",
    "InstanceNumber",
]  # fmt: skip


def pseudonym(*uids: str, prefix: str = "dcm") -> str:
    """A stable pseudonymous id from identifying strings (never stored themselves)."""
    digest = hashlib.sha256("|".join(uids).encode()).hexdigest()
    return f"{prefix}_{digest[:12]}"


def _scan(folder: Path) -> tuple[dict[str, list[tuple[str, pydicom.Dataset]]], int]:
    """Group the folder's DICOM image files by SeriesInstanceUID (headers only)."""
    files = sorted(p for p in folder.rglob("*") if p.is_file()) if folder.is_dir() else [folder]
    series: dict[str, list[tuple[str, pydicom.Dataset]]] = defaultdict(list)
    skipped = 0
    for path in files:
        if path.name.upper() == "DICOMDIR":
            continue
        try:
            ds = pydicom.dcmread(path, stop_before_pixels=True, specific_tags=_HEADER_TAGS)
        except Exception:  # not DICOM (README, thumbnails...)
            skipped += 1
            continue
        if "Rows" not in ds or "SeriesInstanceUID" not in ds:
            skipped += 1
            continue
        series[str(ds.SeriesInstanceUID)].append((str(path), ds))
    return series, skipped


def _choose_series(series: dict, rule: str, description: str | None, multiple: str):
    """Pick one CT series; returns (files+headers, warnings)."""
    ct = {uid: items for uid, items in series.items() if items[0][1].get("Modality") == "CT"}
    if not ct:
        found = sorted({str(items[0][1].get("Modality", "?")) for items in series.values()})
        raise VolumeError(f"no CT series (modalities found: {', '.join(found)})")
    if len(ct) == 1:
        return next(iter(ct.values())), []
    names = ", ".join(
        f"series {items[0][1].get('SeriesNumber', '?')} ({len(items)} files)"
        for items in ct.values()
    )
    if multiple == "reject":
        raise VolumeError(
            f"folder holds {len(ct)} CT series: {names} (dicom_multiple_series=reject)"
        )
    if rule == "description":
        pattern = re.compile(description or "", re.IGNORECASE)
        hits = [i for i in ct.values() if pattern.search(str(i[0][1].get("SeriesDescription", "")))]
        if len(hits) != 1:
            raise VolumeError(
                f"{len(hits)} of {len(ct)} CT series match the description rule: {names}"
            )
        chosen = hits[0]
    else:  # most_slices
        counts = sorted((len(items) for items in ct.values()), reverse=True)
        if counts[0] == counts[1]:
            raise VolumeError(f"folder holds {len(ct)} CT series, most_slices is a tie: {names}")
        chosen = max(ct.values(), key=len)
    picked = f"series {chosen[0][1].get('SeriesNumber', '?')}"
    return chosen, [f"folder holds {len(ct)} CT series ({names}); picked {picked} by rule {rule}"]


def _order_slices(items, gap_tolerance: float):
    """Sort slices along the normal; returns (items, positions, normal, spacing, warnings)."""
    orientations = np.array([[float(v) for v in ds.ImageOrientationPatient] for _, ds in items])
    if not np.allclose(orientations, orientations[0], atol=1e-4):
        raise VolumeError("slices have different ImageOrientationPatient")
    row_dir, col_dir = orientations[0][:3], orientations[0][3:]
    normal = np.cross(row_dir, col_dir)
    positions = np.array(
        [np.dot(normal, [float(v) for v in ds.ImagePositionPatient]) for _, ds in items]
    )
    order = np.argsort(positions, kind="stable")
    items, positions = [items[i] for i in order], positions[order]
    warnings = []
    keep = np.concatenate([[True], np.diff(positions) > 1e-3])
    if not keep.all():
        warnings.append(f"dropped {int((~keep).sum())} duplicated slice position(s)")
        items, positions = [it for it, k in zip(items, keep) if k], positions[keep]
    if len(items) < 2:
        raise VolumeError(f"2D image: the series has {len(items)} slice position(s)")
    gaps = np.diff(positions)
    step = float(np.median(gaps))
    worst = float(np.max(np.abs(gaps - step)) / step)
    if worst > gap_tolerance:
        where = int(np.argmax(np.abs(gaps - step)))
        kind = "missing slice(s)" if gaps[where] > step * 1.5 else "uneven slice spacing"
        raise VolumeError(
            f"{kind}: gap of {gaps[where]:.3f} mm after slice {where} of {len(items)}, "
            f"expected {step:.3f} mm (tolerance {gap_tolerance:.0%})"
        )
    if worst > 1e-3:
        warnings.append(f"uneven slice spacing: gaps {gaps.min():.4f}..{gaps.max():.4f} mm")
        step = float(gaps.mean())
    return items, normal, row_dir, col_dir, step, warnings


def _affine(first: pydicom.Dataset, row_dir, col_dir, normal, step: float) -> np.ndarray:
    """Voxel (i=column, j=row, k=slice) -> RAS mm (DICOM is LPS: negate x and y)."""
    row_spacing, col_spacing = (float(v) for v in first.PixelSpacing)
    lps = np.eye(4)
    lps[:3, 0] = np.asarray(row_dir) * col_spacing  # along a row: column index i
    lps[:3, 1] = np.asarray(col_dir) * row_spacing  # down a column: row index j
    lps[:3, 2] = np.asarray(normal) * step
    lps[:3, 3] = [float(v) for v in first.ImagePositionPatient]
    return np.diag([-1.0, -1.0, 1.0, 1.0]) @ lps


def _read_pixels(items) -> tuple[np.ndarray, float, float, list[str]]:
    """Stack pixel data into ``(K, J, I)``; one slope/intercept if all slices share it."""
    first = pydicom.dcmread(items[0][0])
    arrays, rescale = [], []
    for k, (path, _) in enumerate(items):
        ds = first if k == 0 else pydicom.dcmread(path)
        try:
            pixels = ds.pixel_array
        except Exception as err:
            raise VolumeError(
                f"cannot decode pixel data of {path} ({type(err).__name__}: {err})"
            ) from err
        if pixels.ndim != 2 or (arrays and pixels.shape != arrays[0].shape):
            raise VolumeError(
                f"slice {path} has pixel shape {pixels.shape}, not a consistent 2D slice"
            )
        arrays.append(pixels)
        rescale.append(
            (float(ds.get("RescaleSlope", 1) or 1), float(ds.get("RescaleIntercept", 0) or 0))
        )
    if len(set(rescale)) == 1:
        dtype = np.result_type(*[a.dtype for a in arrays])
        data = np.empty((len(arrays), *arrays[0].shape), dtype=dtype)
        for k, pixels in enumerate(arrays):
            data[k] = pixels
        return data, rescale[0][0], rescale[0][1], []
    data = np.empty((len(arrays), *arrays[0].shape), dtype=np.float32)
    for k, (pixels, (slope, inter)) in enumerate(zip(arrays, rescale)):
        data[k] = pixels * np.float32(slope) + np.float32(inter)
    return data, 1.0, 0.0, ["per-slice RescaleSlope/Intercept differ: applied slice by slice"]


def read_dicom_series(
    path: str | os.PathLike,
    rule: str = "most_slices",
    description: str | None = None,
    multiple: str = "pick",
    gap_tolerance: float = 0.1,
) -> RawVolume:
    """Read one CT series from a folder of DICOM files (or a single DICOM file).

    Args:
        path: folder (searched recursively) or one file.
        rule: ``most_slices`` or ``description`` (regex ``description`` on SeriesDescription).
        multiple: ``pick`` (choose by ``rule`` and warn) or ``reject`` when several CT series.
        gap_tolerance: largest relative deviation of a slice gap from the median gap.

    Returns:
        RawVolume: ``data`` ``(slices, rows, columns)`` stored values; ``slope``/``inter``
        from the header; ``meta["pseudonym"]`` a stable id from the hashed UIDs.

    Raises:
        VolumeError: unreadable path, no CT series, ambiguous series, 2D, missing slices.
    """
    path = Path(path)
    if not path.exists() or not os.access(path, os.R_OK):
        raise VolumeError(f"unreadable path: {path} does not exist or is not readable")
    series, skipped = _scan(path)
    if not series:
        raise VolumeError(f"no DICOM image files found ({skipped} other files)")
    items, warnings = _choose_series(series, rule, description, multiple)
    items, normal, row_dir, col_dir, step, order_warnings = _order_slices(items, gap_tolerance)
    data, slope, inter, pixel_warnings = _read_pixels(items)
    first = items[0][1]
    if skipped:
        warnings.append(f"ignored {skipped} non-image file(s)")
    uid = pseudonym(str(first.get("StudyInstanceUID", "")), str(first.SeriesInstanceUID))
    return RawVolume(
        data=data,
        affine=_affine(first, row_dir, col_dir, normal, step),
        slope=slope,
        inter=inter,
        source=str(path),
        files=[p for p, _ in items],
        warnings=warnings + order_warnings + pixel_warnings,
        meta={"format": "dicom", "slices": len(items), "pseudonym": uid},
    )


def write_dicom_series(
    hu: np.ndarray,
    folder: str | os.PathLike,
    spacing: tuple[float, float, float] = (2.5, 0.7, 0.7),
    origin: tuple[float, float, float] = (0.0, 0.0, 0.0),
    orientation: tuple[float, ...] = (1, 0, 0, 0, 1, 0),
    header: dict[str, str] | None = None,
    file_order: list[int] | None = None,
    series_number: int = 1,
) -> list[Path]:
    """Write an HU volume as a CT series (stored = HU + 1024, RescaleIntercept -1024).

    Args:
        hu: ``(slices, rows, columns)`` HU values.
        spacing: (slice step along the normal, row spacing, column spacing) in mm.
        origin: LPS position of the first slice's first pixel.
        orientation: ImageOrientationPatient (row direction, column direction cosines).
        header: extra header fields, e.g. ``{"PatientName": ...}`` (used by tests for PHI).
        file_order: permutation giving which slice goes into file 0, 1, ...; the file names
            therefore do not follow slice order.

    Returns:
        The written file paths (in file order).
    """
    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.uid import CTImageStorage, ExplicitVRLittleEndian, generate_uid

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    study, series = generate_uid(), generate_uid()
    normal = np.cross(orientation[:3], orientation[3:])
    order = list(range(len(hu))) if file_order is None else list(file_order)
    paths = []
    for file_index, k in enumerate(order):
        meta = FileMetaDataset()
        meta.MediaStorageSOPClassUID = CTImageStorage
        meta.MediaStorageSOPInstanceUID = generate_uid()
        meta.TransferSyntaxUID = ExplicitVRLittleEndian
        ds = Dataset()
        ds.file_meta = meta
        ds.SOPClassUID, ds.SOPInstanceUID = CTImageStorage, meta.MediaStorageSOPInstanceUID
        ds.StudyInstanceUID, ds.SeriesInstanceUID = study, series
        ds.Modality, ds.SeriesNumber, ds.InstanceNumber = "CT", series_number, k + 1
        ds.ImageOrientationPatient = [float(v) for v in orientation]
        ds.ImagePositionPatient = [float(v) for v in np.asarray(origin) + k * spacing[0] * normal]
        ds.PixelSpacing = [float(spacing[1]), float(spacing[2])]
        ds.SliceThickness = float(spacing[0])
        ds.Rows, ds.Columns = hu.shape[1], hu.shape[2]
        ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
        ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 16, 15, 1
        ds.RescaleSlope, ds.RescaleIntercept = 1, -1024
        for key, value in (header or {}).items():
            setattr(ds, key, value)
        ds.PixelData = (np.asarray(hu[k]) + 1024).astype("<i2").tobytes()
        path = folder / f"IM{file_index:04d}.dcm"
        ds.save_as(path, enforce_file_format=True)
        paths.append(path)
    return paths

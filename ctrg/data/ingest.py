"""``ctrg ingest``: NIfTI files / DICOM folders -> model-ready ``.npy`` volumes (one shard).

Per case ``<case_id>.npy`` float16 ``(D, H, W)`` in the (S, A, R) canonical orientation (see
:mod:`ctrg.data.resample`), values ``clip(HU, lo, hi)`` scaled to ``[-1, 1]``, centre
cropped/padded (pad = -1); label maps (manifest columns ``structure_map`` / ``finding_map``)
as ``<case_id>_structures.npy`` / ``<case_id>_findings.npy`` uint8 on the same grid. The shard
folder gets ``manifest.csv`` (accepted cases), ``rejected.csv`` (case_id, file, reason),
``resolved_config.json`` and ``summary.json``. A bad case is logged and rejected, never fatal.
"""

from __future__ import annotations

import argparse
import hashlib
import logging
import re
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from tqdm import tqdm

from ctrg.config import load_schema, load_stage_config, validate
from ctrg.data.dicom import read_dicom_series
from ctrg.data.nifti import RawVolume, VolumeError, is_nifti, read_label_map, read_nifti
from ctrg.data.resample import (
    crop_or_pad,
    output_affine,
    plan_resample,
    resample_labels,
    resample_stored,
    window_bounds,
)
from ctrg.runtime import (
    atomic_path,
    atomic_write_csv,
    setup_logging,
    sha256_file,
    write_stage_summary,
)

log = logging.getLogger(__name__)

LABEL_COLUMNS = {
    "structure_map": ("structures", "structure_path"),
    "finding_map": ("findings", "finding_path"),
}
MANIFEST_COLUMNS = [
    "case_id", "split", "path", "structure_path", "finding_path", "orig_spacing", "orig_shape",
    "spacing", "shape", "hu_min", "hu_max", "hu_mean", "source_sha256", "warnings", "hu_rule",
    "affine", "source",
]  # fmt: skip
REJECTED_COLUMNS = ["case_id", "file", "reason"]
_SAFE_ID = re.compile(r"^[A-Za-z0-9_.-]+$")


def shard_of(case_id: str, num_shards: int) -> int:
    """Deterministic shard of a case: SHA-256 of its id modulo the shard count."""
    return int(hashlib.sha256(case_id.encode()).hexdigest()[:15], 16) % num_shards


def resolve_section(section: dict[str, Any]) -> dict[str, Any]:
    """A copy of a (partial) ``preprocess`` section, validated, with defaults filled in."""
    return validate(dict(section), load_schema("preprocess"), "preprocess")


def read_volume(path: str | Path, section: dict[str, Any]) -> RawVolume:
    """Read a NIfTI file or a DICOM folder/file (chosen by the path), as stored."""
    path = Path(path)
    if is_nifti(path):
        return read_nifti(path)
    if path.is_dir() or path.suffix.lower() in (".dcm", ".dicom", ""):
        return read_dicom_series(
            path,
            rule=section["dicom_series_rule"],
            description=section["dicom_series_description"],
            multiple=section["dicom_multiple_series"],
            gap_tolerance=section["slice_gap_tolerance"],
        )
    if not path.exists():
        raise VolumeError(f"unreadable path: {path} does not exist")
    raise VolumeError(f"not an image: {path.name} is neither NIfTI (.nii/.nii.gz) nor DICOM")


def _manifest_rescale(row: dict[str, str]) -> tuple[float, float] | None:
    slope, inter = row.get("rescale_slope", ""), row.get("rescale_intercept", "")
    if str(slope).strip() == "" and str(inter).strip() == "":
        return None
    try:
        return float(slope or 1.0), float(inter or 0.0)
    except ValueError as err:
        raise VolumeError(f"bad rescale_slope/rescale_intercept {slope!r}/{inter!r}") from err


def decide_rescale(
    volume: RawVolume, stored_min: float, row: dict[str, str], section: dict[str, Any]
) -> tuple[float, float, str]:
    """Decide the stored-value -> HU mapping, never shifting twice.

    The header mapping (NIfTI scl_slope/scl_inter, DICOM RescaleSlope/Intercept) is always
    applied. A manifest's ``rescale_slope``/``rescale_intercept`` (CT-RATE metadata) is
    applied on top only when the values do not already look like HU: with
    ``hu_detection=auto`` a minimum below ``hu_threshold`` (air is about -1000 HU) means HU.

    Returns:
        ``(slope, intercept, rule)``: HU = stored * slope + intercept, and which rule fired.
    """
    slope, inter = volume.slope, volume.inter
    low = stored_min * slope + inter  # CT slopes are positive
    threshold, mode = section["hu_threshold"], section["hu_detection"]
    extra = _manifest_rescale(row)
    header = f"header slope {slope:g} intercept {inter:g}"
    if extra is None:
        if low >= threshold:
            volume.warnings.append(
                f"minimum {low:g} >= {threshold:g}: values may not be HU and no rescale is given"
            )
        return slope, inter, f"{header}; no manifest rescale"
    ms, mi = extra
    if mode == "hu" or (mode == "auto" and low < threshold):
        why = "hu_detection=hu" if mode == "hu" else f"already HU: min {low:g} < {threshold:g}"
        return slope, inter, f"{header}; {why}, manifest slope {ms:g} intercept {mi:g} not applied"
    why = (
        "hu_detection=rescale"
        if mode == "rescale"
        else f"stored values: min {low:g} >= {threshold:g}"
    )
    rule = f"{header}; {why}, applied manifest slope {ms:g} intercept {mi:g}"
    return slope * ms, inter * ms + mi, rule


def apply_manifest_spacing(volume: RawVolume, row: dict[str, str]) -> None:
    """Use a manifest's ``xy_spacing``/``z_spacing`` (CT-RATE metadata) for voxel axes (i, j)/k.

    The affine's direction cosines and origin are kept; a header spacing that differs by more
    than 1 % is recorded as a warning.
    """
    wanted = {
        0: row.get("xy_spacing", ""),
        1: row.get("xy_spacing", ""),
        2: row.get("z_spacing", ""),
    }
    for axis, value in wanted.items():
        if str(value).strip() == "":
            continue
        try:
            spacing = float(value)
        except ValueError as err:
            raise VolumeError(f"bad spacing {value!r} in the manifest") from err
        if not spacing > 0:
            raise VolumeError(f"bad spacing {value!r} in the manifest")
        column = volume.affine[:3, axis]
        header = float(np.linalg.norm(column))
        if abs(header - spacing) > 0.01 * spacing:
            volume.warnings.append(
                f"header spacing {header:g} mm of voxel axis {'ijk'[axis]} replaced by manifest {spacing:g} mm"
            )
        volume.affine[:3, axis] = column / header * spacing


def _fmt(values) -> str:
    return " ".join(f"{float(v):.6g}" for v in values)


def preprocess_volume(
    volume: RawVolume, section: dict[str, Any], row: dict[str, str] | None = None
) -> tuple[np.ndarray, dict[str, Any]]:
    """Reorient, resample, window, normalise and crop/pad one volume.

    Args:
        volume: as read; ``volume.data`` ``(K, J, I)`` stored values.
        section: the resolved ``preprocess`` config section.
        row: the manifest row (optional ``rescale_slope``/``rescale_intercept`` columns).

    Returns:
        ``(D, H, W)`` float16 array in [-1, 1] and an info dict (plan, spacings, shapes, HU
        min/max of the source volume and mean of the resampled one, rescale rule, warnings,
        output affine).
    """
    raw = torch.from_numpy(volume.data)  # (K, J, I), shares memory
    if raw.dtype.is_floating_point and bool(torch.isnan(raw).any()):
        raise VolumeError(f"volume contains {int(torch.isnan(raw).sum())} NaN voxel(s)")
    stored_min, stored_max = (float(v) for v in torch.aminmax(raw))
    if not np.isfinite(stored_min) or not np.isfinite(stored_max):
        raise VolumeError("volume contains infinite values")
    if stored_min == stored_max:
        raise VolumeError(
            f"constant volume: every voxel is {stored_min * volume.slope + volume.inter:g}"
        )
    del raw
    slope, inter, rule = decide_rescale(volume, stored_min, row or {}, section)
    scale, offset = window_bounds(*section["hu_window"], slope=slope, inter=inter)
    plan = plan_resample(volume.affine, volume.data.shape, section["spacing"], section["shape"])
    resampled = resample_stored(volume.data, plan, scale)
    # mean HU of the resampled volume (before the window): scaled = (HU - inter) * slope'/slope
    resampled_mean = float(resampled.mean()) / scale * slope + inter
    resampled.add_(offset).clamp_(-1.0, 1.0)  # the window: [lo, hi] HU -> [-1, 1]
    array = crop_or_pad(resampled, plan, fill=-1.0, dtype=np.float16)
    info = {
        "plan": plan,
        "orig_spacing": plan.spacing,
        "orig_shape": plan.shape,
        "spacing": plan.resampled_spacing,
        "shape": plan.out_shape,
        "hu_min": stored_min * slope + inter,
        "hu_max": stored_max * slope + inter,
        "hu_mean": resampled_mean,
        "hu_rule": rule,
        "affine": output_affine(volume.affine, plan),
        "warnings": list(volume.warnings),
    }
    return array, info


def load_and_preprocess(
    path: str | Path, preprocess_section: dict[str, Any]
) -> tuple[np.ndarray, dict]:
    """Inference entry point: one NIfTI file or DICOM folder -> model input.

    Args:
        path: NIfTI file or DICOM folder/file.
        preprocess_section: the ``preprocess`` config section (defaults are filled in).

    Returns:
        ``(D, H, W)`` float32 C-contiguous array in [-1, 1] and an info dict with
        ``case_id`` (DICOM: a pseudonym from hashed UIDs; NIfTI: the file stem), spacings,
        shapes, HU statistics, ``hu_rule``, ``warnings`` and the output ``affine``.

    Raises:
        VolumeError: the input cannot be used (the message says why).
    """
    section = resolve_section(preprocess_section)
    volume = read_volume(path, section)
    array, info = preprocess_volume(volume, section)
    info.pop("plan")
    name = Path(path).name
    info["case_id"] = volume.meta.get("pseudonym") or re.sub(r"\.nii(\.gz)?$", "", name)
    return np.ascontiguousarray(array, dtype=np.float32), info


def _source_hash(volume: RawVolume) -> str:
    if len(volume.files) == 1:
        return sha256_file(volume.files[0])
    digest = hashlib.sha256()
    for name in volume.files:  # slice order
        digest.update(sha256_file(name).encode())
    return digest.hexdigest()


def _resolve(path: str, base: Path) -> Path:
    candidate = Path(path).expanduser()
    return candidate if candidate.is_absolute() else base / candidate


def process_case(row: dict[str, str], base: Path, section: dict, out: Path) -> dict[str, Any]:
    """Ingest one manifest row; returns its output-manifest row (raises VolumeError)."""
    case_id = row["case_id"]
    volume = read_volume(_resolve(row["image"], base), section)
    header_affine = volume.affine.copy()
    apply_manifest_spacing(volume, row)
    array, info = preprocess_volume(volume, section, row)
    with atomic_path(out / f"{case_id}.npy") as tmp:
        np.save(tmp, array)
    result = {"case_id": case_id, "split": row.get("split", ""), "path": f"{case_id}.npy"}
    for column, (suffix, out_column) in LABEL_COLUMNS.items():
        result[out_column] = ""
        if row.get(column, ""):
            labels = read_label_map(
                _resolve(row[column], base), volume.data.shape, header_affine, column
            )
            resampled = resample_labels(labels, info["plan"])
            with atomic_path(out / f"{case_id}_{suffix}.npy") as tmp:
                np.save(tmp, crop_or_pad(resampled, info["plan"], fill=0, dtype=np.uint8))
            result[out_column] = f"{case_id}_{suffix}.npy"
    result.update(
        orig_spacing=_fmt(info["orig_spacing"]), orig_shape=_fmt(info["orig_shape"]),
        spacing=_fmt(info["spacing"]), shape=_fmt(info["shape"]), hu_min=info["hu_min"],
        hu_max=info["hu_max"], hu_mean=round(info["hu_mean"], 3),
        source_sha256=_source_hash(volume), warnings="; ".join(info["warnings"]),
        hu_rule=info["hu_rule"], affine=_fmt(info["affine"].ravel()), source=row["image"],
    )  # fmt: skip
    for warning in info["warnings"]:
        log.warning("%s: %s", case_id, warning)
    log.info("%s: %s", case_id, info["hu_rule"])
    return result


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="ctrg ingest", description=__doc__.splitlines()[0])
    parser.add_argument(
        "manifest", help="CSV: case_id, image[, report, split, structure_map, finding_map]"
    )
    parser.add_argument("--out", required=True, help="output folder (the shard)")
    parser.add_argument(
        "--config", default=None, help="resolved preprocess.json (default: schema defaults)"
    )
    parser.add_argument(
        "--shard", default=None, help="shard index (e.g. 000); without it: all cases"
    )
    parser.add_argument("--num-shards", type=int, default=1)
    parser.add_argument("--threads", type=int, default=1, help="torch threads")
    parser.add_argument("--spacing", type=float, nargs=3, metavar=("Z", "Y", "X"))
    parser.add_argument("--shape", type=int, nargs=3, metavar=("D", "H", "W"))
    parser.add_argument("--hu-window", type=float, nargs=2, metavar=("LO", "HI"))
    parser.add_argument("--log-level", default="INFO")
    return parser.parse_args(argv)


def _load_manifest(path: Path) -> pd.DataFrame:
    frame = pd.read_csv(path, dtype=str, keep_default_na=False)
    missing = {"case_id", "image"} - set(frame.columns)
    if missing:
        raise ValueError(f"{path}: manifest lacks column(s) {sorted(missing)}")
    return frame


def _run_cases(frame: pd.DataFrame, base: Path, section: dict, out: Path):
    accepted, rejected, seen = [], [], set()
    for row in tqdm(frame.to_dict("records"), desc="ingest", unit="vol", mininterval=5):
        case_id, image = row["case_id"], row["image"]
        try:
            if not _SAFE_ID.match(case_id):
                raise VolumeError(
                    f"case_id {case_id!r} is empty or has characters other than A-Za-z0-9_.-"
                )
            if case_id in seen:
                raise VolumeError(f"duplicate case_id {case_id!r}")
            seen.add(case_id)
            accepted.append(process_case(row, base, section, out))
        except Exception as err:  # one bad case never stops the shard
            reason = (
                str(err)
                if isinstance(err, VolumeError)
                else f"unexpected {type(err).__name__}: {err}"
            )
            log.warning("rejected %s (%s): %s", case_id, image, reason)
            rejected.append({"case_id": case_id, "file": image, "reason": reason})
    return accepted, rejected


def main(argv: list[str]) -> int:
    """Run one ingestion shard."""
    args = parse_args(argv)
    setup_logging(args.log_level)
    if args.config is None:  # schema defaults (this section only)
        payload = {"seed": 0, "section": "preprocess", "preprocess": resolve_section({})}
    else:
        payload = load_stage_config(args.config, "preprocess")
    section = payload["preprocess"]
    for key in ("spacing", "shape", "hu_window"):
        if getattr(args, key) is not None:
            section[key] = list(getattr(args, key))
    validate(section, load_schema("preprocess"), "preprocess")
    torch.set_num_threads(max(1, args.threads))
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    manifest = Path(args.manifest)
    frame = _load_manifest(manifest)
    if args.shard is not None:
        shard = int(args.shard)
        if not 0 <= shard < args.num_shards:
            raise ValueError(f"--shard {args.shard} outside 0..{args.num_shards - 1}")
        frame = frame[[shard_of(c, args.num_shards) == shard for c in frame["case_id"]]]
    log.info("ingesting %d case(s) from %s into %s", len(frame), manifest, out)
    start = time.perf_counter()
    accepted, rejected = _run_cases(frame, manifest.parent, section, out)
    seconds = time.perf_counter() - start
    atomic_write_csv(out / "manifest.csv", pd.DataFrame(accepted, columns=MANIFEST_COLUMNS))
    atomic_write_csv(out / "rejected.csv", pd.DataFrame(rejected, columns=REJECTED_COLUMNS))
    write_stage_summary(out, "ingest", payload, {
        "manifest": str(manifest), "shard": args.shard, "num_shards": args.num_shards,
        "threads": args.threads, "cases": len(frame), "accepted": len(accepted),
        "rejected": len(rejected), "seconds": round(seconds, 3),
        "seconds_per_case": round(seconds / max(len(frame), 1), 4),
    })  # fmt: skip
    log.info("accepted %d, rejected %d in %.1f s", len(accepted), len(rejected), seconds)
    return 0

"""``ctrg make-manifest``: turn a public data set's own layout into the generic manifest.

The generic manifest has columns ``case_id, image, report, split`` (image paths relative to
the manifest's folder), plus for CT-RATE ``rescale_slope, rescale_intercept, xy_spacing,
z_spacing`` from its metadata CSV (ingestion applies the rescale only to volumes that are not
already HU, and the spacing where the header disagrees).

Layouts:

* **CT-RATE** (``data.source: ctrate``): ``<root>/<split>/.../<name>.nii.gz`` with names like
  ``train_123_a_1`` (patient 123, scan a, reconstruction 1); a reports CSV (``VolumeName``,
  ``Findings_EN``, ``Impressions_EN``) and a metadata CSV (``VolumeName``, ``RescaleSlope``,
  ``RescaleIntercept``, ``XYSpacing``, ``ZSpacing``). Optionally one reconstruction per scan
  (the lowest reconstruction number).
* **CTRG-Chest-548K** (``data.source: ctrg_chest``): ``<root>/annotation.json`` holding
  ``{"train": [...], "val": [...], "test": [...]}`` lists of entries with an ``id``, the
  English ``report`` (``finding``/``findings`` also accepted) and optionally ``image_path``;
  volumes ``<root>/<images>/patient_{id}.nii.gz`` by default.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import re
from pathlib import Path
from typing import Any

import pandas as pd

from ctrg.config import load_stage_config
from ctrg.runtime import atomic_write_csv, setup_logging

log = logging.getLogger(__name__)

CTRATE_NAME = re.compile(r"^(?P<split>[a-z]+)_(?P<patient>\d+)_(?P<scan>[a-z]+)_(?P<recon>\d+)$")
MANIFEST_COLUMNS = ["case_id", "image", "report", "split"]


def _under(root: Path, path: str | None, default: str) -> Path:
    candidate = Path(path or default).expanduser()
    return candidate if candidate.is_absolute() else root / candidate


def _relative(path: Path, out_dir: Path) -> str:
    return Path(os.path.relpath(path.resolve(), out_dir.resolve())).as_posix()


def _volume_name(name: str) -> str:
    return re.sub(r"\.nii(\.gz)?$", "", Path(str(name)).name)


def _parse_xy(value: Any) -> str:
    """CT-RATE ``XYSpacing`` is written like ``[0.75, 0.75]``; keep the first (square pixels)."""
    numbers = re.findall(r"[-+]?\d*\.?\d+(?:[eE][-+]?\d+)?", str(value))
    return numbers[0] if numbers else ""


def ctrate_manifest(data: dict[str, Any], out_dir: Path) -> pd.DataFrame:
    """Build the generic manifest for a CT-RATE download (see module docstring)."""
    root = Path(data["root"]).expanduser()
    reports = pd.read_csv(_under(root, data["ctrate_reports"], "radiology_text_reports.csv"))
    report_columns = data["ctrate_report_columns"]
    missing = {"VolumeName", *report_columns} - set(reports.columns)
    if missing:
        raise ValueError(f"CT-RATE reports CSV lacks column(s) {sorted(missing)}")
    reports["case_id"] = reports["VolumeName"].map(_volume_name)
    texts = reports[report_columns].fillna("").astype(str).agg(" ".join, axis=1).str.strip()
    report_of = dict(zip(reports["case_id"], texts))
    metadata = None
    if data["ctrate_metadata"] is not None or (root / "metadata.csv").is_file():
        metadata = pd.read_csv(_under(root, data["ctrate_metadata"], "metadata.csv"))
        metadata["case_id"] = metadata["VolumeName"].map(_volume_name)
        metadata = metadata.drop_duplicates("case_id").set_index("case_id")
    rows, without_report = [], 0
    for split_dir, split in data["split_map"].items():
        for path in sorted((root / split_dir).rglob("*.nii.gz")):
            case_id = _volume_name(path.name)
            if not report_of.get(case_id):
                without_report += 1
                continue
            row = {
                "case_id": case_id,
                "image": _relative(path, out_dir),
                "report": report_of[case_id],
                "split": split,
            }
            if metadata is not None and case_id in metadata.index:
                meta = metadata.loc[case_id]
                row |= {
                    "rescale_slope": meta.get("RescaleSlope", ""),
                    "rescale_intercept": meta.get("RescaleIntercept", ""),
                    "xy_spacing": _parse_xy(meta.get("XYSpacing", "")),
                    "z_spacing": meta.get("ZSpacing", ""),
                }
            rows.append(row)
    if without_report:
        log.warning("CT-RATE: %d volume(s) without a report were left out", without_report)
    frame = pd.DataFrame(rows)
    if data["one_reconstruction_per_scan"] and len(frame):
        frame = keep_one_reconstruction(frame)
    return frame


def keep_one_reconstruction(frame: pd.DataFrame) -> pd.DataFrame:
    """Keep the lowest-numbered reconstruction of each (split, patient, scan)."""
    parts = frame["case_id"].str.extract(CTRATE_NAME)
    unparsed = parts["patient"].isna()
    if unparsed.any():
        log.warning(
            "CT-RATE: %d name(s) do not look like split_patient_scan_recon; kept as is",
            int(unparsed.sum()),
        )
    parts["recon"] = pd.to_numeric(parts["recon"])
    keyed = frame.assign(
        _scan=parts["split"] + "_" + parts["patient"] + "_" + parts["scan"], _recon=parts["recon"]
    )
    kept = keyed[unparsed].copy()
    best = keyed[~unparsed].sort_values(["_scan", "_recon"]).drop_duplicates("_scan", keep="first")
    result = pd.concat([best, kept]).drop(columns=["_scan", "_recon"]).sort_values("case_id")
    log.info("CT-RATE: kept %d of %d reconstructions (one per scan)", len(result), len(frame))
    return result.reset_index(drop=True)


def _entry_report(entry: dict[str, Any]) -> str:
    for key in ("report", "finding", "findings", "report_en"):
        if entry.get(key):
            return str(entry[key]).strip()
    return ""


def ctrg_chest_manifest(data: dict[str, Any], out_dir: Path) -> pd.DataFrame:
    """Build the generic manifest for CTRG-Chest-548K (see module docstring)."""
    root = Path(data["root"]).expanduser()
    annotation_path = _under(root, data["ctrg_annotation"], "annotation.json")
    annotation = json.loads(annotation_path.read_text(encoding="utf-8"))
    images = _under(root, data["ctrg_images"], ".")
    rows, skipped = [], 0
    for split_key, split in data["split_map"].items():
        for entry in annotation.get(split_key, []):
            case = str(entry.get("id", "")).strip()
            image = entry.get("image_path") or f"patient_{case}.nii.gz"
            image = image[0] if isinstance(image, list) else image
            report = _entry_report(entry)
            if not case or not report:
                skipped += 1
                continue
            case_id = case if case.startswith("patient_") else f"patient_{case}"
            rows.append(
                {
                    "case_id": case_id,
                    "image": _relative(images / image, out_dir),
                    "report": report,
                    "split": split,
                }
            )
    if skipped:
        log.warning(
            "CTRG-Chest: %d entr(ies) without id or report in %s were left out",
            skipped,
            annotation_path,
        )
    return pd.DataFrame(rows, columns=MANIFEST_COLUMNS)


ADAPTERS = {"ctrate": ctrate_manifest, "ctrg_chest": ctrg_chest_manifest}


def main(argv: list[str]) -> int:
    """Write the generic manifest for ``data.source`` (ctrate or ctrg_chest)."""
    parser = argparse.ArgumentParser(prog="ctrg make-manifest", description=__doc__.splitlines()[0])
    parser.add_argument("--config", required=True, help="resolved data.json")
    parser.add_argument("--out", required=True, type=Path, help="manifest CSV to write")
    parser.add_argument("--log-level", default="INFO")
    args = parser.parse_args(argv)
    setup_logging(args.log_level)
    data = load_stage_config(args.config, "data")["data"]
    if data["source"] not in ADAPTERS:
        raise ValueError(
            f"make-manifest handles data.source {sorted(ADAPTERS)}, got {data['source']!r}"
        )
    if not data["root"]:
        raise ValueError(f"data.root must be set for data.source={data['source']}")
    frame = ADAPTERS[data["source"]](data, args.out.parent)
    if frame.empty:
        raise ValueError(f"no cases found under {data['root']} for data.source={data['source']}")
    if frame["case_id"].duplicated().any():
        raise ValueError(
            f"duplicate case ids: {frame['case_id'][frame['case_id'].duplicated()].tolist()[:10]}"
        )
    atomic_write_csv(args.out, frame)
    log.info(
        "wrote %s: %d case(s), splits %s",
        args.out,
        len(frame),
        frame["split"].value_counts().to_dict(),
    )
    return 0

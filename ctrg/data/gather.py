"""``ctrg gather-volumes SHARD_DIR... --out DIR``: merge ingestion shards into one manifest.

Paths in the shard manifests (relative to each shard folder) are rewritten relative to
``--out``; ``rejected.csv`` rows are concatenated. Two shards holding the same case is an
error (a sharding bug), as is a manifest row whose volume file is missing.
"""

from __future__ import annotations

import argparse
import logging
import os
from pathlib import Path

import pandas as pd

from ctrg.data.ingest import MANIFEST_COLUMNS, REJECTED_COLUMNS
from ctrg.runtime import atomic_write_csv, setup_logging, write_stage_summary

log = logging.getLogger(__name__)

PATH_COLUMNS = ("path", "structure_path", "finding_path")


def _read(path: Path) -> pd.DataFrame:
    if not path.is_file():
        raise FileNotFoundError(f"shard file missing: {path}")
    return pd.read_csv(path, dtype=str, keep_default_na=False)


def rebase(frame: pd.DataFrame, shard: Path, out: Path) -> pd.DataFrame:
    """Rewrite the shard-relative path columns relative to ``out`` (checking the files exist)."""
    frame = frame.copy()
    for column in PATH_COLUMNS:
        if column not in frame:
            continue
        rewritten = []
        for value in frame[column]:
            if not value:
                rewritten.append("")
                continue
            target = shard / value
            if not target.is_file():
                raise FileNotFoundError(
                    f"{shard / 'manifest.csv'}: {column} {value} does not exist"
                )
            rewritten.append(Path(os.path.relpath(target.resolve(), out.resolve())).as_posix())
        frame[column] = rewritten
    return frame


def gather(shards: list[Path], out: Path) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Merge shard manifests and rejection lists; returns (manifest, rejected)."""
    manifests, rejected = [], []
    for shard in shards:
        manifests.append(rebase(_read(shard / "manifest.csv"), shard, out))
        rejected.append(_read(shard / "rejected.csv"))
    manifest = pd.concat(manifests, ignore_index=True) if manifests else pd.DataFrame()
    manifest = manifest.reindex(columns=list(dict.fromkeys([*MANIFEST_COLUMNS, *manifest.columns])))
    duplicated = manifest["case_id"][manifest["case_id"].duplicated()].tolist()
    if duplicated:
        raise ValueError(f"case(s) present in more than one shard: {duplicated[:10]}")
    rejected_all = pd.concat(rejected, ignore_index=True) if rejected else pd.DataFrame()
    rejected_all = rejected_all.reindex(columns=REJECTED_COLUMNS)
    return manifest.sort_values("case_id", kind="stable"), rejected_all


def main(argv: list[str]) -> int:
    """Merge ingestion shards."""
    parser = argparse.ArgumentParser(
        prog="ctrg gather-volumes", description=__doc__.splitlines()[0]
    )
    parser.add_argument("shards", nargs="+", type=Path, help="shard folders written by ctrg ingest")
    parser.add_argument("--out", required=True, type=Path, help="folder for manifest.csv etc.")
    parser.add_argument("--log-level", default="INFO")
    args = parser.parse_args(argv)
    setup_logging(args.log_level)
    args.out.mkdir(parents=True, exist_ok=True)
    manifest, rejected = gather(args.shards, args.out)
    atomic_write_csv(args.out / "manifest.csv", manifest)
    atomic_write_csv(args.out / "rejected.csv", rejected)
    reasons = (
        rejected["reason"].str.split(":").str[0].value_counts().to_dict() if len(rejected) else {}
    )
    write_stage_summary(args.out, "gather-volumes", {"shards": [str(s) for s in args.shards]}, {
        "cases": int(len(manifest)), "rejected": int(len(rejected)), "rejected_by_reason": reasons,
        "splits": manifest["split"].value_counts().to_dict() if len(manifest) else {},
        "with_warnings": int((manifest["warnings"] != "").sum()) if len(manifest) else 0,
    })  # fmt: skip
    for _, row in rejected.iterrows():
        log.warning("rejected %s (%s): %s", row["case_id"], row["file"], row["reason"])
    log.info(
        "gathered %d case(s), %d rejected, from %d shard(s)",
        len(manifest),
        len(rejected),
        len(args.shards),
    )
    return 0

"""``ctrg gather-features SHARD_DIR... --out features/index.csv``: merge feature shards.

Concatenates the shards' ``index.csv`` (paths rewritten relative to the output's folder,
every file checked to exist), refuses a case present in two shards and shards made by
different frozen models, and writes ``summary.json`` / ``resolved_config.json`` beside the
index (cases per split, rejected cases, the frozen hash).
"""

from __future__ import annotations

import argparse
import logging
import os
from pathlib import Path

import pandas as pd

from ctrg.features.cache import INDEX_COLUMNS
from ctrg.runtime import atomic_write_csv, setup_logging, write_stage_summary

log = logging.getLogger(__name__)


def _read_csv(path: Path) -> pd.DataFrame:
    if not path.is_file():
        raise FileNotFoundError(f"feature shard file missing: {path}")
    return pd.read_csv(path, dtype=str, keep_default_na=False)


def gather(shards: list[Path], out: Path) -> tuple[pd.DataFrame, int]:
    """Merge shard indices; returns (index with paths relative to ``out``'s folder, rejected)."""
    parts, rejected = [], 0
    for shard in shards:
        frame = _read_csv(shard / "index.csv")
        missing = set(INDEX_COLUMNS) - set(frame.columns)
        if missing:
            raise ValueError(f"{shard / 'index.csv'}: missing columns {sorted(missing)}")
        paths = []
        for value in frame["path"]:
            target = shard / value
            if not target.is_file():
                raise FileNotFoundError(f"{shard / 'index.csv'}: feature file {value} missing")
            paths.append(Path(os.path.relpath(target.resolve(), out.parent.resolve())).as_posix())
        frame["path"] = paths
        parts.append(frame[list(INDEX_COLUMNS)])
        rejected_path = shard / "rejected.csv"
        if rejected_path.is_file():
            rejected += len(_read_csv(rejected_path))
    index = pd.concat(parts, ignore_index=True)
    if index.empty:
        raise ValueError(f"no feature rows in {len(shards)} shard(s)")
    duplicated = index["case_id"][index["case_id"].duplicated()].tolist()
    if duplicated:
        raise ValueError(f"case(s) present in more than one shard: {duplicated[:10]}")
    hashes = sorted(set(index["frozen_hash"]))
    if len(hashes) != 1:
        raise ValueError(
            f"shards come from {len(hashes)} frozen models {[h[:12] for h in hashes]}: "
            "re-extract them with one model"
        )
    return index.sort_values("case_id", kind="stable").reset_index(drop=True), rejected


def main(argv: list[str]) -> int:
    """Run ``ctrg gather-features``."""
    parser = argparse.ArgumentParser(
        prog="ctrg gather-features", description=__doc__.splitlines()[0]
    )
    parser.add_argument("shards", nargs="+", type=Path, help="shard folders from ctrg extract")
    parser.add_argument("--out", required=True, type=Path, help="output index.csv")
    parser.add_argument("--log-level", default="INFO")
    args = parser.parse_args(argv)
    setup_logging(args.log_level)
    index, rejected = gather(args.shards, args.out)
    atomic_write_csv(args.out, index)
    splits = index["split"].value_counts().sort_index().to_dict()
    write_stage_summary(
        args.out.parent,
        "gather-features",
        {"shards": [str(s) for s in args.shards]},
        {
            "cases": len(index),
            "cases_per_split": splits,
            "rejected": rejected,
            "frozen_hash": index["frozen_hash"].iloc[0],
        },
    )
    log.info("gathered %d feature files from %d shards", len(index), len(args.shards))
    return 0

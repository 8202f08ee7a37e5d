"""``ctrg extract MANIFEST --frozen F --config features.json --shard I --num-shards N --out DIR``.

Runs the frozen stage-1 model on one shard of the model-ready volumes and caches, per case,
the observation tokens, each structure's top-k patch tokens (by last-layer query-to-patch
attention, max over heads: ``ctrg.features.select``), the chosen patch indices and scores,
and the attention row (see ``ctrg.features.cache`` for the file layout), plus the finding
head's logits (``finding_logits``, (L,)) when the stage-1 model has one. The shard folder
gets ``<case_id>.safetensors`` files, ``index.csv`` (case_id, split, path, frozen_hash),
``rejected.csv`` (case_id, file, reason: one unreadable volume never stops the shard),
``summary.json`` and ``resolved_config.json``. Shard membership is
``ctrg.data.ingest.shard_of`` (SHA-256 of the case id), as for ingestion.

Volumes stay in their stored float dtype (float16 as ingested) until they reach the device,
where they are widened to float32 (exact), and the next batch is read from disk in a
thread while the current one runs: at paper scale (240x480x480) that halves the bytes each
volume costs in host memory and in the host-to-device copy.
"""

from __future__ import annotations

import argparse
import json
import logging
import time
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from functools import partial
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
import pandas as pd
import torch
from tqdm import tqdm

from ctrg.config import load_stage_config
from ctrg.data.dataset import read_volume_manifest
from ctrg.data.ingest import shard_of
from ctrg.features.cache import load_frozen, save_case_features
from ctrg.features.freeze import build_observer
from ctrg.features.select import attention_scores, select_top_patches
from ctrg.runtime import (
    add_runtime_arguments,
    apply_runtime_arguments,
    atomic_write_csv,
    seed_everything,
    select_device,
    write_stage_summary,
)

log = logging.getLogger(__name__)

T = TypeVar("T")
R = TypeVar("R")


def load_frozen_observer(path: Path, device: torch.device) -> tuple[Any, str]:
    """The frozen observer and its hash; cross-checked against ``frozen.json`` when present."""
    tensors, observer_config, content = load_frozen(path)
    meta_path = path.parent / "frozen.json"
    if meta_path.is_file():
        recorded = json.loads(meta_path.read_text()).get("frozen_hash")
        if recorded != content:
            raise ValueError(
                f"{meta_path}: frozen_hash {str(recorded)[:12]} does not match {path} "
                f"({content[:12]}): re-run ctrg freeze"
            )
    return build_observer(tensors, observer_config).to(device), content


def shard_rows(frame: pd.DataFrame, shard: str | None, num_shards: int) -> pd.DataFrame:
    """Rows of one shard (all rows without ``shard``)."""
    if shard is None:
        return frame
    index = int(shard)
    if not 0 <= index < num_shards:
        raise ValueError(f"--shard {shard} outside 0..{num_shards - 1}")
    keep = [shard_of(case_id, num_shards) == index for case_id in frame["case_id"]]
    return frame[keep].reset_index(drop=True)


def _load_volume(path: str, shape: tuple[int, ...]) -> np.ndarray:
    """The volume at ``path`` in its stored float dtype (float16/float32; others -> float32).

    Raises:
        ValueError: on a shape other than the model input's or non-finite voxels.
    """
    array = np.load(path, mmap_mode="r")
    if tuple(array.shape) != shape:
        raise ValueError(f"volume shape {tuple(array.shape)} != model input {shape}")
    keep = array.dtype in (np.float16, np.float32)
    volume = np.array(array) if keep else np.asarray(array, dtype=np.float32)
    if not np.isfinite(volume).all():
        raise ValueError("non-finite voxel values")
    return volume


def prefetch(items: Iterable[T], load: Callable[[T], R]) -> Iterator[R]:
    """``load(item)`` for each item in order, the next item loading in a thread meanwhile.

    At most two loaded items exist at once; an exception in ``load`` surfaces when its
    result is reached.
    """
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="prefetch") as pool:
        pending = None
        for item in items:
            future = pool.submit(load, item)
            if pending is not None:
                yield pending.result()
            pending = future
        if pending is not None:
            yield pending.result()


def load_part(
    part: pd.DataFrame, shape: tuple[int, ...]
) -> tuple[list[np.ndarray], list[pd.Series], list[dict[str, str]]]:
    """(volumes, their rows, rejected rows) of one batch; a bad volume is logged and skipped."""
    volumes, kept, rejected = [], [], []
    for _, row in part.iterrows():
        try:
            volumes.append(_load_volume(row["path"], shape))
            kept.append(row)
        except Exception as err:  # one bad case is reported and skipped
            log.error("%s: %s: %s", row["case_id"], row["path"], err)
            rejected.append({"case_id": row["case_id"], "file": row["path"], "reason": str(err)})
    return volumes, kept, rejected


@torch.no_grad()
def extract_batch(
    observer: Any, volumes: np.ndarray, top_k: int, store_all: bool, device: torch.device
) -> list[dict[str, torch.Tensor]]:
    """Features of a batch of volumes (B, D, H, W) -> one tensor dict per case.

    ``volumes`` may be float16 (as stored): they are widened to float32 on ``device``.
    """
    batch = torch.from_numpy(volumes).unsqueeze(1).to(device)  # (B, 1, D, H, W)
    output = observer.encode_volume(batch.float())
    chosen = select_top_patches(output.attention, output.patch_tokens, top_k)
    scores = attention_scores(output.attention)  # (B, S, N)
    cases = []
    for i in range(volumes.shape[0]):
        tensors = {
            "observation_tokens": output.observation_tokens[i].float(),
            "selected_patch_tokens": chosen.tokens[i].float(),
            "selected_patch_index": chosen.index[i],
            "selected_patch_score": chosen.score[i].float(),
            "attention": scores[i].half(),
        }
        if store_all:
            tensors["patch_tokens"] = output.patch_tokens[i].float()
        if output.finding_logits is not None:
            tensors["finding_logits"] = output.finding_logits[i].float()
        cases.append({k: v.cpu() for k, v in tensors.items()})
    return cases


def _selection_stats(case: dict[str, torch.Tensor]) -> tuple[float, float]:
    """(attention mass in the chosen patches / total, distinct chosen patches / (S*k))."""
    row = case["attention"].float()
    mass = float(case["selected_patch_score"].sum() / row.sum().clamp_min(1e-12))
    index = case["selected_patch_index"]
    return mass, float(index.unique().numel() / index.numel())


def run_extraction(
    frame: pd.DataFrame,
    observer: Any,
    content: str,
    section: dict[str, Any],
    out: Path,
    device: torch.device,
) -> tuple[pd.DataFrame, pd.DataFrame, list[tuple[float, float]]]:
    """Extract every row of ``frame`` into ``out``; returns (index, rejected, stats)."""
    shape = tuple(observer.config.volume_shape)
    grid = json.dumps(list(observer.patch_grid))
    rows, rejected, stats = [], [], []
    batch_size = int(section["batch_size"])
    parts = [frame.iloc[i : i + batch_size] for i in range(0, len(frame), batch_size)]
    loaded = prefetch(parts, partial(load_part, shape=shape))
    for volumes, kept, bad in tqdm(loaded, total=len(parts), desc="extract", unit="batch"):
        rejected.extend(bad)
        if not volumes:
            continue
        cases = extract_batch(
            observer,
            np.stack(volumes),
            int(section["top_k"]),
            bool(section["store_all_patches"]),
            device,
        )
        for row, tensors in zip(kept, cases):
            name = f"{row['case_id']}.safetensors"
            metadata = {
                "frozen_hash": content,
                "case_id": row["case_id"],
                "top_k": str(section["top_k"]),
                "patch_grid": grid,
            }
            save_case_features(out / name, tensors, metadata)
            stats.append(_selection_stats(tensors))
            rows.append(
                {
                    "case_id": row["case_id"],
                    "split": row.get("split", ""),
                    "path": name,
                    "frozen_hash": content,
                }
            )
    index = pd.DataFrame(rows, columns=["case_id", "split", "path", "frozen_hash"])
    return index, pd.DataFrame(rejected, columns=["case_id", "file", "reason"]), stats


def main(argv: list[str]) -> int:
    """Run ``ctrg extract`` for one shard."""
    parser = argparse.ArgumentParser(prog="ctrg extract", description=__doc__.splitlines()[0])
    parser.add_argument("manifest", type=Path, help="results/volumes/manifest.csv")
    parser.add_argument("--frozen", required=True, type=Path, help="frozen model.safetensors")
    parser.add_argument("--config", type=Path, default=None, help="resolved features.json")
    parser.add_argument("--shard", default=None, help="shard index (e.g. 000); default: all")
    parser.add_argument("--num-shards", type=int, default=1)
    parser.add_argument("--out", required=True, type=Path, help="output shard folder")
    add_runtime_arguments(parser)
    args = parser.parse_args(argv)
    apply_runtime_arguments(args)
    payload = load_stage_config(args.config, "features")
    section = payload["features"]
    seed_everything(payload["seed"])
    device = select_device(payload.get("device", "auto"))
    observer, content = load_frozen_observer(args.frozen, device)
    frame = shard_rows(read_volume_manifest(args.manifest), args.shard, args.num_shards)
    if "split" not in frame.columns:
        frame["split"] = ""
    args.out.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    index, rejected, stats = run_extraction(frame, observer, content, section, args.out, device)
    elapsed = time.perf_counter() - started
    atomic_write_csv(args.out / "index.csv", index)
    atomic_write_csv(args.out / "rejected.csv", rejected)
    mass = [s[0] for s in stats]
    distinct = [s[1] for s in stats]
    write_stage_summary(
        args.out,
        "extract",
        payload,
        {
            "manifest": str(args.manifest),
            "frozen": str(args.frozen),
            "frozen_hash": content,
            "shard": args.shard,
            "num_shards": args.num_shards,
            "cases": len(index),
            "rejected": len(rejected),
            "seconds": elapsed,
            "volumes_per_second": len(index) / max(elapsed, 1e-9),
            "mean_selected_attention_mass": float(np.mean(mass)) if mass else None,
            "mean_distinct_selected_share": float(np.mean(distinct)) if distinct else None,
        },
    )
    log.info("extracted %d cases (%d rejected) in %.1f s", len(index), len(rejected), elapsed)
    return 0

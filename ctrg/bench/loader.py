"""``ctrg bench loader``: can the stage-1 data loader feed the GPU? Volumes/s from disk to device.

Writes ``--cases`` random float16 volumes of ``stage1.model.volume_shape`` (as ``ctrg ingest``
stores them) with a manifest and an in-memory text cache, then runs stage 1's loader
(``VolumeTextDataset`` + ``collate_cases`` + a ``DataLoader`` pinning memory on CUDA, as
``ctrg.train.loop.Trainer`` builds it) and ``move_to_device`` over every batch, for each
``--workers`` count and both volume dtypes through the loader:

- ``float32``: the volume widened in the worker (what stage 1 did before 2026-12-04);
- ``stored``: float16 through workers, pinning and the copy, widened on the device (now the
  default of stage 1 without augmentation).

``--cold`` asks the kernel to drop each file from the page cache before every pass
(``posix_fadvise(DONTNEED)``; no root needed), so reads come from the disk; otherwise they
come from memory. The first batch of a pass (worker start-up) is not timed. Ratios are
against the first setting. Numbers are printed and written, never asserted.
"""

from __future__ import annotations

import argparse
import logging
import os
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from torch.utils.data import DataLoader

from ctrg.anatomy import CHEST_STRUCTURES
from ctrg.bench.timing import machine_info
from ctrg.config import load_config_files
from ctrg.data.dataset import VolumeTextDataset, collate_cases
from ctrg.models.text_cache import TextCache
from ctrg.runtime import atomic_write_json, select_device, setup_logging
from ctrg.train.loop_config import move_to_device

log = logging.getLogger(__name__)

NUM_STRUCTURES, TEXT_DIM = len(CHEST_STRUCTURES), 384


def write_volumes(folder: Path, cases: int, shape: tuple[int, int, int]) -> Path:
    """``cases`` random float16 ``.npy`` volumes in [-1, 1] and their manifest.csv."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    rows = []
    for i in range(cases):
        name = f"case_{i:04d}.npy"
        volume = rng.uniform(-1, 1, shape).astype(np.float16)  # (D, H, W)
        np.save(folder / name, volume)
        rows.append({"case_id": f"case_{i:04d}", "split": "train", "path": name})
    manifest = folder / "manifest.csv"
    pd.DataFrame(rows).to_csv(manifest, index=False)
    return manifest


def text_cache(cases: int) -> TextCache:
    """Random structure-text embeddings for ``case_0000``... (what the loader also reads)."""
    embeddings = torch.randn(cases, NUM_STRUCTURES, TEXT_DIM)  # (N, S, H)
    ids = [f"case_{i:04d}" for i in range(cases)]
    return TextCache(embeddings, torch.randn(cases, TEXT_DIM), ids, {})


def evict(paths: list[str]) -> None:
    """Drop each file's pages from the page cache (Linux; clean pages only)."""
    for path in paths:
        fd = os.open(path, os.O_RDONLY)
        try:
            os.fsync(fd)
            os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
        finally:
            os.close(fd)


def one_pass(dataset: VolumeTextDataset, args: argparse.Namespace, workers: int) -> float:
    """Seconds for every batch after the first to reach the device as float32."""
    device = args.device
    loader = DataLoader(
        dataset,
        batch_size=args.batch_size,
        collate_fn=collate_cases,
        num_workers=workers,
        pin_memory=device.type == "cuda",
    )
    started = None
    for batch in loader:
        volume = move_to_device(batch, device)["volume"]  # (B, 1, D, H, W)
        if volume.dtype != torch.float32:
            raise TypeError(f"volume reached the device as {volume.dtype}")
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        if started is None:
            started = time.perf_counter()
    if started is None:
        raise ValueError("no batch was loaded")
    return time.perf_counter() - started


def measure(manifest: Path, args: argparse.Namespace) -> list[dict[str, Any]]:
    """One row per (workers, dtype): volumes/s and file GB/s, median over ``--passes``."""
    cache = text_cache(args.cases)
    timed = args.cases - args.batch_size  # the first batch is not timed
    file_bytes = int(np.prod(args.shape)) * 2
    rows = []
    for workers in args.workers:
        for stored in (False, True):
            dataset = VolumeTextDataset(manifest, cache, "train", stored_dtype=stored)
            seconds = []
            for _ in range(args.passes):
                if args.cold:
                    evict(list(dataset.frame["path"]))
                seconds.append(one_pass(dataset, args, workers))
            median = float(np.median(seconds))
            rows.append(
                {
                    "workers": workers,
                    "dtype": "stored" if stored else "float32",
                    "volumes_per_s": timed / median,
                    "file_gb_per_s": timed * file_bytes / median / 1e9,
                    "seconds": seconds,
                }
            )
            log.info("%d workers, %s: %.1f volumes/s", workers, rows[-1]["dtype"], timed / median)
    return rows


def table(rows: list[dict[str, Any]], header: str) -> str:
    """Markdown table, ratios against the first row."""
    base = rows[0]["volumes_per_s"]
    lines = [
        header,
        "",
        "| workers | volume dtype through the loader | volumes/s | file GB/s | x first |",
    ]
    lines.append("|---|---|---|---|---|")
    for row in rows:
        lines.append(
            f"| {row['workers']} | {row['dtype']} | {row['volumes_per_s']:.1f} | "
            f"{row['file_gb_per_s']:.2f} | {row['volumes_per_s'] / base:.2f}x |"
        )
    return "\n".join(lines) + "\n"


def parse_args(argv: list[str]) -> argparse.Namespace:
    """Command-line options (see ``ctrg bench loader --help``)."""
    parser = argparse.ArgumentParser(prog="ctrg bench loader", description=__doc__.splitlines()[0])
    parser.add_argument("--configfile", type=Path, nargs="+", default=[Path("config.yaml")])
    parser.add_argument("--device", default="auto", help="auto | cpu | cuda[:N]")
    parser.add_argument("--cases", type=int, default=32, help="volumes written and read")
    parser.add_argument("--batch-size", type=int, default=None, help="default: stage1 config")
    parser.add_argument("--workers", type=int, nargs="+", default=None, help="default: config")
    parser.add_argument("--passes", type=int, default=2, help="passes per setting (median)")
    parser.add_argument("--cold", action="store_true", help="evict the files before each pass")
    parser.add_argument("--folder", type=Path, default=None, help="default: a temporary folder")
    parser.add_argument("--out-json", type=Path, default=Path("results/bench/loader.json"))
    parser.add_argument("--log-level", default="INFO")
    args = parser.parse_args(argv)
    if args.passes < 1 or args.cases < 2:
        parser.error("--passes must be >= 1 and --cases >= 2")
    return args


def main(argv: list[str]) -> int:
    """Write the volumes, time the loader settings, print and write the table."""
    args = parse_args(argv)
    setup_logging(args.log_level)
    stage1 = load_config_files(args.configfile)["stage1"]
    args.shape = tuple(stage1["model"]["volume_shape"])
    args.batch_size = args.batch_size or stage1["loop"]["batch_size"]
    args.workers = args.workers or [stage1["loop"]["num_workers"]]
    args.device = select_device(args.device)
    if args.cases <= args.batch_size:
        raise ValueError(f"--cases {args.cases} must exceed the batch size {args.batch_size}")
    with tempfile.TemporaryDirectory(dir=args.folder) as tmp:
        manifest = write_volumes(Path(tmp), args.cases, args.shape)
        rows = measure(manifest, args)
    header = (
        f"stage-1 loader: {args.cases} float16 volumes {args.shape}, batch {args.batch_size}, "
        f"device {args.device}, {'cold (evicted)' if args.cold else 'page cache'}"
    )
    text = table(rows, header)
    print(text, end="")
    machine = machine_info(args.device)
    atomic_write_json(args.out_json, {"machine": machine, "header": header, "rows": rows})
    return 0

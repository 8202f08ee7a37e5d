"""``ctrg bench bucketing``: stage-2 batches sorted by report length against random batches.

Builds the training set as ``ctrg stage2`` does (features index, reports, the stage-2
config's tokenizer and decoder). For the random batches of ``EpochBatchSampler`` (the
baseline, ``stage2.loop.bucket_pool`` 0) and for each ``--pools`` value it gives the padded
token positions of one whole epoch (exact: every batch of epoch 0, batch width = longest
report of the batch) and the median time of real training steps (forward, backward, AdamW,
the config's dropout, label smoothing and visual noise) on batches of that epoch, all in
one process with the runs interleaved, so machine load hits them alike. Prints numbers;
asserts nothing. It does not say whether the reports stay as good: that takes the
benchmark rows.
"""

from __future__ import annotations

import argparse
import copy
import logging
from pathlib import Path
from typing import Any

import torch
from torch.utils.data import DataLoader

from ctrg.bench.timing import machine_info, median_seconds
from ctrg.config import load_stage_config
from ctrg.features.dataset import Collate, FeatureReportDataset
from ctrg.features.select import TOKEN_OBSERVATION
from ctrg.models.decoder import teacher_forced_loss
from ctrg.runtime import atomic_write_json, seed_everything, setup_logging
from ctrg.train.distributed import DistInfo, EpochBatchSampler
from ctrg.train.stage2 import build_model, load_datasets
from ctrg.train.stage2_inputs import add_visual_noise, visual_batch

log = logging.getLogger(__name__)


def training_set(args: argparse.Namespace) -> tuple[dict[str, Any], Any, Any, Any]:
    """(stage-2 section, decoder, tokenizer, training dataset) as ``ctrg stage2`` builds them."""
    payload = load_stage_config(args.config, "stage2")
    section = payload["stage2"]
    seed_everything(payload["seed"])
    args.frozen = None
    train_rows, content, _, _ = load_datasets(args, section)
    mode = section["visual_tokens"]
    probe = FeatureReportDataset(train_rows.head(1), content, mode)
    structures = int((probe.kind == TOKEN_OBSERVATION).sum())
    model, tokenizer, _ = build_model(
        section, train_rows["report"].tolist(), probe.visual_dim, structures
    )
    dataset = FeatureReportDataset(
        train_rows, content, mode, tokenizer, section["max_report_tokens"]
    )
    return section, model, tokenizer, dataset


def epoch_padding(sampler: EpochBatchSampler, lengths: list[int]) -> dict[str, float]:
    """Token positions computed in one epoch (batch x longest report) against real tokens."""
    batches = list(sampler)
    computed = sum(len(b) * max(lengths[i] for i in b) for b in batches)
    real = sum(lengths[i] for b in batches for i in b)
    return {
        "batches": len(batches),
        "positions": computed,
        "tokens": real,
        "padding_share": 1 - real / computed,
    }


def step_timer(section: dict[str, Any], model: Any, tokenizer: Any, batches: list[dict]) -> Any:
    """A callable that runs one AdamW step on each of ``batches`` (a fresh copy of ``model``)."""
    model = copy.deepcopy(model).train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=section["optim"]["lr"])
    unk = getattr(tokenizer, "unk_id", None)

    def run() -> None:
        for batch in batches:
            visual = add_visual_noise(visual_batch(batch), section["visual_noise"])
            loss = teacher_forced_loss(
                model,
                visual,
                batch["ids"],
                tokenizer.pad_id,
                section["label_smoothing"],
                section["input_dropout"],
                unk,
            )
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()

    return run


def run(args: argparse.Namespace) -> dict[str, Any]:
    """Padding and step time of each sampler (see module doc)."""
    torch.set_num_threads(args.threads)
    section, model, tokenizer, dataset = training_set(args)
    lengths = [len(ids) for ids in dataset.ids]
    batch, seed = section["batch_size"], args.seed
    collate = Collate(dataset.kind, dataset.structure, tokenizer.pad_id)
    rows, timers = {}, {}
    for pool in [0, *args.pools]:
        sampler = EpochBatchSampler(len(dataset), batch, seed, DistInfo(), lengths, pool)
        rows[pool] = epoch_padding(sampler, lengths)
        loader = DataLoader(dataset, batch_sampler=sampler, collate_fn=collate)
        batches = [b for _, b in zip(range(args.steps), loader)]
        timers[pool] = step_timer(section, model, tokenizer, batches)
        timers[pool]()  # warm-up
    times: dict[int, list[float]] = {pool: [] for pool in rows}
    cpu = torch.device("cpu")
    for _ in range(args.repeats):  # interleaved: load changes hit every sampler alike
        for pool, timer in timers.items():
            times[pool].append(median_seconds(timer, 1, cpu) / args.steps)
    for pool, row in rows.items():
        row["seconds_per_step"] = sorted(times[pool])[len(times[pool]) // 2]
    base = rows[0]["seconds_per_step"]
    for row in rows.values():
        row["speedup"] = base / row["seconds_per_step"]
    return {
        "train_reports": len(dataset),
        "batch_size": batch,
        "mean_report_tokens": sum(lengths) / len(lengths),
        "steps_timed": args.steps,
        "repeats": args.repeats,
        "rows": {str(pool): row for pool, row in rows.items()},
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="ctrg bench bucketing", description=__doc__)
    parser.add_argument("--features", required=True, type=Path, help="features index.csv")
    parser.add_argument("--reports", required=True, type=Path, help="reports.csv")
    parser.add_argument("--config", required=True, type=Path, help="resolved stage2.json")
    parser.add_argument("--pools", type=int, nargs="+", default=[4, 8, 13])
    parser.add_argument("--steps", type=int, default=6, help="timed steps per repeat")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--out-json", type=Path, help="also write the numbers here")
    args = parser.parse_args(argv)
    setup_logging()
    result = run(args)
    print(
        f"stage-2 batches, {result['train_reports']} training reports, batch "
        f"{result['batch_size']}, mean {result['mean_report_tokens']:.1f} tokens"
    )
    print("| bucket_pool | padding share of the epoch | s per step | speed-up |")
    print("|---|---|---|---|")
    for pool, row in result["rows"].items():
        name = "0 (random batches, baseline)" if pool == "0" else pool
        print(
            f"| {name} | {row['padding_share']:.3f} | {row['seconds_per_step']:.3f} "
            f"| {row['speedup']:.2f}x |"
        )
    if args.out_json:
        atomic_write_json(args.out_json, {**result, "machine": machine_info(torch.device("cpu"))})
    return 0

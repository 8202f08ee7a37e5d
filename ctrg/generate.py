"""``ctrg generate-features INDEX --model model.pt --reports reports.csv --config generate.json
--out predictions.csv``: generate reports from cached features.

Writes ``predictions.csv`` (case_id, split, reference, prediction) for ``generate.split``
and ``<out stem>.summary.json`` (cases, distinct reports, the most frequent report's share,
mean length, decoding settings, frozen hash, timing). Uses the same decoding code as the
validation in ``ctrg stage2`` (``ctrg.models.generation.generate_reports``).

Refuses a decoder trained on features of another frozen stage-1 model (hash mismatch).
``--shuffle-features`` is the shuffled-image control: each case is decoded from the
features of another case of the split (a seeded derangement; column ``features_of``), so a
decoder that ignores the image scores the same as without it.
"""

from __future__ import annotations

import argparse
import logging
import time
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from tqdm import tqdm

from ctrg.config import load_stage_config
from ctrg.features.cache import FrozenHashMismatch, index_hash, read_index
from ctrg.features.dataset import FeatureReportDataset, read_reports
from ctrg.features.select import VisualTokens
from ctrg.models.decoder import load_stage2
from ctrg.models.generation import GenerationConfig, generate_reports
from ctrg.runtime import (
    add_runtime_arguments,
    apply_runtime_arguments,
    atomic_write_csv,
    atomic_write_json,
    provenance,
    seed_everything,
    select_device,
)

log = logging.getLogger(__name__)


def derangement(count: int, seed: int) -> np.ndarray:
    """A seeded permutation with no fixed point: case i reads the features of case out[i]."""
    if count < 2:
        raise ValueError(f"--shuffle-features needs at least 2 cases, got {count}")
    order = np.random.default_rng(seed).permutation(count)
    out = np.empty(count, dtype=np.int64)
    out[order] = np.roll(order, -1)  # each case in the random cycle takes the next one's
    return out


def check_model_features(
    meta: dict[str, Any], content: str, model_path: Path, index_path: Path
) -> None:
    """Refuse a decoder trained on features of another frozen model."""
    trained_on = str(meta.get("frozen_hash", ""))
    if trained_on != content:
        raise FrozenHashMismatch(
            f"{model_path} was trained on features of frozen model {trained_on[:12]}, but "
            f"{index_path} holds features of {content[:12]}: retrain stage 2 or use its features"
        )


def select_rows(
    index: pd.DataFrame, reports: pd.DataFrame | None, section: dict[str, Any]
) -> pd.DataFrame:
    """Index rows of the split (sorted by id, capped at max_cases) with reference texts."""
    rows = index if section["split"] == "all" else index[index["split"] == section["split"]]
    rows = rows.sort_values("case_id", kind="stable")
    if section["max_cases"]:
        rows = rows.head(section["max_cases"])
    if reports is not None:
        rows = rows.merge(reports[["case_id", "report"]], on="case_id", how="left")
        lacking = rows["report"].isna()
        if lacking.any():
            log.warning("%d case(s) without a reference report", int(lacking.sum()))
        rows["report"] = rows["report"].fillna("")
    else:
        rows = rows.assign(report="")
    if rows.empty:
        raise ValueError(f"no cases of split {section['split']!r} in the features index")
    return rows.reset_index(drop=True)


def generate(
    dataset: FeatureReportDataset,
    model: Any,
    tokenizer: Any,
    decoding: GenerationConfig,
    batch_size: int,
    source: np.ndarray,
    device: torch.device,
) -> list[str]:
    """Reports for every case; case i is decoded from the visual tokens of case source[i]."""
    predictions: list[str] = []
    for start in tqdm(range(0, len(dataset), batch_size), desc="generate", unit="batch"):
        chosen = source[start : start + batch_size]
        tokens = torch.stack([dataset.visual[int(j)] for j in chosen]).to(device)
        findings = (
            torch.stack([dataset.findings[int(j)] for j in chosen]).to(device)
            if dataset.findings
            else None
        )  # the shuffled control moves the finding logits with the tokens
        visual = VisualTokens(
            tokens, dataset.kind.to(device), dataset.structure.to(device), findings
        )
        predictions += generate_reports(model, tokenizer, visual, decoding)
    return predictions


def diversity(predictions: list[str]) -> dict[str, Any]:
    """Distinct reports and the most frequent report's share."""
    counts = Counter(predictions)
    text, top = counts.most_common(1)[0]
    return {
        "distinct_reports": len(counts),
        "share_distinct": len(counts) / len(predictions),
        "most_frequent_share": top / len(predictions),
        "most_frequent_report": text,
        "mean_words": float(np.mean([len(p.split()) for p in predictions])),
    }


def predictions_frame(
    dataset: FeatureReportDataset,
    rows: pd.DataFrame,
    predictions: list[str],
    source: np.ndarray | None,
) -> pd.DataFrame:
    """predictions.csv rows (plus ``features_of`` for the shuffled control)."""
    split_of = dict(zip(rows["case_id"], rows["split"]))
    frame = pd.DataFrame(
        {
            "case_id": dataset.case_ids,
            "split": [split_of[c] for c in dataset.case_ids],
            "reference": dataset.reports,
            "prediction": predictions,
        }
    )
    if source is not None:
        frame["features_of"] = [dataset.case_ids[int(j)] for j in source]
    return frame


def run_record(
    args: argparse.Namespace,
    section: dict[str, Any],
    shuffle_seed: int,
    content: str,
    meta: dict[str, Any],
) -> dict[str, Any]:
    """What a generation ran on: split, shuffling, decoding, frozen features and model."""
    return {
        "split": section["split"],
        "shuffle_features": bool(args.shuffle_features),
        "shuffle_seed": shuffle_seed if args.shuffle_features else None,
        "decoding": section["decoding"],
        "frozen_hash": content,
        "model": str(args.model),
        "model_step": meta.get("step"),
    }


def run(args: argparse.Namespace) -> int:
    """Generate and write predictions (see module doc)."""
    payload = load_stage_config(args.config, "generate")
    section = payload["generate"]
    if args.split:
        section["split"] = args.split
    seed_everything(payload["seed"])
    device = select_device(payload.get("device", "auto"))
    model, tokenizer, meta = load_stage2(args.model, device, merge_lora=section["merge_lora"])
    index = read_index(args.index)
    content = index_hash(index)
    check_model_features(meta, content, args.model, args.index)
    reports = read_reports(args.reports) if args.reports else None
    rows = select_rows(index, reports, section)
    dataset = FeatureReportDataset(
        rows, content, meta["visual_tokens"], findings=meta.get("finding_tokens", False)
    )
    count = len(dataset)
    shuffle_seed = payload["seed"] if args.shuffle_seed is None else args.shuffle_seed
    source = derangement(count, shuffle_seed) if args.shuffle_features else np.arange(count)
    decoding = GenerationConfig(**section["decoding"])
    started = time.perf_counter()
    with torch.no_grad():
        predictions = generate(
            dataset, model, tokenizer, decoding, section["batch_size"], source, device
        )
    elapsed = time.perf_counter() - started
    atomic_write_csv(
        args.out,
        predictions_frame(dataset, rows, predictions, source if args.shuffle_features else None),
    )
    summary = {
        "stage": "generate-features",
        "cases": count,
        **diversity(predictions),
        "skipped": dataset.skipped,
        **run_record(args, section, shuffle_seed, content, meta),
        "seconds": elapsed,
        "cases_per_second": count / max(elapsed, 1e-9),
        "config": payload,
        "provenance": provenance(),
    }
    atomic_write_json(args.out.with_name(f"{args.out.stem}.summary.json"), summary)
    log.info(
        "%d reports (%d distinct, most frequent share %.2f) in %.1f s -> %s",
        count,
        summary["distinct_reports"],
        summary["most_frequent_share"],
        elapsed,
        args.out,
    )
    return 0


def main(argv: list[str]) -> int:
    """Run ``ctrg generate-features``."""
    parser = argparse.ArgumentParser(
        prog="ctrg generate-features", description=__doc__.splitlines()[0]
    )
    parser.add_argument("index", type=Path, help="features index.csv")
    parser.add_argument("--model", required=True, type=Path, help="stage-2 model.pt")
    parser.add_argument("--reports", type=Path, default=None, help="reports.csv (references)")
    parser.add_argument("--config", type=Path, default=None, help="resolved generate.json")
    parser.add_argument("--out", required=True, type=Path, help="output predictions.csv")
    parser.add_argument("--split", default=None, help="override generate.split")
    parser.add_argument(
        "--shuffle-features",
        action="store_true",
        help="control: decode each case from another case's features",
    )
    parser.add_argument(
        "--shuffle-seed",
        type=int,
        default=None,
        help="seed of the shuffle (default: the config seed)",
    )
    add_runtime_arguments(parser)
    args = parser.parse_args(argv)
    apply_runtime_arguments(args)
    return run(args)

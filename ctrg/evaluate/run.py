"""``ctrg evaluate PREDICTIONS.csv --config evaluate.json [--ground-truth labels.csv ...] --out DIR``.

Reads predictions.csv (case_id, split, reference, prediction), keeps the configured splits,
and writes into DIR: metrics.json (headline numbers with bootstrap 95% CIs, protocol,
versions, data hash, clinical and collapse details), metrics.md, per_case.csv,
plots/per_label_f1.png, plots/length_histogram.png, resolved_config.json and summary.json.
``--compare OTHER.csv`` adds a paired bootstrap of this run against another predictions file
on the cases both hold.
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from ctrg.config import load_stage_config
from ctrg.evaluate.bootstrap import paired_bootstrap
from ctrg.evaluate.core import Evaluation, evaluate_pairs, statistic
from ctrg.evaluate.nlg import NLGScorer
from ctrg.evaluate.report import (
    metrics_document,
    per_case_frame,
    write_plots,
    write_table_and_cases,
)
from ctrg.runtime import atomic_write_json, setup_logging, write_stage_summary

log = logging.getLogger(__name__)

REQUIRED = ("case_id", "reference", "prediction")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="ctrg evaluate", description=__doc__)
    parser.add_argument("predictions", type=Path, help="predictions.csv of ctrg generate-features")
    parser.add_argument("--config", type=Path, default=None, help="resolved evaluate.json")
    parser.add_argument(
        "--ground-truth",
        action="append",
        default=[],
        type=Path,
        help="ground-truth label CSV (case_id + 18 CT-RATE labels); repeatable",
    )
    parser.add_argument(
        "--compare",
        type=Path,
        default=None,
        help="another predictions.csv: paired bootstrap of this run minus it",
    )
    parser.add_argument("--out", type=Path, required=True, help="output folder")
    return parser


def read_predictions(path: Path, splits: list[str]) -> pd.DataFrame:
    """Read predictions.csv and keep the configured splits (all when ``splits`` is empty)."""
    try:
        frame = pd.read_csv(path, dtype=str, keep_default_na=False)
    except (OSError, pd.errors.ParserError, UnicodeDecodeError) as err:
        raise ValueError(f"{path}: cannot read predictions CSV: {err}") from err
    missing = [c for c in REQUIRED if c not in frame.columns]
    if missing:
        raise ValueError(f"{path}: missing columns {missing}; has {list(frame.columns)}")
    if splits and "split" in frame.columns:
        kept = frame[frame["split"].isin(splits)]
        if kept.empty:
            found = sorted(frame["split"].unique())
            raise ValueError(f"{path}: no rows of splits {splits} (splits present: {found})")
        log.info("%s: %d of %d rows in splits %s", path, len(kept), len(frame), splits)
        frame = kept
    if frame.empty:
        raise ValueError(f"{path}: no rows")
    duplicated = frame["case_id"][frame["case_id"].duplicated()].tolist()
    if duplicated:
        raise ValueError(f"{path}: duplicated case ids {duplicated[:5]}")
    return frame.reset_index(drop=True)


def compare_runs(
    ev: Evaluation,
    other_path: Path,
    settings: dict[str, Any],
    seed: int,
    scorer: NLGScorer,
    ground_truth: list[Path] = (),
) -> dict[str, Any]:
    """Paired bootstrap of this evaluation minus the run in ``other_path`` (common cases),
    with clinical efficacy against ``ground_truth`` label files as well (``ce_gt_*``)."""
    other = read_predictions(other_path, settings["splits"])
    other = other[other["case_id"].isin(ev.case_ids)].set_index("case_id")
    common = [cid for cid in ev.case_ids if cid in other.index]
    if not common:
        raise ValueError(f"{other_path}: no case in common with the evaluated predictions")
    log.info("paired comparison on %d common cases", len(common))
    pos = {cid: i for i, cid in enumerate(ev.case_ids)}
    keep = np.asarray([pos[c] for c in common])
    this = evaluate_pairs(
        common,
        [ev.references[i] for i in keep],
        [ev.predictions[i] for i in keep],
        scorer,
        settings["normalise"],
        settings["labeller"],
        ground_truth,
    )
    that = evaluate_pairs(
        common,
        other.loc[common, "reference"].tolist(),
        other.loc[common, "prediction"].tolist(),
        scorer,
        settings["normalise"],
        settings["labeller"],
        ground_truth,
    )
    result = paired_bootstrap(
        statistic(this),
        statistic(that),
        len(common),
        settings["bootstrap_resamples"],
        seed,
        settings["confidence"],
    )
    return {"other": str(other_path), "n_cases": len(common), "metrics": result}


def score(
    args: argparse.Namespace, settings: dict[str, Any], seed: int, frame: pd.DataFrame
) -> tuple[Evaluation, dict[str, Any]]:
    """Score one prediction set: the metrics document, protocol variants and comparison.

    Args:
        args: the parsed command line (``ground_truth``, ``predictions``, ``compare``).
        settings: the ``evaluate`` section of the stage config.
        seed: the bootstrap seed.
        frame: the predictions of the evaluated splits.

    Returns:
        the per-case evaluation and the ``metrics.json`` document.
    """
    with NLGScorer() as scorer:
        ev = evaluate_pairs(
            frame["case_id"],
            frame["reference"],
            frame["prediction"],
            scorer,
            settings["normalise"],
            settings["labeller"],
            args.ground_truth,
        )
        metrics = metrics_document(
            ev,
            args.predictions,
            settings["bootstrap_resamples"],
            seed,
            settings["confidence"],
            settings["rare_prevalence"],
        )
        metrics["protocol_variants"] = {}
        for mode in settings["also_normalise"]:
            variant = evaluate_pairs(
                ev.case_ids, ev.references, ev.predictions, scorer, mode, labeller="off"
            )
            metrics["protocol_variants"][mode] = {
                "corpus": variant.nlg.corpus,
                "per_sample_mean": variant.nlg.per_sample_mean,
            }
        if args.compare is not None:
            metrics["comparison"] = compare_runs(
                ev, args.compare, settings, seed, scorer, args.ground_truth
            )
    return ev, metrics


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    setup_logging()
    payload = load_stage_config(args.config, "evaluate")
    settings, seed = payload["evaluate"], int(payload["seed"])
    frame = read_predictions(args.predictions, settings["splits"])
    ev, metrics = score(args, settings, seed, frame)
    splits = frame["split"].tolist() if "split" in frame.columns else None
    atomic_write_json(args.out / "metrics.json", metrics)
    write_table_and_cases(args.out, metrics, per_case_frame(ev, splits))
    plots = write_plots(ev, metrics, args.out / "plots")
    summary = {
        "n_cases": ev.n,
        "headline": metrics["headline"],
        "plots": plots,
        "predictions": str(args.predictions),
    }
    write_stage_summary(args.out, "evaluate", payload, summary)
    log.info(
        "evaluate: %d cases -> %s (%s)",
        ev.n,
        args.out,
        " ".join(f"{k}={metrics[k]:.4f}" for k in metrics["headline"]),
    )
    return 0

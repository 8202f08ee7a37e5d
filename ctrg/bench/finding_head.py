"""How well the frozen finding head reads the labels, and how faithfully reports follow it.

``ctrg bench finding-head --features results/<run>/features/index.csv --ground-truth
results/phantom/labels.csv [--predictions results/<run>/eval/predictions.csv] --out-json J``

Per split of the feature cache: micro-F1 of the head's decisions (logit > 0) and mean AUC
of its logits against the ground-truth labels (``finding_metrics``). With predictions, also
the micro-F1 of the labels extracted from the generated reports against the ground truth
and against the head's decisions on the same cases: how much of what the head says the
decoder puts into words (1.0 = every report names exactly the head's findings).
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path
from typing import Any

import pandas as pd
import torch

from ctrg.anatomy import CTRATE_LABELS
from ctrg.evaluate.clinical import (
    case_counts,
    load_ground_truth,
    run_labeller,
    scores_from_counts,
)
from ctrg.features.cache import load_case_features, read_index
from ctrg.models.finding_head import finding_metrics
from ctrg.runtime import atomic_write_json, setup_logging

log = logging.getLogger(__name__)


def head_logits(index: pd.DataFrame) -> torch.Tensor:
    """(N, L) finding logits of every case of a features index (paths resolved).

    Raises:
        MissingFeatures: naming the file when a case has no ``finding_logits``.
    """
    return torch.stack(
        [load_case_features(p, keys=("finding_logits",))["finding_logits"] for p in index["path"]]
    )


def micro_f1(predicted: torch.Tensor, truth: torch.Tensor) -> float:
    """Micro-F1 of two (N, L) 0/1 matrices, as ``ctrg evaluate`` scores it."""
    counts = case_counts(truth.long().numpy(), predicted.long().numpy()).sum(0)
    return float(scores_from_counts(counts)["micro_f1"])


def report_agreement(
    predictions: Path, index: pd.DataFrame, logits: torch.Tensor, truth_path: Path
) -> dict[str, Any]:
    """Labels of generated reports vs the ground truth and vs the head (same cases)."""
    frame = pd.read_csv(predictions, keep_default_na=False)
    position = {case: i for i, case in enumerate(index["case_id"])}
    frame = frame[frame["case_id"].isin(position)].reset_index(drop=True)
    labels = run_labeller(frame["prediction"].tolist())
    said = torch.tensor([[row[name] for name in CTRATE_LABELS] for row in labels]).float()
    head = (logits[[position[c] for c in frame["case_id"]]] > 0).float()
    truth, rows = load_ground_truth(truth_path, list(frame["case_id"]), CTRATE_LABELS)
    keep = torch.as_tensor(rows)
    truth_t = torch.as_tensor(truth, dtype=torch.float32)
    return {
        "cases": len(frame),
        "reports_vs_truth_micro_f1": micro_f1(said[keep], truth_t),
        "head_vs_truth_micro_f1": micro_f1(head[keep], truth_t),
        "reports_vs_head_micro_f1": micro_f1(said, head),
        "positives": {"reports": int(said.sum()), "head": int(head.sum())},
    }


def run(args: argparse.Namespace) -> dict[str, Any]:
    index = read_index(args.features)
    logits = head_logits(index)
    splits: dict[str, Any] = {}
    for split in sorted(index["split"].dropna().unique()):
        mask = (index["split"] == split).to_numpy(copy=True)
        chosen = torch.from_numpy(mask)
        cases = list(index.loc[mask, "case_id"])
        truth, rows = load_ground_truth(args.ground_truth, cases, CTRATE_LABELS)
        scores = finding_metrics(
            logits[chosen][torch.as_tensor(rows)],
            torch.as_tensor(truth, dtype=torch.float32),
        )
        splits[split] = {"cases": len(rows), **scores}
        log.info(
            "%s (%d cases): head micro-F1 %.3f, mean AUC %s",
            split,
            len(rows),
            scores["finding_micro_f1"],
            f"{scores['finding_auc']:.3f}" if "finding_auc" in scores else "n/a",
        )
    result: dict[str, Any] = {"features": str(args.features), "splits": splits}
    if args.predictions:
        result["reports"] = report_agreement(args.predictions, index, logits, args.ground_truth)
        log.info("reports: %s", result["reports"])
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="ctrg bench finding-head", description=__doc__)
    parser.add_argument("--features", required=True, type=Path, help="features index.csv")
    parser.add_argument("--ground-truth", required=True, type=Path, help="ground-truth labels")
    parser.add_argument("--predictions", type=Path, default=None, help="predictions.csv")
    parser.add_argument("--out-json", type=Path, default=None)
    args = parser.parse_args(argv)
    setup_logging()
    result = run(args)
    if args.out_json:
        atomic_write_json(args.out_json, result)
    return 0

"""``ctrg bench probe``: how linearly the frozen stage-1 features read the findings.

Stage 1 is judged by retrieval, stage 2 by its reports; between them sit the frozen
features. This benchmark fits one ridge regression per label from a run's frozen features
of the training cases to their 0/1 labels (features standardised on the training cases; the
ridge penalty chosen per label from a grid by exact leave-one-out error on the training
cases) and scores the held-out cases (default: valid + test) by ROC AUC per label. Labels
with no positive or no negative held-out case are left out of the mean.

``--tokens``: ``observation`` (the S observation tokens, flattened), ``selected`` (the mean
of each structure's selected patch tokens) or ``both``. Prints one line and writes JSON
(``--out-json``). Nothing is asserted.
"""

from __future__ import annotations

import argparse
import logging
from typing import Any

import numpy as np
import pandas as pd
import torch

from ctrg.features.cache import load_case_features, read_index
from ctrg.runtime import atomic_write_json, setup_logging

log = logging.getLogger(__name__)

PENALTIES = (1e-1, 1.0, 1e1, 1e2, 1e3, 1e4, 1e5)


def case_vector(features: dict[str, torch.Tensor], tokens: str) -> torch.Tensor:
    """One case's probe input (S*D or 2*S*D,) from its feature tensors."""
    parts = []
    if tokens in ("observation", "both"):
        parts.append(features["observation_tokens"].float().flatten())  # (S*D,)
    if tokens in ("selected", "both"):
        parts.append(features["selected_patch_tokens"].float().mean(1).flatten())  # (S*D,)
    if not parts:
        raise ValueError(f"tokens must be observation, selected or both, got {tokens!r}")
    return torch.cat(parts)


def ridge_loo(x: torch.Tensor, y: torch.Tensor, penalties: tuple[float, ...] = PENALTIES):
    """Ridge fits of every column of y, each with the penalty of least leave-one-out error.

    Args:
        x: (N, F) inputs, centred (standardised) on these N cases. y: (N, L) targets.

    Returns:
        (weights (F, L), intercepts (L,), chosen penalties (L,), leave-one-out mean squared
        errors (P, L) of every penalty).
    """
    y_mean = y.double().mean(0)
    u, s, vt = torch.linalg.svd(x.double(), full_matrices=False)  # x = U diag(s) V^T
    uty = u.T @ (y.double() - y_mean)  # (R, L)
    errors, fits = [], []
    for penalty in penalties:
        shrink = s**2 / (s**2 + penalty)  # (R,)
        fitted = u @ (shrink[:, None] * uty)  # (N, L)
        leverage = (u**2 @ shrink) + 1 / len(x)  # hat diagonal, intercept included
        residual = (y.double() - y_mean - fitted) / (1 - leverage)[:, None]
        errors.append(residual.pow(2).mean(0))
        fits.append(vt.T @ ((s / (s**2 + penalty))[:, None] * uty))  # (F, L)
    errors_t = torch.stack(errors)  # (P, L)
    best = errors_t.argmin(0)  # (L,)
    weights = torch.stack(fits)[best, :, torch.arange(y.shape[1])].T  # (F, L)
    chosen = torch.tensor(penalties, dtype=torch.float32)[best]
    return weights.float(), y_mean.float(), chosen, errors_t.float()


def roc_auc(score: np.ndarray, label: np.ndarray) -> float:
    """Mann-Whitney AUC with tied scores averaged; NaN without both classes."""
    positive, negative = int(label.sum()), int((1 - label).sum())
    if positive == 0 or negative == 0:
        return float("nan")
    ranks = pd.Series(score).rank(method="average").to_numpy()
    return float((ranks[label == 1].sum() - positive * (positive + 1) / 2) / (positive * negative))


def probe(
    train_x: torch.Tensor, train_y: torch.Tensor, test_x: torch.Tensor, test_y: torch.Tensor
) -> tuple[list[float], list[float]]:
    """Per-label held-out AUC and chosen penalty (module doc)."""
    mean, std = train_x.mean(0), train_x.std(0).clamp_min(1e-6)
    weights, intercept, chosen, _ = ridge_loo((train_x - mean) / std, train_y)
    scores = ((test_x - mean) / std) @ weights + intercept  # (M, L)
    aucs = [
        roc_auc(scores[:, i].numpy(), test_y[:, i].numpy().astype(int))
        for i in range(test_y.shape[1])
    ]
    return aucs, chosen.tolist()


def load_split(index: pd.DataFrame, labels: pd.DataFrame, splits: list[str], tokens: str):
    """(inputs (N, F), labels (N, L)) of the cases of ``splits`` that have labels."""
    rows = index[index["split"].isin(splits) & index["case_id"].isin(labels.index)]
    if rows.empty:
        raise ValueError(f"no labelled cases in splits {splits}")
    x = torch.stack([case_vector(load_case_features(p), tokens) for p in rows["path"]])
    y = torch.tensor(labels.loc[rows["case_id"]].to_numpy(dtype=np.float32))
    return x, y


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="ctrg bench probe", description=__doc__)
    parser.add_argument("--features", required=True, help="results/<run>/features/index.csv")
    parser.add_argument("--labels", required=True, help="case_id + one 0/1 column per label")
    parser.add_argument(
        "--tokens", default="observation", choices=["observation", "selected", "both"]
    )
    parser.add_argument("--train-split", default="train")
    parser.add_argument("--eval-splits", nargs="+", default=["valid", "test"])
    parser.add_argument("--out-json", default="results/bench/probe.json")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    """CLI entry point of ``ctrg bench probe``."""
    args = parse_args(argv)
    setup_logging()
    index = read_index(args.features)
    labels = pd.read_csv(args.labels, dtype={"case_id": str}).set_index("case_id")
    train = load_split(index, labels, [args.train_split], args.tokens)
    held_out = load_split(index, labels, args.eval_splits, args.tokens)
    aucs, penalties = probe(*train, *held_out)
    defined = [a for a in aucs if not np.isnan(a)]
    result: dict[str, Any] = {
        "features": args.features, "labels": args.labels, "tokens": args.tokens,
        "train_cases": len(train[0]), "eval_cases": len(held_out[0]),
        "eval_splits": args.eval_splits, "inputs": int(train[0].shape[1]),
        "mean_auc": float(np.mean(defined)) if defined else float("nan"),
        "per_label": {
            name: {"auc": auc, "penalty": pen}
            for name, auc, pen in zip(labels.columns, aucs, penalties)
        },
    }  # fmt: skip
    atomic_write_json(args.out_json, result)
    print(
        f"{args.features}: {args.tokens} tokens ({result['inputs']} inputs), "
        f"{result['train_cases']} -> {result['eval_cases']} cases, mean AUC "
        f"{result['mean_auc']:.3f} over {len(defined)} labels"
    )
    return 0

"""Baselines that ignore the method: the most frequent training report, and nearest-neighbour
retrieval of a training report by a global image embedding.

``ctrg bench baseline most_frequent|nn_retrieval --volumes results/volumes/manifest.csv
--reports results/reports/reports.csv --out predictions.csv`` writes the same columns as
``ctrg generate-features`` (case_id, split, reference, prediction) so ``ctrg evaluate`` scores
both alike.
"""

from __future__ import annotations

import argparse
import logging
from collections import Counter
from pathlib import Path

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F

from ctrg.runtime import atomic_write_csv, setup_logging

log = logging.getLogger(__name__)

EMBEDDING_GRID = (6, 12, 12)
"""Average-pooling grid of the global image embedding (D, H, W) -> 864 numbers per volume."""


def most_frequent_report(train_reports: list[str]) -> str:
    """The most frequent training report (ties: the first one seen)."""
    if not train_reports:
        raise ValueError("no training reports to choose from")
    return Counter(train_reports).most_common(1)[0][0]


def global_embedding(volume: np.ndarray) -> torch.Tensor:
    """Average-pool a (D, H, W) volume onto ``EMBEDDING_GRID``; L2-normalised, shape (864,)."""
    tensor = torch.as_tensor(np.asarray(volume, dtype=np.float32))[None, None]  # (1, 1, D, H, W)
    pooled = F.adaptive_avg_pool3d(tensor, EMBEDDING_GRID).flatten()
    pooled = pooled - pooled.mean()
    return F.normalize(pooled, dim=0)


def nearest_neighbours(query: torch.Tensor, keys: torch.Tensor) -> torch.Tensor:
    """Index of the most cosine-similar key for each query: (Q, E), (K, E) -> (Q,)."""
    return (query @ keys.T).argmax(dim=1)


def _embeddings(manifest: pd.DataFrame, root: Path) -> torch.Tensor:
    rows = [global_embedding(np.load(root / path, mmap_mode="r")) for path in manifest["path"]]
    return torch.stack(rows)  # (N, E)


def predict(kind: str, volumes_csv: Path, reports_csv: Path, split: str) -> pd.DataFrame:
    """Baseline predictions for every case of ``split`` that has a volume and a report."""
    volumes = pd.read_csv(volumes_csv)
    reports = pd.read_csv(reports_csv).set_index("case_id")
    cases = volumes[volumes["case_id"].isin(reports.index)]
    train = cases[cases["split"] == "train"].reset_index(drop=True)
    test = cases[cases["split"] == split].reset_index(drop=True)
    if train.empty or test.empty:
        raise ValueError(
            f"{volumes_csv}: need train and {split} cases, got {len(train)}/{len(test)}"
        )
    train_reports = [str(reports.at[c, "report"]) for c in train["case_id"]]
    if kind == "most_frequent":
        predictions = [most_frequent_report(train_reports)] * len(test)
    elif kind == "nn_retrieval":
        root = volumes_csv.parent
        nearest = nearest_neighbours(_embeddings(test, root), _embeddings(train, root))
        predictions = [train_reports[i] for i in nearest.tolist()]
    else:
        raise ValueError(f"unknown baseline {kind!r}")
    return pd.DataFrame(
        {
            "case_id": test["case_id"],
            "split": split,
            "reference": [str(reports.at[c, "report"]) for c in test["case_id"]],
            "prediction": predictions,
        }
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="ctrg bench baseline", description=__doc__)
    parser.add_argument("kind", choices=["most_frequent", "nn_retrieval"])
    parser.add_argument("--volumes", type=Path, required=True, help="results/volumes/manifest.csv")
    parser.add_argument("--reports", type=Path, required=True, help="results/reports/reports.csv")
    parser.add_argument("--split", default="test")
    parser.add_argument("--out", type=Path, required=True, help="predictions CSV")
    args = parser.parse_args(argv)
    setup_logging()
    frame = predict(args.kind, args.volumes, args.reports, args.split)
    atomic_write_csv(args.out, frame)
    distinct = frame["prediction"].nunique()
    log.info(
        "%s: %d %s predictions (%d distinct) -> %s",
        args.kind,
        len(frame),
        args.split,
        distinct,
        args.out,
    )
    return 0

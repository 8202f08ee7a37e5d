"""How much of the 18 labels a supervised image classifier reads from the training volumes.

Not the method, and not a report generator: a reference for the clinical-F1 goal. A small
3D CNN (``LabelCNN``) is trained with binary cross-entropy directly on the labels that
``ctrg label`` extracted from the *training* reports, on the same model-ready volumes the
method sees (light shift augmentation); the epoch and the one probability threshold are
chosen on the validation split, and the test split is scored against the ground-truth
labels (micro/macro F1 as ``ctrg evaluate`` computes them, plus per-label AUC). If this
supervised reader stays far below a clinical-F1 target, the target is beyond what the
volumes and the number of training cases support for models of this size, whatever the
report decoder does::

    ctrg bench label-ceiling --volumes results/volumes/manifest.csv \\
        --labels results/reports/labels.csv --ground-truth results/phantom/labels.csv \\
        --epochs 40 --out-json results/bench/label_ceiling.json
"""

from __future__ import annotations

import argparse
import logging
import platform
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from tqdm import tqdm

from ctrg.anatomy import CTRATE_LABELS
from ctrg.data.dataset import read_volume_manifest
from ctrg.evaluate.clinical import case_counts, load_ground_truth, scores_from_counts
from ctrg.models.finding_head import finding_metrics, positive_weights
from ctrg.runtime import atomic_write_json, seed_everything, setup_logging

log = logging.getLogger(__name__)


@dataclass
class CeilingConfig:
    """Training settings of the supervised reader."""

    epochs: int = 40
    batch_size: int = 8
    lr: float = 2e-3
    weight_decay: float = 1e-2
    shift: int = 2  # voxels of random circular shift per axis (training only)
    pos_weight_cap: float = 10.0
    seed: int = 0
    pool: int = 1  # average-pool the volumes in-plane (H, W) by this factor first (1 = full grid)


def _block(cin: int, cout: int) -> nn.Module:
    return nn.Sequential(
        nn.Conv3d(cin, cout, 3, padding=1), nn.BatchNorm3d(cout), nn.ReLU(), nn.MaxPool3d(2)
    )


class LabelCNN(nn.Module):
    """Strided stem + 4 conv blocks + global max pool + linear: (B, 1, D, H, W) -> (B, L)."""

    def __init__(self, num_labels: int, width: int = 16) -> None:
        super().__init__()
        w = width
        self.features = nn.Sequential(
            nn.Conv3d(1, w, 3, stride=2, padding=1),
            nn.ReLU(),
            _block(w, 2 * w),
            _block(2 * w, 4 * w),
            _block(4 * w, 6 * w),
            _block(6 * w, 8 * w),
            nn.AdaptiveMaxPool3d(1),
            nn.Flatten(),
        )
        self.head = nn.Sequential(nn.Dropout(0.2), nn.Linear(8 * w, num_labels))

    def forward(self, volume: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(volume))  # (B, L)


def load_split(manifest: str, split: str, labels: str) -> tuple[torch.Tensor, torch.Tensor, list]:
    """Volumes (N, 1, D, H, W) float32, labels (N, L) of one split, and their case ids.

    Raises:
        ValueError: naming the manifest when the split is empty.
    """
    frame = read_volume_manifest(manifest, split)
    if frame.empty:
        raise ValueError(f"{manifest}: no {split!r} cases")
    values, rows = load_ground_truth(labels, list(frame["case_id"]), CTRATE_LABELS)
    frame = frame.iloc[rows].reset_index(drop=True)
    volumes = np.stack([np.load(p).astype(np.float32) for p in frame["path"]])
    return (
        torch.from_numpy(volumes)[:, None],
        torch.as_tensor(values, dtype=torch.float32),
        list(frame["case_id"]),
    )


def pooled(split: tuple, factor: int) -> tuple:
    """The split with its volumes (N, 1, D, H, W) average-pooled in-plane by ``factor``."""
    if factor == 1:
        return split
    return (F.avg_pool3d(split[0], (1, factor, factor)), *split[1:])


@torch.no_grad()
def predict(model: nn.Module, volumes: torch.Tensor, batch_size: int = 16) -> torch.Tensor:
    """Sigmoid probabilities (N, L)."""
    model.eval()
    parts = [model(volumes[i : i + batch_size]) for i in range(0, len(volumes), batch_size)]
    return torch.sigmoid(torch.cat(parts))


def f1_scores(probabilities: torch.Tensor, truth: torch.Tensor, threshold: float) -> dict:
    """Micro- and macro-F1 as ``ctrg evaluate`` scores clinical efficacy (a label without
    positives or predictions scores 0)."""
    predicted = (probabilities > threshold).long().numpy()
    scores = scores_from_counts(case_counts(truth.long().numpy(), predicted).sum(0))
    return {"micro_f1": float(scores["micro_f1"]), "macro_f1": float(scores["macro_f1"])}


def best_threshold(probabilities: torch.Tensor, truth: torch.Tensor) -> tuple[float, float]:
    """(threshold in 0.05..0.95 with the highest micro-F1, that micro-F1)."""
    grid = [round(t, 2) for t in np.arange(0.05, 0.951, 0.05)]
    scores = [f1_scores(probabilities, truth, t)["micro_f1"] for t in grid]
    return grid[int(np.argmax(scores))], float(max(scores))


def train(
    cfg: CeilingConfig, train_set: tuple, valid_set: tuple
) -> tuple[nn.Module, list[dict[str, float]]]:
    """Train; keep the weights of the epoch with the best validation micro-F1."""
    volumes, labels = train_set[0], train_set[1]
    model = LabelCNN(labels.shape[1])
    loss_fn_weight = positive_weights(labels, cfg.pos_weight_cap)
    steps = cfg.epochs * max(len(volumes) // cfg.batch_size, 1)
    optimiser = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    schedule = torch.optim.lr_scheduler.OneCycleLR(optimiser, cfg.lr, total_steps=steps)
    generator = torch.Generator().manual_seed(cfg.seed)
    history, best, best_state = [], -1.0, None
    for epoch in tqdm(range(cfg.epochs), desc="label-ceiling", unit="epoch"):
        model.train()
        order = torch.randperm(len(volumes), generator=generator)
        for start in range(0, len(volumes) - cfg.batch_size + 1, cfg.batch_size):
            index = order[start : start + cfg.batch_size]
            shifts = torch.randint(-cfg.shift, cfg.shift + 1, (3,), generator=generator)
            batch = torch.roll(volumes[index], shifts=tuple(shifts.tolist()), dims=(2, 3, 4))
            loss = F.binary_cross_entropy_with_logits(
                model(batch), labels[index], pos_weight=loss_fn_weight
            )
            optimiser.zero_grad()
            loss.backward()
            optimiser.step()
            schedule.step()
        threshold, micro = best_threshold(predict(model, valid_set[0]), valid_set[1])
        history.append({"epoch": epoch, "loss": loss.item(), "valid_micro_f1": micro})
        log.info("epoch %d: loss %.3f, validation micro-F1 %.3f", epoch, loss.item(), micro)
        if micro > best:
            best, best_state = micro, {k: v.clone() for k, v in model.state_dict().items()}
    model.load_state_dict(best_state)
    return model, history


def run(args: argparse.Namespace) -> dict[str, Any]:
    """Train, choose on validation, score test; returns the JSON summary."""
    cfg = CeilingConfig(epochs=args.epochs, seed=args.seed, pool=args.pool)
    seed_everything(cfg.seed)
    started = time.perf_counter()
    train_set = pooled(load_split(args.volumes, "train", args.labels), cfg.pool)
    valid_set = pooled(load_split(args.volumes, "valid", args.labels), cfg.pool)
    test_volumes, _, test_ids = pooled(load_split(args.volumes, "test", args.labels), cfg.pool)
    truth, rows = load_ground_truth(args.ground_truth, test_ids, CTRATE_LABELS)
    model, history = train(cfg, train_set, valid_set)
    threshold, valid_micro = best_threshold(predict(model, valid_set[0]), valid_set[1])
    probabilities = predict(model, test_volumes)[torch.as_tensor(rows)]
    truth_t = torch.as_tensor(truth, dtype=torch.float32)
    logits = torch.logit(probabilities.clamp(1e-6, 1 - 1e-6))
    per_label = _per_label_auc(logits, truth_t)
    return {
        "benchmark": "label-ceiling",
        "config": asdict(cfg),
        "train_cases": len(train_set[0]),
        "valid_cases": len(valid_set[0]),
        "test_cases": len(rows),
        "best_epoch": int(np.argmax([h["valid_micro_f1"] for h in history])),
        "threshold": threshold,
        "valid_micro_f1": valid_micro,
        "test": {**f1_scores(probabilities, truth_t, threshold), "mean_auc": _mean(per_label)},
        "test_auc_per_label": per_label,
        "history": history,
        "seconds": time.perf_counter() - started,
        "machine": {
            "cores": torch.get_num_threads(),
            "torch": torch.__version__,
            "platform": platform.platform(),
        },
    }


def _per_label_auc(logits: torch.Tensor, truth: torch.Tensor) -> dict[str, float]:
    out = {}
    for j, name in enumerate(CTRATE_LABELS):
        scored = finding_metrics(logits[:, j : j + 1], truth[:, j : j + 1])
        if "finding_auc" in scored:
            out[name] = round(scored["finding_auc"], 4)
    return out


def _mean(values: dict[str, float]) -> float | None:
    return float(np.mean(list(values.values()))) if values else None


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="ctrg bench label-ceiling", description=__doc__)
    parser.add_argument("--volumes", required=True, help="results/volumes/manifest.csv")
    parser.add_argument("--labels", required=True, help="report-derived labels (ctrg label)")
    parser.add_argument("--ground-truth", required=True, help="ground-truth labels of test")
    parser.add_argument("--epochs", type=int, default=CeilingConfig.epochs)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--pool",
        type=int,
        default=CeilingConfig.pool,
        help="average-pool the volumes in-plane by this factor first (a coarser, faster reader)",
    )
    parser.add_argument("--out-json", type=Path, default=None)
    args = parser.parse_args(argv)
    setup_logging()
    result = run(args)
    test = result["test"]
    log.info(
        "supervised reader, test (%d cases): micro-F1 %.3f, macro-F1 %.3f, mean AUC %s; "
        "threshold %.2f and epoch %d chosen on validation; %.0f s",
        result["test_cases"],
        test["micro_f1"],
        test["macro_f1"],
        "n/a" if test["mean_auc"] is None else f"{test['mean_auc']:.3f}",
        result["threshold"],
        result["best_epoch"],
        result["seconds"],
    )
    if args.out_json:
        atomic_write_json(args.out_json, result)
    return 0

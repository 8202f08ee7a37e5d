"""``ctrg bench stage1-oracle``: is the stage-1 objective learnable on this data at all?

Replaces the image encoder by an *oracle*: a small MLP that reads each case's label vector
(ground truth or report-derived, e.g. ``results/phantom/labels.csv``) and emits the S
observation tokens. Everything else is the real stage-1 objective: the cached frozen
structure texts, the text projection, the structure-wise soft-target loss and the negative
queue (the real ``Stage1Model``), with the settings of a resolved ``stage1.json``; the
text projection is not centred (``text_centering`` is ignored). The validation retrieval it reaches
is what a perfect label reader could get from this objective and these texts; stage 1 at
chance while the oracle is well above it locates the problem in the image encoder.

``--shuffle-labels`` is the control: labels are permuted across cases, so the oracle
carries no information and retrieval must stay at chance.

Prints the retrieval curve and writes it as JSON (``--out-json``). Nothing is asserted.
"""

from __future__ import annotations

import argparse
import logging
from dataclasses import dataclass
from types import SimpleNamespace
from typing import Any

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from torch import nn

from ctrg.anatomy import CHEST_STRUCTURES
from ctrg.config import load_stage_config
from ctrg.data.dataset import read_volume_manifest
from ctrg.losses import LossConfig
from ctrg.models.text_cache import load_text_cache
from ctrg.runtime import atomic_write_json, seed_everything, setup_logging
from ctrg.train.retrieval import retrieval_metrics
from ctrg.train.stage1 import Stage1Model

log = logging.getLogger(__name__)


@dataclass
class OracleConfig:
    """The parts of ``ObserverConfig`` that ``Stage1Model`` reads."""

    num_queries: int
    text_dim: int
    queries: str = "structure"


class LabelOracle(nn.Module):
    """Stands in for ``StructureObserver`` inside ``Stage1Model``: labels, not volumes.

    ``encode_volume(labels (B, L))`` gives L2-normalised observation embeddings (B, S, E);
    ``encode_text`` projects frozen text features like the observer (without centring).

    Args:
        num_labels: L. num_structures: S. text_dim: H. embed_dim: E. width: MLP width.
    """

    def __init__(
        self, num_labels: int, num_structures: int, text_dim: int, embed_dim: int, width: int
    ) -> None:
        super().__init__()
        self.config = OracleConfig(num_structures, text_dim)
        self.width = width
        self.mlp = nn.Sequential(
            nn.Linear(num_labels, width), nn.GELU(), nn.Linear(width, num_structures * width)
        )
        self.observation_proj = nn.Linear(width, embed_dim, bias=False)
        self.text_proj = nn.Linear(text_dim, embed_dim, bias=False)

    def encode_volume(self, labels: torch.Tensor) -> SimpleNamespace:
        """(B, L) -> ``observation_embeddings`` (B, S, E)."""
        tokens = self.mlp(labels).view(len(labels), self.config.num_queries, self.width)
        return SimpleNamespace(
            observation_embeddings=F.normalize(self.observation_proj(tokens), dim=-1)
        )

    def encode_text(
        self, features: torch.Tensor, structures: torch.Tensor | None = None
    ) -> torch.Tensor:
        """(..., H) -> (..., E); ``structures`` is accepted for the observer's signature."""
        return F.normalize(self.text_proj(features.float()), dim=-1)


def finding_table(findings_csv: str) -> pd.DataFrame:
    """0/1 table (case_id index) with one column per finding, side and device kind of a
    phantom ``findings.csv``: everything the templated phantom reports name. Cases without
    a row get zeros only if they appear in another table; callers join on ``case_id``."""
    rows = pd.read_csv(findings_csv, dtype={"case_id": str}, keep_default_na=False)
    kind = rows["location"].where(rows["label"] == "Medical material", "")
    keys = rows["label"] + "|" + rows["side"] + "|" + kind
    return pd.crosstab(rows["case_id"], keys).clip(upper=1)


def read_labels(labels_csv: str | None, findings_csv: str | None, cases: list[str]) -> pd.DataFrame:
    """The oracle's input table over ``cases``: a labels CSV, or a phantom findings table."""
    if findings_csv:
        return finding_table(findings_csv).reindex(cases, fill_value=0)
    if not labels_csv:
        raise ValueError("give --labels or --findings")
    return pd.read_csv(labels_csv, dtype={"case_id": str}).set_index("case_id")


def split_arrays(
    manifest: str, labels: pd.DataFrame, cache: Any, split: str
) -> tuple[torch.Tensor, torch.Tensor]:
    """Label vectors (N, L) and frozen text features (N, S, H) of one split's cases."""
    frame = read_volume_manifest(manifest, split)
    index = cache.index
    ids = [c for c in frame["case_id"] if c in index and c in labels.index]
    if len(ids) < 2:
        raise ValueError(f"{manifest}: fewer than 2 {split!r} cases with labels and texts")
    values = torch.tensor(labels.loc[ids].to_numpy(dtype=np.float32))
    return values, cache.embeddings[[index[c] for c in ids]].float()


def train_oracle(
    train: tuple[torch.Tensor, torch.Tensor],
    valid: tuple[torch.Tensor, torch.Tensor],
    section: dict[str, Any],
    steps: int,
    eval_every: int,
) -> list[dict[str, float]]:
    """Train the oracle inside the real ``Stage1Model`` (loss + queue); returns the curve."""
    (train_labels, train_texts), (valid_labels, valid_texts) = train, valid
    s, h = train_texts.shape[1:]
    oracle = LabelOracle(train_labels.shape[1], s, h, section["model"]["embed_dim"], 256)
    queue = section["queue"]
    model = Stage1Model(
        oracle,
        LossConfig(**section["loss"]),
        queue["kind"],
        queue["size"],
        queue.get("skip_batch_texts", False),
    )
    optim = section["optim"]
    optimizer = torch.optim.AdamW(model.parameters(), lr=optim["lr"], betas=optim["betas"])
    batch = section["loop"]["batch_size"]
    generator = torch.Generator().manual_seed(0)
    curve = []
    for step in range(1, steps + 1):
        rows = torch.randint(len(train_labels), (batch,), generator=generator)
        texts = train_texts[rows]  # (B, S, H); report features are unused with S queries
        loss, _ = model(train_labels[rows], texts, texts[:, 0])
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        if step % eval_every == 0 or step == steps:
            with torch.no_grad():
                metrics = retrieval_metrics(
                    oracle.encode_volume(valid_labels).observation_embeddings,
                    oracle.encode_text(valid_texts),
                    list(CHEST_STRUCTURES)[:s],
                )
            curve.append({"step": step, "loss": float(loss.detach()), **metrics})
            log.info(
                "step %d: retrieval top1 %.3f top5 %.3f (chance %.3f)",
                step,
                metrics["retrieval_top1"],
                metrics["retrieval_top5"],
                metrics["retrieval_top1_chance"],
            )
    return curve


def main(argv: list[str] | None = None) -> int:
    """CLI entry point of ``ctrg bench stage1-oracle``."""
    parser = argparse.ArgumentParser(prog="ctrg bench stage1-oracle", description=__doc__)
    parser.add_argument("--volumes", required=True, help="results/volumes/manifest.csv")
    parser.add_argument("--text-cache", required=True, help="embeddings.safetensors")
    parser.add_argument("--labels", default=None, help="labels CSV (case_id + label columns)")
    parser.add_argument(
        "--findings",
        default=None,
        help="instead of --labels: a phantom findings.csv (one input per finding and side)",
    )
    parser.add_argument("--config", default=None, help="resolved stage1.json (default: schema)")
    parser.add_argument("--steps", type=int, default=1200)
    parser.add_argument("--eval-every", type=int, default=300)
    parser.add_argument("--shuffle-labels", action="store_true", help="the no-information control")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out-json", default="results/bench/stage1_oracle.json")
    args = parser.parse_args(argv)
    setup_logging()
    seed_everything(args.seed)
    section = load_stage_config(args.config, "stage1")["stage1"]
    data = section["data"]
    cache = load_text_cache(args.text_cache)
    labels = read_labels(args.labels, args.findings, list(cache.case_ids))
    train = split_arrays(args.volumes, labels, cache, data["train_split"])
    valid = split_arrays(args.volumes, labels, cache, data["valid_split"])
    if args.shuffle_labels:
        generator = torch.Generator().manual_seed(args.seed)
        train = (train[0][torch.randperm(len(train[0]), generator=generator)], train[1])
        valid = (valid[0][torch.randperm(len(valid[0]), generator=generator)], valid[1])
    log.info("%d training and %d validation cases", len(train[0]), len(valid[0]))
    curve = train_oracle(train, valid, section, args.steps, args.eval_every)
    result = {
        "train_cases": len(train[0]),
        "valid_cases": len(valid[0]),
        "shuffle_labels": args.shuffle_labels,
        "labels": args.labels or args.findings,
        "inputs": int(train[0].shape[1]),
        "curve": curve,
    }
    atomic_write_json(args.out_json, result)
    last = curve[-1]
    print(
        f"oracle retrieval top-1 {last['retrieval_top1']:.3f}, top-5 {last['retrieval_top5']:.3f}"
        f" (chance {last['retrieval_top1_chance']:.3f}) after {last['step']} steps"
        f"{' [shuffled labels]' if args.shuffle_labels else ''}"
    )
    return 0

"""``ctrg bench soft-targets``: where the soft pseudo targets of a trained stage 1 put their mass.

The soft target of ``ctrg.losses`` is softmax_k(t . k / tau) over every key of a step (the
batch's structure texts, then the negative queue). Its point is to stop pushing away texts
that say the same thing as the positive. This benchmark takes a trained stage 1 (exported
``model.pt`` for the text projection, the training ``checkpoint.pt`` for its final queue),
draws random training batches, builds the keys exactly as a training step does, and splits
each positive's soft target into four shares:

- ``own``: the positive key itself;
- ``identical``: other keys of the same structure whose frozen text is identical (cosine
  > 1 - 1e-5), e.g. the queue's copy of the case's own sentence or another patient's
  default sentence;
- ``similar``: other keys of the same structure (different text);
- ``other_structures``: keys of the other structures.

Only ``similar`` is what one-hot targets treat differently in kind: the one-hot target
already keeps ``own`` and pushes ``identical`` away, and the soft target moves
``alpha * (identical + similar)`` of the whole target off the positive. Prints a table per
structure and writes JSON (``--out-json``). Nothing is asserted.
"""

from __future__ import annotations

import argparse
import json
import logging
from typing import Any

import torch
import torch.nn.functional as F

from ctrg.data.dataset import read_volume_manifest
from ctrg.models.observer import StructureObserver, load_stage1
from ctrg.models.text_cache import load_text_cache
from ctrg.runtime import atomic_write_json, setup_logging

log = logging.getLogger(__name__)

SHARES = ("own", "identical", "similar", "other_structures")
IDENTICAL = 1 - 1e-5


def soft_target_shares(
    positives: torch.Tensor,
    keys: torch.Tensor,
    positive_index: torch.Tensor,
    raw_keys: torch.Tensor,
    key_structure: torch.Tensor,
    tau: float,
) -> torch.Tensor:
    """Split each positive's soft target over own / identical / similar / other structures.

    Args:
        positives: (M, E) L2-normalised projected positive texts (rows of ``keys``).
        keys: (K, E) L2-normalised projected keys of one step.
        positive_index: (M,) column of each positive in ``keys``.
        raw_keys: (K, H) L2-normalised frozen features of the keys (text identity).
        key_structure: (K,) structure id of each key.

    Returns:
        (M, 4) shares in :data:`SHARES` order; each row sums to 1.
    """
    soft = F.softmax(positives.float() @ keys.float().T / tau, dim=-1)  # (M, K)
    rows = torch.arange(len(positive_index))
    same = key_structure[positive_index][:, None] == key_structure[None, :]  # (M, K)
    identical = same & (raw_keys[positive_index] @ raw_keys.T > IDENTICAL)
    own = torch.zeros_like(same)
    own[rows, positive_index] = True
    identical &= ~own
    similar = same & ~identical & ~own
    masks = (own, identical, similar, ~same)
    return torch.stack([(soft * m).sum(-1) for m in masks], dim=-1)


def step_keys(
    observer: StructureObserver,
    batch: torch.Tensor,
    queue: torch.Tensor,
    queue_structures: torch.Tensor,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Keys of one training step, as ``Stage1Model.forward`` builds them.

    Args:
        batch: (B, S, H) frozen structure-text features of the batch.
        queue: (Q, H) frozen queue features. queue_structures: (Q,) their structure ids.

    Returns:
        keys (B*S + Q, E), raw keys (B*S + Q, H) L2-normalised, key structures (B*S + Q,),
        positive columns (B*S,).
    """
    b, s, _ = batch.shape
    texts = observer.encode_text(batch.float()).reshape(b * s, -1)
    keys = torch.cat([texts, observer.encode_text(queue.float(), queue_structures)])
    raw = F.normalize(torch.cat([batch.reshape(b * s, -1), queue]).float(), dim=-1)
    structures = torch.cat([torch.arange(s).repeat(b), queue_structures])
    return keys, raw, structures, torch.arange(b * s)


def read_queue(checkpoint: str) -> tuple[torch.Tensor, torch.Tensor]:
    """Filled queue entries (Q, H) and their structure ids (Q,) of a training checkpoint.

    Raises:
        ValueError: naming the file when it holds no queue (a run without one).
    """
    state = torch.load(checkpoint, map_location="cpu", weights_only=True)
    model = state.get("model", {})
    if "queue.features" not in model:
        raise ValueError(
            f"{checkpoint}: no queue.features (not a stage-1 training checkpoint with a queue)"
        )
    filled = model["queue.filled"]
    structure, slot = filled.nonzero(as_tuple=True)
    return model["queue.features"][structure, slot], structure


@torch.no_grad()
def measure(
    observer: StructureObserver,
    train: torch.Tensor,
    queue: tuple[torch.Tensor, torch.Tensor],
    batch_size: int,
    batches: int,
    tau: float,
    seed: int = 0,
) -> torch.Tensor:
    """Mean shares per structure over random training batches: (S, 4).

    Args:
        train: (N, S, H) frozen structure-text features of the training cases.
        queue: frozen queue features (Q, H) and structure ids (Q,).
    """
    generator = torch.Generator().manual_seed(seed)
    s = train.shape[1]
    total = torch.zeros(s, len(SHARES))
    for _ in range(batches):
        pick = torch.randperm(len(train), generator=generator)[:batch_size]
        keys, raw, structures, positive = step_keys(observer, train[pick], *queue)
        shares = soft_target_shares(keys[positive], keys, positive, raw, structures, tau)
        total += shares.reshape(len(pick), s, -1).mean(0)
    return total / batches


def identical_copies(
    train: torch.Tensor, queue: torch.Tensor, queue_structures: torch.Tensor
) -> list[float]:
    """Per structure: mean number of queue entries identical to a training case's own text."""
    raw = F.normalize(train.float(), dim=-1)
    queue = F.normalize(queue.float(), dim=-1)
    return [
        float((raw[:, s] @ queue[queue_structures == s].T > IDENTICAL).sum(-1).float().mean())
        for s in range(train.shape[1])
    ]


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="ctrg bench soft-targets", description=__doc__)
    parser.add_argument("--model", required=True, help="results/<run>/stage1/model.pt")
    parser.add_argument(
        "--checkpoint", required=True, help="results/<run>/stage1/work/checkpoint.pt"
    )
    parser.add_argument("--volumes", required=True, help="results/volumes/manifest.csv")
    parser.add_argument("--text-cache", required=True, help="embeddings.safetensors")
    parser.add_argument("--split", default="train")
    parser.add_argument("--batches", type=int, default=300)
    parser.add_argument("--out-json", default="results/bench/soft_targets.json")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    """CLI entry point of ``ctrg bench soft-targets``."""
    args = parse_args(argv)
    setup_logging()
    state = torch.load(args.model, map_location="cpu", weights_only=True)
    loss, batch_size = state["config"]["loss"], state["config"]["loop"]["batch_size"]
    observer = load_stage1(args.model)
    cache = load_text_cache(args.text_cache)
    cases = set(read_volume_manifest(args.volumes, args.split)["case_id"])
    rows = [i for i, case in enumerate(cache.case_ids) if case in cases]
    if len(rows) < batch_size:
        raise ValueError(f"{args.volumes}: {len(rows)} {args.split!r} cases, fewer than a batch")
    train, queue = cache.embeddings[rows], read_queue(args.checkpoint)
    shares = measure(observer, train, queue, batch_size, args.batches, loss["tau"])
    names = json.loads(cache.metadata.get("structures", "[]")) or [
        str(i) for i in range(len(shares))
    ]
    copies = identical_copies(train, *queue)
    result: dict[str, Any] = {
        "model": args.model, "checkpoint": args.checkpoint, "alpha": loss["alpha"],
        "tau": loss["tau"], "batch_size": batch_size, "batches": args.batches,
        "queue_entries": len(queue[1]), "cases": len(rows),
        "structures": {
            name: {**dict(zip(SHARES, map(float, row))), "queue_copies_of_own_text": c}
            for name, row, c in zip(names, shares, copies)
        },
    }  # fmt: skip
    atomic_write_json(args.out_json, result)
    print(
        f"alpha {loss['alpha']}, tau {loss['tau']}, batch {batch_size}, {len(queue[1])} queue entries"
    )
    print("| structure | own | identical | similar | other structures | queue copies of own text |")
    print("|---|---|---|---|---|---|")
    for name, row in result["structures"].items():
        cells = " | ".join(f"{row[k]:.3f}" for k in SHARES)
        print(f"| {name} | {cells} | {row['queue_copies_of_own_text']:.1f} |")
    return 0

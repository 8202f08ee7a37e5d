"""``ctrg bench stage1-retrieval``: held-out retrieval of a trained stage-1 model, with a p-value.

Stage 1 validates on one split (30 phantom cases), where top-1 is a count of 0-5 hits and
noisy. This benchmark embeds the cases of several splits (default: valid and test) with an
exported ``model.pt``, computes the structure-summed cosine retrieval of
``ctrg.train.retrieval`` over all of them together (identical reports merged), and compares
top-1, top-5 and the mean 1-based rank with a permutation null: the same embeddings with
the image-report pairing shuffled (``--permutations`` times). p is the share of shuffles at
least as good as the real pairing (one-sided; 0 means below 1 / permutations).

Prints one line and writes JSON (``--out-json``). Nothing is asserted.
"""

from __future__ import annotations

import argparse
import logging
from typing import Any

import numpy as np
import torch

from ctrg.data.dataset import VolumeTextDataset
from ctrg.losses import LossConfig
from ctrg.models.observer import load_stage1
from ctrg.models.text_cache import load_text_cache
from ctrg.runtime import atomic_write_json, setup_logging
from ctrg.train.retrieval import embed_dataset, grouped_ranks
from ctrg.train.stage1 import Stage1Model

log = logging.getLogger(__name__)


def rank_stats(similarity: torch.Tensor, groups: torch.Tensor) -> np.ndarray:
    """(top-1, top-5, mean 1-based rank) from similarity (N, N) and report groups (N,)."""
    ranks = grouped_ranks(similarity, groups)[0].float()
    return np.array([(ranks < 1).float().mean(), (ranks < 5).float().mean(), ranks.mean() + 1])


def permutation_test(
    image: torch.Tensor, text: torch.Tensor, permutations: int, seed: int = 0
) -> dict[str, Any]:
    """Real statistics, their permutation-null means and one-sided p-values.

    Shuffling the pairing permutes the candidate columns (and their report groups), so the
    similarity matrix and the groups are computed once.
    """
    similarity = torch.einsum("ise,jse->ij", image, text)  # (N, N)
    groups = torch.unique(text.reshape(len(text), -1), dim=0, return_inverse=True)[1]
    real, count = rank_stats(similarity, groups), int(groups.max()) + 1
    generator = torch.Generator().manual_seed(seed)
    shuffles = [torch.randperm(len(text), generator=generator) for _ in range(permutations)]
    null = np.stack([rank_stats(similarity[:, p], groups[p]) for p in shuffles])
    better = [null[:, 0] >= real[0], null[:, 1] >= real[1], null[:, 2] <= real[2]]
    names = ("top1", "top5", "mean_rank")
    result: dict[str, Any] = {"cases": len(text), "candidates": count}
    for i, name in enumerate(names):
        result[name] = float(real[i])
        result[f"{name}_null"] = float(null[:, i].mean())
        result[f"{name}_p"] = float(np.mean(better[i]))
    return result


def main(argv: list[str] | None = None) -> int:
    """CLI entry point of ``ctrg bench stage1-retrieval``."""
    parser = argparse.ArgumentParser(prog="ctrg bench stage1-retrieval", description=__doc__)
    parser.add_argument("--model", required=True, help="results/<run>/stage1/model.pt")
    parser.add_argument("--volumes", required=True, help="results/volumes/manifest.csv")
    parser.add_argument("--text-cache", required=True, help="embeddings.safetensors")
    parser.add_argument("--splits", nargs="+", default=["valid", "test"])
    parser.add_argument("--permutations", type=int, default=2000)
    parser.add_argument("--out-json", default="results/bench/stage1_retrieval.json")
    args = parser.parse_args(argv)
    setup_logging()
    observer = load_stage1(args.model)
    model = Stage1Model(observer, LossConfig(), queue_kind="none")  # for its text_targets
    cache = load_text_cache(args.text_cache)
    shape = tuple(observer.config.volume_shape)
    images, texts = [], []
    for split in args.splits:
        data = VolumeTextDataset(args.volumes, cache, split, expected_shape=shape)
        if len(data):
            image, text, _ = embed_dataset(model, data, torch.device("cpu"), 8)
            images.append(image)
            texts.append(text)
    if not images or sum(len(t) for t in texts) < 2:
        raise ValueError(f"{args.volumes}: fewer than 2 cases in splits {args.splits}")
    result = permutation_test(torch.cat(images), torch.cat(texts), args.permutations)
    result.update(model=args.model, splits=args.splits, permutations=args.permutations)
    atomic_write_json(args.out_json, result)
    print(
        f"{result['cases']} cases ({'+'.join(args.splits)}), {result['candidates']} distinct"
        f" reports: top-1 {result['top1']:.3f} (null {result['top1_null']:.3f},"
        f" p={result['top1_p']:.4f}), top-5 {result['top5']:.3f} (null {result['top5_null']:.3f},"
        f" p={result['top5_p']:.4f}), mean rank {result['mean_rank']:.1f}"
        f" (null {result['mean_rank_null']:.1f}, p={result['mean_rank_p']:.4f})"
    )
    return 0

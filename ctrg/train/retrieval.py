"""Validation for stage 1: image-to-report retrieval and the attention check.

Structure-summed cosine retrieval: case i's volume scores every candidate report j by
``sum_s v_{i,s} . t_{j,s}``; top-k accuracy asks whether the true report ranks in the
top k. Candidates with identical texts (common with default sentences) are merged first,
so a tie among identical reports is neither a hit nor a miss by luck; rank = number of
distinct candidates scoring strictly higher. ``retrieval_mean_rank`` is the mean 1-based
rank of the true report (chance (G + 1) / 2 for G distinct candidates): on a small
validation set it is far less noisy than top-1. Per-structure retrieval does the same with
``v_{i,s} . t_{j,s}`` over the distinct texts of structure s. Chance = k / #candidates.
"""

from __future__ import annotations

import logging
from typing import Any

import numpy as np
import torch

from ctrg.models.attention_check import attention_hits, patch_label_fractions, summarise_hits

log = logging.getLogger(__name__)


def grouped_ranks(similarity: torch.Tensor, groups: torch.Tensor) -> tuple[torch.Tensor, int]:
    """Rank of each row's true group among distinct candidate groups.

    Args:
        similarity: (N, N) row i = query i, column j = candidate j.
        groups: (N,) group id of each candidate (identical texts share an id).

    Returns:
        (ranks (N,) 0-based, number of groups).
    """
    num_groups = int(groups.max()) + 1
    first = torch.full((num_groups,), len(groups), dtype=torch.long)
    first = first.scatter_reduce(0, groups, torch.arange(len(groups)), reduce="amin")
    per_group = similarity[:, first]  # (N, G)
    true = per_group.gather(1, groups[:, None])
    return (per_group > true).sum(1), num_groups


def retrieval_metrics(
    image: torch.Tensor, text: torch.Tensor, names: list[str], ks: tuple[int, ...] = (1, 5, 10)
) -> dict[str, float]:
    """Retrieval metrics (module doc).

    Args:
        image: (N, S, E) observation embeddings. text: (N, S, E) text embeddings.
        names: S structure names (for per-structure keys).
    """
    image, text = image.float().cpu(), text.float().cpu()
    metrics: dict[str, float] = {}
    report_groups = torch.unique(text.reshape(len(text), -1), dim=0, return_inverse=True)[1]
    ranks, groups = grouped_ranks(torch.einsum("ise,jse->ij", image, text), report_groups)
    for k in ks:
        metrics[f"retrieval_top{k}"] = float((ranks < k).float().mean())
        metrics[f"retrieval_top{k}_chance"] = min(k, groups) / groups
    metrics["retrieval_candidates"] = groups
    metrics["retrieval_mean_rank"] = float(ranks.float().mean()) + 1.0
    metrics["retrieval_mean_rank_chance"] = (groups + 1) / 2
    for s, name in enumerate(names):
        key = name.replace(" ", "_")
        text_groups = torch.unique(text[:, s], dim=0, return_inverse=True)[1]
        ranks_s, groups_s = grouped_ranks(image[:, s] @ text[:, s].T, text_groups)
        metrics[f"structure_top1/{key}"] = float((ranks_s < 1).float().mean())
        metrics[f"structure_top5/{key}"] = float((ranks_s < 5).float().mean())
        metrics[f"structure_candidates/{key}"] = groups_s
    return metrics


@torch.no_grad()
def embed_dataset(
    model: Any,
    dataset: Any,
    device: torch.device,
    batch_size: int,
    attention_sink: Any = None,
    finding_sink: Any = None,
) -> tuple[torch.Tensor, torch.Tensor, list[int]]:
    """Observation and text embeddings of a dataset (Stage1Model ``model``).

    ``attention_sink(index, attention (heads, S, N))`` receives each case's attention map,
    ``finding_sink(indices (B,), logits (B, L))`` each batch's finding-head logits (when the
    observer has a finding head). Returns image (N, S, E), text (N, S, E) and the dataset
    indices kept.
    """
    from ctrg.data.dataset import collate_cases

    images, texts, kept = [], [], []
    for start in range(0, len(dataset), batch_size):
        items = [dataset[i] for i in range(start, min(start + batch_size, len(dataset)))]
        if all(item is None for item in items):
            continue
        batch = collate_cases(items)
        out = model.observer.encode_volume(batch["volume"].to(device))
        images.append(out.observation_embeddings.float().cpu())
        texts.append(
            model.text_targets(
                batch["text_features"].to(device), batch["report_features"].to(device)
            )
            .float()
            .cpu()
        )
        kept.extend(batch["index"].tolist())
        if finding_sink is not None and out.finding_logits is not None:
            finding_sink(batch["index"], out.finding_logits.float().cpu())
        if attention_sink is not None:
            for row, index in enumerate(batch["index"].tolist()):
                attention_sink(index, out.attention[row].float().cpu())
    return torch.cat(images), torch.cat(texts), kept


def attention_concentration(
    model: Any,
    dataset: Any,
    device: torch.device,
    batch_size: int,
    names: list[str],
    top_k: int = 9,
) -> dict[str, Any] | None:
    """Per-structure top-k attention hit rates over cases with structure maps (or None)."""
    if dataset.structure_map_path(0) is None if len(dataset) else True:
        return None
    patch = tuple(model.observer.config.patch_shape)
    per_case: list[dict[str, np.ndarray]] = []

    def sink(index: int, attention: torch.Tensor) -> None:
        path = dataset.structure_map_path(index)
        if path is None:
            return
        try:
            labels = np.load(path)
            fractions = patch_label_fractions(labels, patch, len(names) + 1)
        except (OSError, ValueError) as error:
            log.error("structure map %s unusable (%s): skipped", path, error)
            return
        per_case.append(attention_hits(attention, fractions, top_k))

    embed_dataset(model, dataset, device, batch_size, sink)
    if not per_case:
        return None
    return {
        "top_k": top_k,
        "cases": len(per_case),
        "per_structure": summarise_hits(per_case, names),
    }

"""Finding head: each abnormality label read from its own structure's observation token.

Not in the paper. Stage 1 of the method learns the observation tokens from contrast with
the structure sentences alone; with a few hundred training reports that signal is weak
(docs/stage1.md). The finding head adds a supervised signal from the same reports: the
labels that ``ctrg label`` extracts from each *training* report (never the phantom's
ground truth). Label ``l`` is predicted by a linear read-out of the observation token of
the structure that describes it (``CTRATE_LABEL_STRUCTURE``), so the token of "heart" has
to carry cardiomegaly and pericardial effusion, which is what the stage-2 decoder reads.

    head = FindingHead(FindingHeadConfig(structures=(1, 1, 2)), dim=128)
    logits = head(observation_tokens)   # (B, S, C) -> (B, L)
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from ctrg.anatomy import CHEST_STRUCTURES, CTRATE_LABEL_STRUCTURE, CTRATE_LABELS


def label_structures(
    labels: tuple[str, ...] = CTRATE_LABELS,
    structures: tuple[str, ...] = CHEST_STRUCTURES,
    num_queries: int | None = None,
) -> tuple[int, ...]:
    """Query index read by each label: its structure's index, or 0 for one global query.

    Raises:
        ValueError: for a label without a structure in ``CTRATE_LABEL_STRUCTURE``.
    """
    unknown = [label for label in labels if label not in CTRATE_LABEL_STRUCTURE]
    if unknown:
        raise ValueError(f"finding labels without a structure: {unknown}")
    if num_queries == 1:
        return tuple(0 for _ in labels)
    return tuple(structures.index(CTRATE_LABEL_STRUCTURE[label]) for label in labels)


@dataclass
class FindingHeadConfig:
    """Which query each label reads (index into the observation tokens)."""

    structures: tuple[int, ...]


class FindingHead(nn.Module):
    """Per-label linear read-out of one observation token (after a shared LayerNorm).

    Args:
        config: the query index of each of the L labels.
        dim: observation-token width C.
    """

    def __init__(self, config: FindingHeadConfig, dim: int) -> None:
        super().__init__()
        self.config = config
        self.norm = nn.LayerNorm(dim)
        self.register_buffer("index", torch.tensor(config.structures, dtype=torch.long))
        self.weight = nn.Parameter(torch.randn(len(config.structures), dim) * dim**-0.5)
        self.bias = nn.Parameter(torch.zeros(len(config.structures)))

    def forward(self, observation_tokens: torch.Tensor) -> torch.Tensor:
        """observation_tokens (B, S, C) -> logits (B, L)."""
        tokens = self.norm(observation_tokens[:, self.index].float())  # (B, L, C)
        return (tokens * self.weight).sum(-1) + self.bias  # (B, L)


class FindingLoss(nn.Module):
    """Binary cross-entropy over the labels a report states; unknown (NaN) labels ignored.

    Args:
        pos_weight: (L,) weight of the positive term per label (rare labels count more).
    """

    def __init__(self, pos_weight: torch.Tensor) -> None:
        super().__init__()
        self.register_buffer("pos_weight", pos_weight.float())

    def forward(self, logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """logits (B, L), labels (B, L) in {0, 1, NaN} -> scalar mean over known labels."""
        known = ~torch.isnan(labels)
        if not known.any():
            return logits.sum() * 0.0
        target = torch.where(known, labels, torch.zeros_like(labels)).float()
        loss = F.binary_cross_entropy_with_logits(
            logits.float(), target, pos_weight=self.pos_weight, reduction="none"
        )
        return loss[known].mean()


def finding_states(logits: torch.Tensor, threshold: float = 0.0) -> torch.Tensor:
    """The head's decision per label as the decoder's finding state: +1 present, -1 absent.

    Args:
        logits: (..., L) finding-head logits. threshold: logit above which a label counts
            as present (0 = probability 0.5).

    Returns:
        (..., L) float in {-1, +1}.
    """
    return torch.where(logits.float() > threshold, 1.0, -1.0)


def label_states(labels: torch.Tensor) -> torch.Tensor:
    """Report labels (..., L) in {0, 1, NaN} as finding states: +1, -1, and 0 for unknown."""
    return torch.nan_to_num(2 * labels.float() - 1, nan=0.0)


def positive_weights(labels: torch.Tensor, cap: float) -> torch.Tensor:
    """Per-label negatives/positives among the known labels, clipped to [1, cap].

    Args:
        labels: (N, L) in {0, 1, NaN}. cap: the largest weight.

    Returns:
        (L,) float; 1 for a label with no positive.
    """
    known = ~torch.isnan(labels)
    positives = torch.where(known, labels, torch.zeros_like(labels)).sum(0)
    negatives = known.sum(0) - positives
    ratio = negatives / positives.clamp(min=1)
    return torch.where(positives > 0, ratio, torch.ones_like(ratio)).clamp(1.0, cap)


def finding_metrics(logits: torch.Tensor, labels: torch.Tensor) -> dict[str, float]:
    """Validation numbers of a finding head: mean AUC and micro-F1 at probability 0.5.

    Args:
        logits: (N, L). labels: (N, L) in {0, 1, NaN}; unknown entries are ignored.

    Returns:
        ``finding_auc`` (mean over labels with both classes present; left out when none),
        ``finding_micro_f1`` and ``finding_labels_scored`` (how many labels entered the AUC).
    """
    known = ~torch.isnan(labels)
    aucs = []
    for j in range(labels.shape[1]):
        score, truth = logits[known[:, j], j].float(), labels[known[:, j], j]
        pos, neg = score[truth == 1], score[truth == 0]
        if len(pos) and len(neg):
            diff = pos[:, None] - neg[None, :]  # (P, Q)
            aucs.append(float((diff > 0).float().mean() + 0.5 * (diff == 0).float().mean()))
    predicted = (logits > 0) & known
    truth = (labels == 1) & known
    tp = float((predicted & truth).sum())
    denominator = float(predicted.sum() + truth.sum())
    metrics = {
        "finding_micro_f1": 2 * tp / denominator if denominator else 0.0,
        "finding_labels_scored": float(len(aucs)),
    }
    if aucs:
        metrics["finding_auc"] = sum(aucs) / len(aucs)
    return metrics

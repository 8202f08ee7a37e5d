"""Structure-wise image-to-text contrastive loss with soft pseudo targets.

For every observation embedding v_{i,s} (case i, structure s) and every key k (the batch's
structure texts, then the negative queue):

    p_{(i,s),k} = softmax_k(v_{i,s} . k / tau)
    y_{(i,s),k} = (1 - alpha) [k is t_{i,s}] + alpha softmax_k(t_{i,s} . k / tau)
    L = - mean_{i,s} sum_k w_{s,k} y_{(i,s),k} log p_{(i,s),k}

with w = 1 for keys of the same structure s and ``cross_structure_weight`` (0.1) otherwise.
The soft target spreads probability over texts that say the same thing (e.g. identical
default sentences of other patients: false negatives). ``soft_targets=False`` sets
alpha = 0. The optional symmetric term is the text-to-image analogue over the batch's
observation embeddings (keys = images, soft targets from the paired texts); the loss is
then the mean of both directions.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F


@dataclass
class LossConfig:
    """stage1.loss settings."""

    tau: float = 0.07
    alpha: float = 0.2
    soft_targets: bool = True
    cross_structure_weight: float = 0.1
    symmetric: bool = False

    @property
    def effective_alpha(self) -> float:
        return self.alpha if self.soft_targets else 0.0


def weighted_soft_cross_entropy(
    logits: torch.Tensor,
    target_logits: torch.Tensor,
    positive: torch.Tensor,
    query_structure: torch.Tensor,
    key_structure: torch.Tensor,
    alpha: float,
    cross_weight: float,
) -> torch.Tensor:
    """Mean over rows of -sum_k w_k y_k log softmax(logits)_k.

    Args:
        logits: (M, K) query-key similarities / tau.
        target_logits: (M, K) positive-text-to-key similarities / tau (no gradient needed).
        positive: (M,) column of each row's own positive key.
        query_structure: (M,) structure id of each row. key_structure: (K,) of each key.
        alpha: soft-target weight. cross_weight: w for keys of another structure.

    Returns:
        Scalar loss.
    """
    log_p = F.log_softmax(logits.float(), dim=-1)
    hard = F.one_hot(positive, logits.shape[-1]).to(log_p.dtype)
    soft = F.softmax(target_logits.detach().float(), dim=-1)
    target = (1 - alpha) * hard + alpha * soft
    same = query_structure[:, None] == key_structure[None, :]
    weight = torch.where(same, 1.0, cross_weight).to(log_p.dtype)
    return -(weight * target * log_p).sum(dim=-1).mean()


def structure_contrastive_loss(
    image_embeddings: torch.Tensor,
    text_embeddings: torch.Tensor,
    config: LossConfig,
    queue_embeddings: torch.Tensor | None = None,
    queue_structures: torch.Tensor | None = None,
    offset: int = 0,
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """Structure-wise contrastive loss (module doc).

    Args:
        image_embeddings: (B, S, E) L2-normalised observation embeddings of this rank.
        text_embeddings: (B_all, S, E) L2-normalised structure texts of the global batch
            (all ranks); this rank's cases are rows ``offset .. offset + B``.
        config: tau, alpha, weights, symmetric switch.
        queue_embeddings: (Q, E) L2-normalised negatives, or None.
        queue_structures: (Q,) structure id of each queue entry.
        offset: index of this rank's first case in ``text_embeddings``.

    Returns:
        (loss, metrics) with metrics ``loss_i2t``, ``acc_i2t`` (top-1 key is the positive)
        and ``loss_t2i`` when symmetric.
    """
    b, s, e = image_embeddings.shape
    device = image_embeddings.device
    structure_ids = torch.arange(s, device=device)
    keys = text_embeddings.reshape(-1, e)
    key_structure = structure_ids.repeat(text_embeddings.shape[0])
    if queue_embeddings is not None and queue_embeddings.shape[0] > 0:
        keys = torch.cat([keys, queue_embeddings.to(keys.dtype)])
        key_structure = torch.cat([key_structure, queue_structures.to(device)])
    queries = image_embeddings.reshape(-1, e)
    query_structure = structure_ids.repeat(b)
    positive = offset * s + torch.arange(b * s, device=device)
    positives = keys[positive]
    tau, alpha = config.tau, config.effective_alpha
    logits = queries.float() @ keys.float().T / tau
    target_logits = positives.float() @ keys.float().T / tau
    loss_i2t = weighted_soft_cross_entropy(
        logits,
        target_logits,
        positive,
        query_structure,
        key_structure,
        alpha,
        config.cross_structure_weight,
    )
    metrics = {
        "loss_i2t": loss_i2t.detach(),
        "acc_i2t": (logits.argmax(-1) == positive).float().mean().detach(),
    }
    if not config.symmetric:
        return loss_i2t, metrics
    # text -> image over this rank's observation embeddings
    t2i_logits = positives.float() @ queries.float().T / tau
    t2i_targets = positives.float() @ positives.float().T / tau
    local = torch.arange(b * s, device=device)
    loss_t2i = weighted_soft_cross_entropy(
        t2i_logits,
        t2i_targets,
        local,
        query_structure,
        query_structure,
        alpha,
        config.cross_structure_weight,
    )
    metrics["loss_t2i"] = loss_t2i.detach()
    return (loss_i2t + loss_t2i) / 2, metrics

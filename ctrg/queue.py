"""Negative queue of structure texts: diversity-enhanced (the method) or FIFO (ablation).

One bank per structure, ``size`` slots each, held as registered buffers (checkpointed with
the model). The queue stores the FROZEN text-encoder features (L2-normalised); the trainer
projects them with the current text projection at each step, so keys never go stale
(no momentum encoder is needed). Diversity scores are computed in that frozen space.

Diversity update, per structure s, given new texts x (from all ranks):

    score(x)   = mean_j (x . q_j) / tau        over the filled entries q_j of bank s
    score(q_i) = mean_{j != i} (q_i . q_j) / tau  (same reference set, self excluded)
    empty slots: score = +huge (they go first)

new texts and bank entries are pooled and the ``size`` LOWEST scores are kept (ties keep
older entries first). A text that many entries already resemble (the default sentence
"No abnormality found in lung.") scores high and is evicted, so it cannot flood the bank:
at most one batch's copies get in before the next update scores them against each other.
Since mean_j (x . q_j) = x . mean_j q_j, the update costs O((size + n) * dim).
"""

from __future__ import annotations

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import nn

EMPTY_SCORE = 1e9


def gather_across_ranks(tensor: torch.Tensor) -> tuple[torch.Tensor, int]:
    """Concatenate ``tensor`` (variable first dim) from all ranks in rank order.

    Returns:
        (gathered tensor, offset of this rank's rows); (tensor, 0) when not distributed.
    """
    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
        return tensor, 0
    world = dist.get_world_size()
    size = torch.tensor([tensor.shape[0]], device=tensor.device)
    sizes = [torch.empty_like(size) for _ in range(world)]
    dist.all_gather(sizes, size)
    counts = [int(s) for s in sizes]
    padded = tensor.new_zeros((max(counts), *tensor.shape[1:]))
    padded[: tensor.shape[0]] = tensor
    parts = [torch.empty_like(padded) for _ in range(world)]
    dist.all_gather(parts, padded.contiguous())
    gathered = torch.cat([part[:n] for part, n in zip(parts, counts)])
    return gathered, sum(counts[: dist.get_rank()])


class StructureQueue(nn.Module):
    """Per-structure negative banks (see module doc).

    Args:
        num_structures: S. size: slots per structure. dim: feature width.
        kind: ``diversity`` or ``fifo``. tau: temperature of the diversity score.
    """

    def __init__(
        self, num_structures: int, size: int, dim: int, kind: str = "diversity", tau: float = 0.07
    ) -> None:
        super().__init__()
        if kind not in ("diversity", "fifo"):
            raise ValueError(f"queue kind must be diversity or fifo, got {kind!r}")
        self.kind, self.tau, self.size = kind, tau, size
        self.register_buffer("features", torch.zeros(num_structures, size, dim))
        self.register_buffer("filled", torch.zeros(num_structures, size, dtype=torch.bool))
        self.register_buffer("scores", torch.full((num_structures, size), EMPTY_SCORE))
        self.register_buffer("pointer", torch.zeros(num_structures, dtype=torch.long))

    def keys(self) -> tuple[torch.Tensor, torch.Tensor]:
        """Filled entries (copies): features (M, dim) and structure ids (M,)."""
        structure, slot = self.filled.nonzero(as_tuple=True)
        return self.features[structure, slot], structure

    @torch.no_grad()
    def update(self, features: torch.Tensor, structures: torch.Tensor, gather: bool = True) -> None:
        """Add new texts (gathered across ranks first when distributed and ``gather``).

        Args:
            features: (n, dim) frozen text features. structures: (n,) structure ids.
            gather: False when the caller already passes the texts of all ranks.
        """
        features = F.normalize(features.float(), dim=-1)
        structures = structures.to(features.device)
        if gather:
            features = gather_across_ranks(features)[0]
            structures = gather_across_ranks(structures)[0]
        for s in structures.unique().tolist():
            new = features[structures == s]
            if self.kind == "fifo":
                self._update_fifo(s, new)
            else:
                self._update_diversity(s, new)

    def _update_fifo(self, s: int, new: torch.Tensor) -> None:
        for row in new:
            slot = int(self.pointer[s])
            self.features[s, slot] = row
            self.filled[s, slot] = True
            self.scores[s, slot] = 0.0
            self.pointer[s] = (slot + 1) % self.size

    def _update_diversity(self, s: int, new: torch.Tensor) -> None:
        bank, filled = self.features[s], self.filled[s]
        count = int(filled.sum())
        old_scores = torch.full((self.size,), EMPTY_SCORE, device=bank.device)
        new_scores = torch.zeros(new.shape[0], device=bank.device)
        if count > 0:
            total = bank[filled].sum(0)  # (dim,)
            new_scores = new @ total / count / self.tau
        if count > 1:
            valid = bank[filled]
            self_sim = (valid * valid).sum(-1)
            old_scores[filled] = (valid @ total - self_sim) / (count - 1) / self.tau
        elif count == 1:
            old_scores[filled] = 0.0
        pool = torch.cat([bank, new])
        pool_scores = torch.cat([old_scores, new_scores])
        keep = torch.sort(pool_scores, stable=True).indices[: self.size]
        self.features[s] = pool[keep]
        self.scores[s] = pool_scores[keep]
        self.filled[s] = pool_scores[keep] < EMPTY_SCORE

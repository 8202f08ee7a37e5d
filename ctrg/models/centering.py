"""Batch-mean centring (BatchNorm-style, without scaling), synchronised across DDP ranks.

Used for the projected observations (``stage1.model.image_centering``).
"""

from __future__ import annotations

import torch
import torch.distributed as dist
from torch import nn


def batch_sum(values: torch.Tensor) -> tuple[torch.Tensor, int]:
    """Sum over the first axis and the number of rows, over all ranks when distributed.

    The sum goes through an autograd all-reduce, so each rank's rows get the gradient of
    every rank's loss. Returns ((...) sum, global row count).
    """
    total, count = values.sum(dim=0), values.shape[0]
    if dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1:
        from torch.distributed.nn.functional import all_reduce

        total = all_reduce(total)
        counts = torch.tensor([count], device=values.device)
        dist.all_reduce(counts)
        count = int(counts)
    return total, count


class EmbeddingCentering(nn.Module):
    """Subtract the per-query mean of the projected observations (BatchNorm-style centring).

    Training: the mean over the batch (gradients flow through it) is subtracted and a
    running mean is updated with ``momentum``; with a single case in the whole batch the
    running mean is used instead (a batch mean would zero the embedding). Evaluation: the
    running mean. Under DDP the mean is over all ranks' cases (an autograd all-reduce, as
    SyncBatchNorm does), so 2 ranks of batch 2 train exactly like 1 process of batch 4.

    Why: the structure queries start identical for every case and attend almost uniformly
    to the patches, so every observation is dominated by one shared vector; the contrastive
    loss rewards that vector (the most typical text) and the case-specific part stays ~1% of
    the embedding (mean cosine of different cases 0.9999 after 150 steps on the phantom).
    Centring removes the shared part so the loss sees only what differs between cases.

    Args:
        num_queries: S. dim: embedding width E. momentum: running-mean update rate.
    """

    def __init__(self, num_queries: int, dim: int, momentum: float = 0.1) -> None:
        super().__init__()
        self.momentum = momentum
        self.register_buffer("running_mean", torch.zeros(num_queries, dim))

    def forward(self, projected: torch.Tensor) -> torch.Tensor:
        """(B, S, E) projected observations -> (B, S, E) centred (not normalised)."""
        if self.training:
            total, count = batch_sum(projected)
            if count > 1:
                mean = total / count  # (S, E)
                self._update(mean)
                return projected - mean
        return projected - self.running_mean.to(projected.dtype)

    @torch.no_grad()
    def _update(self, mean: torch.Tensor) -> None:
        self.running_mean.lerp_(mean.detach().float(), self.momentum)

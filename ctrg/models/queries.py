"""Learnable structure queries and bidirectional co-attention with the patch tokens.

Each co-attention block updates both streams: queries and patches each get
self-attention, then cross-attention to the other stream (both cross-attentions read the
states after self-attention), then a feed-forward; all pre-norm and residual. The last
block's query-to-patch attention weights (B, heads, S, N) tell which patches each
structure query looked at (stage 2 keeps the top-k of them).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class MultiHeadAttention(nn.Module):
    """Pre-norm multi-head attention of ``x`` over ``context``; can return the weights."""

    def __init__(self, dim: int, heads: int, cross: bool = False) -> None:
        super().__init__()
        if dim % heads:
            raise ValueError(f"dim {dim} not divisible by heads {heads}")
        self.heads = heads
        self.norm = nn.LayerNorm(dim)
        self.norm_context = nn.LayerNorm(dim) if cross else None
        self.to_q = nn.Linear(dim, dim)
        self.to_k = nn.Linear(dim, dim)
        self.to_v = nn.Linear(dim, dim)
        self.to_out = nn.Linear(dim, dim)

    def _split(self, x: torch.Tensor) -> torch.Tensor:
        b, n, d = x.shape
        return x.reshape(b, n, self.heads, d // self.heads).transpose(1, 2)

    def forward(
        self, x: torch.Tensor, context: torch.Tensor | None = None, need_weights: bool = False
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """x (B, M, dim), context (B, N, dim) or None (self-attention).

        Returns:
            output (B, M, dim) and, when ``need_weights``, the softmax weights (B, heads, M, N).
        """
        q_in = self.norm(x)
        kv_in = q_in if self.norm_context is None else self.norm_context(context)
        q, k, v = (
            self._split(self.to_q(q_in)),
            self._split(self.to_k(kv_in)),
            self._split(self.to_v(kv_in)),
        )
        weights = None
        if need_weights:
            scores = q @ k.transpose(-1, -2) / q.shape[-1] ** 0.5
            weights = scores.float().softmax(dim=-1).to(v.dtype)  # (B, heads, M, N)
            out = weights @ v
        else:
            out = F.scaled_dot_product_attention(q, k, v)
        b, _, m, _ = out.shape
        return self.to_out(out.transpose(1, 2).reshape(b, m, -1)), weights


class FeedForward(nn.Module):
    """Pre-norm MLP dim -> mult*dim -> dim with GELU."""

    def __init__(self, dim: int, mult: int = 4) -> None:
        super().__init__()
        self.net = nn.Sequential(
            nn.LayerNorm(dim), nn.Linear(dim, mult * dim), nn.GELU(), nn.Linear(mult * dim, dim)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


class CoAttentionBlock(nn.Module):
    """Self-attention, cross-attention and feed-forward, applied to queries and patches.

    With ``update_patches=False`` (the last block) the patch stream stops after its
    self-attention: a later patch update could not reach the loss, so it would stay
    untrained.
    """

    def __init__(self, dim: int, heads: int, update_patches: bool = True) -> None:
        super().__init__()
        self.query_self = MultiHeadAttention(dim, heads)
        self.patch_self = MultiHeadAttention(dim, heads)
        self.query_cross = MultiHeadAttention(dim, heads, cross=True)
        self.query_ff = FeedForward(dim)
        self.update_patches = update_patches
        if update_patches:
            self.patch_cross = MultiHeadAttention(dim, heads, cross=True)
            self.patch_ff = FeedForward(dim)

    def forward(
        self, queries: torch.Tensor, patches: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """queries (B, S, dim), patches (B, N, dim) -> new queries, new patches, (B, h, S, N)."""
        queries = queries + self.query_self(queries)[0]
        patches = patches + self.patch_self(patches)[0]
        query_update, attention = self.query_cross(queries, patches, need_weights=True)
        if self.update_patches:
            patches = patches + self.patch_cross(patches, queries)[0]
            patches = patches + self.patch_ff(patches)
        queries = queries + query_update
        queries = queries + self.query_ff(queries)
        return queries, patches, attention  # type: ignore[return-value]


class StructureQueries(nn.Module):
    """S learnable queries refined by ``layers`` co-attention blocks over patch tokens.

    Args:
        num_queries: S (10 chest structures, or 1 for the global-query ablation).
        dim: token width. heads: attention heads. layers: co-attention blocks (2).

    The returned patch tokens are exactly what the last block's query-to-patch attention
    read (its normalised keys/values input), so stage 2 gets the tokens the queries chose.
    """

    def __init__(self, num_queries: int, dim: int, heads: int, layers: int = 2) -> None:
        super().__init__()
        self.queries = nn.Parameter(torch.randn(num_queries, dim) * 0.02)
        self.blocks = nn.ModuleList(
            [CoAttentionBlock(dim, heads, update_patches=i < layers - 1) for i in range(layers)]
        )
        self.norm_queries = nn.LayerNorm(dim)

    def forward(self, patches: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """patches (B, N, dim) -> observation tokens (B, S, dim), patch tokens (B, N, dim),
        last block's query-to-patch attention (B, heads, S, N)."""
        queries = self.queries.unsqueeze(0).expand(patches.shape[0], -1, -1)
        attention = None
        for block in self.blocks:
            queries, patches, attention = block(queries, patches)
        patch_tokens = self.blocks[-1].query_cross.norm_context(patches)
        return self.norm_queries(queries), patch_tokens, attention  # type: ignore[return-value]

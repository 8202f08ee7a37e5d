"""CT-ViT-style 3D vision transformer: 3D patch embedding, spatial then through-plane attention.

Layout (mappable from CT-CLIP's visual weights, see ``ctclip_mapping``): a patch embedding
(LayerNorm over the flattened patch, Linear, LayerNorm), a spatial transformer that attends
within each slab of patches (with a continuous relative position bias over the in-plane
grid), then a through-plane ("temporal") transformer that attends along the depth axis
for each in-plane position. Each layer: a depthwise 3D convolution position generator
(PEG, causal along depth as in CT-CLIP), cosine-similarity attention (queries and keys
L2-normalised, learned per-dimension scales, fixed scale 8) and a GEGLU feed-forward.

Tokens are flattened in (depth, height, width) patch order: token n of the (t, h, w) grid is
``n = (ti * h + hi) * w + wi``.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class PatchEmbed3d(nn.Module):
    """Non-overlapping 3D patches -> LayerNorm -> Linear -> LayerNorm.

    The patch vector is flattened in (channel, depth, height, width) order.
    """

    def __init__(
        self, channels: int, patch_shape: tuple[int, int, int], dim: int, norm_input: bool = True
    ) -> None:
        super().__init__()
        self.patch_shape = tuple(patch_shape)
        size = channels * patch_shape[0] * patch_shape[1] * patch_shape[2]
        # CT-CLIP normalises each raw patch; that also removes its mean intensity (HU level)
        self.norm_in = nn.LayerNorm(size) if norm_input else nn.Identity()
        self.proj = nn.Linear(size, dim)
        self.norm_out = nn.LayerNorm(dim)

    def patchify(self, volume: torch.Tensor) -> torch.Tensor:
        """(B, C, D, H, W) -> (B, t, h, w, C*pt*ph*pw) flattened patches."""
        b, c, d, h, w = volume.shape
        pt, ph, pw = self.patch_shape
        if d % pt or h % ph or w % pw:
            raise ValueError(
                f"volume {tuple(volume.shape)} not divisible by patch {self.patch_shape}"
            )
        x = volume.reshape(b, c, d // pt, pt, h // ph, ph, w // pw, pw)
        return x.permute(0, 2, 4, 6, 1, 3, 5, 7).reshape(b, d // pt, h // ph, w // pw, -1)

    def forward(self, volume: torch.Tensor) -> torch.Tensor:
        """(B, C, D, H, W) -> (B, t, h, w, dim)."""
        return self.norm_out(self.proj(self.norm_in(self.patchify(volume))))


class ConvPatchEmbed3d(nn.Module):
    """Convolutional stem: stride-2 3x3x3 convolutions, then a final patch-sized one.

    Each axis is halved (kernel 3, padding 1, GroupNorm, GELU) while the remaining patch
    factor along it is even; a last convolution with kernel = stride = the remaining factor
    yields one token per patch, so the token grid equals :class:`PatchEmbed3d`'s. Widths
    start at ``dim // 8`` and double per stage (capped at ``dim``). Overlapping small
    kernels give the locality prior that plain patch projections lack on small data.
    """

    def __init__(self, channels: int, patch_shape: tuple[int, int, int], dim: int) -> None:
        super().__init__()
        self.patch_shape = tuple(patch_shape)
        remaining, layers, width, in_ch = list(patch_shape), [], max(dim // 8, 8), channels
        while any(r % 2 == 0 for r in remaining):
            stride = tuple(2 if r % 2 == 0 else 1 for r in remaining)
            remaining = [r // st for r, st in zip(remaining, stride)]
            layers += [
                nn.Conv3d(in_ch, width, 3, stride, 1),
                nn.GroupNorm(min(8, width), width),
                nn.GELU(),
            ]
            in_ch, width = width, min(width * 2, dim)
        layers.append(nn.Conv3d(in_ch, dim, tuple(remaining), tuple(remaining)))
        self.stem = nn.Sequential(*layers)
        self.norm_out = nn.LayerNorm(dim)

    def forward(self, volume: torch.Tensor) -> torch.Tensor:
        """(B, C, D, H, W) -> (B, t, h, w, dim)."""
        d, h, w = volume.shape[2:]
        pt, ph, pw = self.patch_shape
        if d % pt or h % ph or w % pw:
            raise ValueError(
                f"volume {tuple(volume.shape)} not divisible by patch {self.patch_shape}"
            )
        return self.norm_out(self.stem(volume).permute(0, 2, 3, 4, 1))


class PositionGenerator(nn.Module):
    """Depthwise 3x3x3 convolution over the token grid (PEG); causal pads depth on one side.

    The convolution always runs in its weight's dtype, also inside a bf16 autocast region:
    a depthwise (``groups == channels``) 3D convolution has no fast bf16 CUDA kernel. On an
    H200 (torch 2.11, cuDNN) its bf16 weight gradient took 98% of the GPU time of a
    paper-scale stage-1 step, which was then 3.9x slower than in fp32; with the convolution
    in fp32 the bf16 step is 1.8x faster than fp32 (``ctrg bench autocast``, 2026-12-04).
    """

    conv_in_weight_dtype: bool = True  # False: let autocast pick (the slow bf16 path)

    def __init__(self, dim: int, causal: bool = True) -> None:
        super().__init__()
        self.causal = causal
        self.conv = nn.Conv3d(dim, dim, 3, groups=dim)

    def forward(self, grid: torch.Tensor) -> torch.Tensor:
        """(B, t, h, w, dim) -> (B, t, h, w, dim)."""
        x = grid.permute(0, 4, 1, 2, 3)  # (B, dim, t, h, w)
        depth_pad = (2, 0) if self.causal else (1, 1)
        x = F.pad(x, (1, 1, 1, 1, *depth_pad))
        if self.conv_in_weight_dtype:
            with torch.autocast(x.device.type, enabled=False):
                x = self.conv(x.to(self.conv.weight.dtype))
        else:
            x = self.conv(x)
        return x.permute(0, 2, 3, 4, 1)


class CosineAttention(nn.Module):
    """Pre-norm multi-head cosine-similarity self-attention (bias-free projections)."""

    def __init__(self, dim: int, heads: int, dim_head: int, scale: float = 8.0) -> None:
        super().__init__()
        inner = heads * dim_head
        self.heads, self.scale = heads, scale
        self.norm = nn.LayerNorm(dim)
        self.to_q = nn.Linear(dim, inner, bias=False)
        self.to_kv = nn.Linear(dim, 2 * inner, bias=False)
        self.q_scale = nn.Parameter(torch.ones(dim_head))
        self.k_scale = nn.Parameter(torch.ones(dim_head))
        self.to_out = nn.Linear(inner, dim, bias=False)

    def forward(self, x: torch.Tensor, bias: torch.Tensor | None = None) -> torch.Tensor:
        """(B, N, dim), bias (heads, N, N) or None -> (B, N, dim)."""
        b, n, _ = x.shape
        x = self.norm(x)
        k, v = self.to_kv(x).chunk(2, dim=-1)
        q, k, v = (t.reshape(b, n, self.heads, -1).transpose(1, 2) for t in (self.to_q(x), k, v))
        q = F.normalize(q, dim=-1) * self.q_scale
        k = F.normalize(k, dim=-1) * self.k_scale
        mask = None if bias is None else bias.to(q.dtype).unsqueeze(0)
        out = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, scale=self.scale)
        return self.to_out(out.transpose(1, 2).reshape(b, n, -1))


class GatedFeedForward(nn.Module):
    """LayerNorm -> Linear(dim, 2*inner) -> GEGLU (value, gate halves) -> Linear(inner, dim)."""

    def __init__(self, dim: int, mult: float = 4.0) -> None:
        super().__init__()
        inner = int(mult * (2 / 3) * dim)
        self.norm = nn.LayerNorm(dim)
        self.up = nn.Linear(dim, 2 * inner, bias=False)
        self.down = nn.Linear(inner, dim, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        value, gate = self.up(self.norm(x)).chunk(2, dim=-1)
        return self.down(value * F.gelu(gate))


class TransformerLayer(nn.Module):
    """PEG + attention + feed-forward, each residual."""

    def __init__(self, dim: int, heads: int, dim_head: int, ff_mult: float, causal: bool) -> None:
        super().__init__()
        self.peg = PositionGenerator(dim, causal)
        self.attn = CosineAttention(dim, heads, dim_head)
        self.ff = GatedFeedForward(dim, ff_mult)


class SpatialPositionBias(nn.Module):
    """Continuous relative position bias over the in-plane patch grid (log distances -> MLP)."""

    def __init__(self, dim: int, heads: int) -> None:
        super().__init__()
        self.layers = nn.ModuleList([nn.Linear(2, dim), nn.Linear(dim, dim), nn.Linear(dim, heads)])

    def forward(self, h: int, w: int) -> torch.Tensor:
        """-> (heads, h*w, h*w)."""
        device = self.layers[0].weight.device
        grid = (
            torch.stack(
                torch.meshgrid(
                    torch.arange(h, device=device), torch.arange(w, device=device), indexing="ij"
                )
            )
            .reshape(2, -1)
            .T
        )  # (hw, 2)
        rel = (grid[:, None, :] - grid[None, :, :]).float()
        x = torch.sign(rel) * torch.log1p(rel.abs())
        for i, layer in enumerate(self.layers):
            x = layer(x)
            if i < len(self.layers) - 1:
                x = F.leaky_relu(x, 0.1)
        return x.permute(2, 0, 1)


class TransformerStack(nn.Module):
    """``depth`` layers and a final LayerNorm."""

    def __init__(
        self, dim: int, depth: int, heads: int, dim_head: int, ff_mult: float, causal: bool
    ) -> None:
        super().__init__()
        self.layers = nn.ModuleList(
            [TransformerLayer(dim, heads, dim_head, ff_mult, causal) for _ in range(depth)]
        )
        self.norm_out = nn.LayerNorm(dim)


class VisionEncoder(nn.Module):
    """3D ViT: (B, C, D, H, W) volume -> (B, N, dim) patch tokens, N = t*h*w.

    Args:
        volume_shape: (D, H, W) input size.
        patch_shape: (pt, ph, pw) patch size; must divide ``volume_shape``.
        dim: token width. heads, dim_head: attention heads. spatial_depth, temporal_depth:
        layers of each transformer. ff_mult: feed-forward width factor. channels: input
        channels. peg_causal: CT-CLIP's one-sided depth padding in the PEG. patch_norm:
        CT-CLIP's LayerNorm over each raw patch (needed to load CT-CLIP weights). stem:
        "linear" (CT-CLIP's patch projection) or "conv" (:class:`ConvPatchEmbed3d`).
    """

    def __init__(
        self,
        volume_shape: tuple[int, int, int],
        patch_shape: tuple[int, int, int],
        dim: int,
        heads: int,
        dim_head: int,
        spatial_depth: int,
        temporal_depth: int,
        ff_mult: float = 4.0,
        channels: int = 1,
        peg_causal: bool = True,
        patch_norm: bool = True,
        stem: str = "linear",
    ) -> None:
        super().__init__()
        if any(v % p for v, p in zip(volume_shape, patch_shape)):
            raise ValueError(
                f"volume_shape {volume_shape} not divisible by patch_shape {patch_shape}"
            )
        self.grid = tuple(v // p for v, p in zip(volume_shape, patch_shape))
        if stem == "linear":
            self.patch_embed: nn.Module = PatchEmbed3d(channels, patch_shape, dim, patch_norm)
        elif stem == "conv":
            self.patch_embed = ConvPatchEmbed3d(channels, patch_shape, dim)
        else:
            raise ValueError(f"stem must be linear or conv, got {stem!r}")
        self.spatial_bias = SpatialPositionBias(dim, heads)
        self.spatial = TransformerStack(dim, spatial_depth, heads, dim_head, ff_mult, peg_causal)
        self.temporal = TransformerStack(dim, temporal_depth, heads, dim_head, ff_mult, peg_causal)

    @property
    def num_patches(self) -> int:
        return self.grid[0] * self.grid[1] * self.grid[2]

    def forward(self, volume: torch.Tensor) -> torch.Tensor:
        """(B, C, D, H, W) -> (B, N, dim)."""
        x = self.patch_embed(volume)  # (B, t, h, w, dim)
        b, t, h, w, dim = x.shape
        bias = self.spatial_bias(h, w)
        for layer in self.spatial.layers:
            x = layer.peg(x) + x
            flat = x.reshape(b * t, h * w, dim)
            flat = layer.attn(flat, bias) + flat
            flat = layer.ff(flat) + flat
            x = flat.reshape(b, t, h, w, dim)
        x = self.spatial.norm_out(x)
        for layer in self.temporal.layers:
            x = layer.peg(x) + x
            flat = x.permute(0, 2, 3, 1, 4).reshape(b * h * w, t, dim)
            flat = layer.attn(flat) + flat
            flat = layer.ff(flat) + flat
            x = flat.reshape(b, h, w, t, dim).permute(0, 3, 1, 2, 4)
        x = self.temporal.norm_out(x)
        return x.reshape(b, t * h * w, dim)

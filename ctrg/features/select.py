"""Patch selection by frozen structure queries (the paper's third idea).

For each structure query, the last co-attention layer's query-to-patch attention is reduced
by a max over heads and the ``k`` patches with the highest score are kept. The decoder then
sees, per structure, the observation token and its ``k`` patch tokens, plus the ``S``
observation tokens once more: ``S + S * (1 + k)`` visual tokens (110 for S=10, k=9) instead
of every patch token. ``assemble_visual_tokens`` builds that sequence; with
``mode="all"`` (the ablation) it returns the observation tokens followed by every patch
token.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

VISUAL_MODES: tuple[str, ...] = ("selected", "all")

# Kinds of visual token (the decoder embeds them so it can tell the slots apart).
TOKEN_OBSERVATION = 0  # one of the S leading observation tokens
TOKEN_STRUCTURE = 1  # the observation token that heads a structure's group of patches
TOKEN_PATCH = 2  # a patch token


@dataclass
class VisualTokens:
    """The decoder's visual input.

    Attributes:
        tokens: (B, T, C) visual tokens.
        kind: (T,) int64 TOKEN_* kind of each slot (shared by the batch).
        structure: (T,) int64 structure index of each slot (S for a patch without one).
        findings: (B, L) finding states in [-1, 1] (+1 present, -1 absent: the frozen
            finding head's decisions, or a training report's own labels), or None (only read
            by a decoder built with ``stage2.finding_tokens``).
    """

    tokens: torch.Tensor
    kind: torch.Tensor
    structure: torch.Tensor
    findings: torch.Tensor | None = None

    def to(self, device: torch.device | str) -> VisualTokens:
        """The same tokens on ``device``."""
        findings = None if self.findings is None else self.findings.to(device)
        return VisualTokens(
            self.tokens.to(device), self.kind.to(device), self.structure.to(device), findings
        )


@dataclass
class PatchSelection:
    """Top-k patches per structure.

    Attributes:
        index: (B, S, k) int64 patch indices, best first.
        score: (B, S, k) float attention score (max over heads) of each chosen patch.
        tokens: (B, S, k, C) the chosen patch tokens.
    """

    index: torch.Tensor
    score: torch.Tensor
    tokens: torch.Tensor


def attention_scores(attention: torch.Tensor) -> torch.Tensor:
    """Reduce query-to-patch attention over heads by a max.

    Args:
        attention: (B, heads, S, N) attention of each structure query over the patches.

    Returns:
        (B, S, N) the max over heads.
    """
    if attention.dim() != 4:
        raise ValueError(f"attention must be (B, heads, S, N), got shape {tuple(attention.shape)}")
    return attention.amax(dim=1)


def select_top_patches(
    attention: torch.Tensor, patch_tokens: torch.Tensor, top_k: int
) -> PatchSelection:
    """Choose each structure's ``top_k`` patches by max-over-heads attention.

    Ties are broken towards the lower patch index (stable sort), so selection is
    deterministic.

    Args:
        attention: (B, heads, S, N) last-layer query-to-patch attention.
        patch_tokens: (B, N, C) patch tokens of the frozen encoder.
        top_k: patches per structure, 1 <= top_k <= N.

    Returns:
        The chosen indices, scores and tokens.
    """
    scores = attention_scores(attention)  # (B, S, N)
    batch, num_structures, num_patches = scores.shape
    if patch_tokens.shape[:2] != (batch, num_patches):
        raise ValueError(
            f"patch_tokens {tuple(patch_tokens.shape)} does not match attention "
            f"{tuple(attention.shape)} (expected (B={batch}, N={num_patches}, C))"
        )
    if not 1 <= top_k <= num_patches:
        raise ValueError(f"top_k must be in [1, {num_patches}], got {top_k}")
    order = torch.argsort(scores, dim=-1, descending=True, stable=True)
    index = order[..., :top_k]  # (B, S, k)
    score = torch.gather(scores, -1, index)
    channels = patch_tokens.shape[-1]
    flat = index.reshape(batch, num_structures * top_k)  # (B, S*k)
    gathered = torch.gather(patch_tokens, 1, flat.unsqueeze(-1).expand(-1, -1, channels))
    tokens = gathered.reshape(batch, num_structures, top_k, channels)
    return PatchSelection(index=index, score=score, tokens=tokens)


def assemble_visual_tokens(
    observation_tokens: torch.Tensor,
    patch_tokens: torch.Tensor,
    mode: str = "selected",
) -> VisualTokens:
    """Build the decoder's visual token sequence.

    ``selected``: ``[obs_1..obs_S, obs_1, p_1,1..p_1,k, ..., obs_S, p_S,1..p_S,k]``,
    length ``S + S * (1 + k)``. ``all``: ``[obs_1..obs_S, p_1..p_N]``, length ``S + N``.

    Args:
        observation_tokens: (B, S, C).
        patch_tokens: (B, S, k, C) selected patches for ``selected``; (B, N, C) for ``all``.
        mode: ``selected`` or ``all``.

    Returns:
        VisualTokens with tokens (B, T, C), kind (T,) and structure (T,) (structure index, or
        S for a patch of the ``all`` mode, which has none).
    """
    batch, num_structures, channels = observation_tokens.shape
    head_kind = torch.full((num_structures,), TOKEN_OBSERVATION, dtype=torch.long)
    head_structure = torch.arange(num_structures)
    if mode == "selected":
        if patch_tokens.dim() != 4 or patch_tokens.shape[:2] != (batch, num_structures):
            raise ValueError(
                f"selected mode needs patch_tokens (B={batch}, S={num_structures}, k, C), "
                f"got {tuple(patch_tokens.shape)}"
            )
        top_k = patch_tokens.shape[2]
        groups = torch.cat([observation_tokens.unsqueeze(2), patch_tokens], dim=2)  # (B,S,1+k,C)
        visual = torch.cat([observation_tokens, groups.reshape(batch, -1, channels)], dim=1)
        group_kind = torch.full((num_structures, 1 + top_k), TOKEN_PATCH, dtype=torch.long)
        group_kind[:, 0] = TOKEN_STRUCTURE
        kind = torch.cat([head_kind, group_kind.reshape(-1)])
        structure = torch.cat([head_structure, head_structure.repeat_interleave(1 + top_k)])
    elif mode == "all":
        if patch_tokens.dim() != 3 or patch_tokens.shape[0] != batch:
            raise ValueError(
                f"all mode needs patch_tokens (B={batch}, N, C), got {tuple(patch_tokens.shape)}"
            )
        num_patches = patch_tokens.shape[1]
        visual = torch.cat([observation_tokens, patch_tokens], dim=1)
        kind = torch.cat([head_kind, torch.full((num_patches,), TOKEN_PATCH, dtype=torch.long)])
        structure = torch.cat(
            [head_structure, torch.full((num_patches,), num_structures, dtype=torch.long)]
        )
    else:
        raise ValueError(f"visual token mode must be one of {VISUAL_MODES}, got {mode!r}")
    return VisualTokens(tokens=visual, kind=kind, structure=structure)

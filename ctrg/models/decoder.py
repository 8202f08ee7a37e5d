"""The default report decoder: a transformer decoder with cross-attention over visual tokens.

Trained from scratch (pre-norm layers, learned positions, tied input/output embeddings).
Both decoder kinds (this one and ``ctrg.models.llm.LLMReportDecoder``) share one interface
used by training and by ``ctrg.models.generation``:

- ``encode_visual(visual) -> state``: per-case conditioning, batch first;
- ``token_logits(state, input_ids) -> (B, L, V)``: teacher-forced logits;
- ``init_cache(state)`` / ``step(state, cache, input_ids) -> (logits (B, V), cache)`` /
  ``reorder_cache(cache, index)``: incremental decoding with a key/value cache.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from ctrg.features.select import VisualTokens


@dataclass
class DecoderConfig:
    """Sizes of the default decoder (the ``stage2.decoder`` config section)."""

    vocab_size: int  # tokenizer ids, special tokens included
    visual_dim: int  # C, the width of the cached visual tokens
    num_structures: int = 10  # S; structure embeddings get one extra "none" slot
    d_model: int = 256  # decoder width
    num_layers: int = 6  # decoder layers
    num_heads: int = 4  # attention heads (d_model % num_heads == 0)
    ff_dim: int = 1024  # feed-forward width
    dropout: float = 0.1  # dropout on residual branches, feed-forward and embeddings
    max_length: int = 256  # most token positions (BOS and EOS included)
    pad_id: int = 0  # padding id (never attended to as a target)
    num_findings: int = 0  # L finding tokens appended to the memory (stage2.finding_tokens)

    def to_dict(self) -> dict[str, Any]:
        """Plain dict (stored in checkpoints)."""
        return asdict(self)


def _split_heads(x: torch.Tensor, heads: int) -> torch.Tensor:
    """(B, L, D) -> (B, heads, L, D / heads)."""
    batch, length, width = x.shape
    return x.view(batch, length, heads, width // heads).transpose(1, 2)


def _merge_heads(x: torch.Tensor) -> torch.Tensor:
    """(B, heads, L, Dh) -> (B, L, heads * Dh)."""
    batch, heads, length, head_dim = x.shape
    return x.transpose(1, 2).reshape(batch, length, heads * head_dim)


class DecoderLayer(nn.Module):
    """Pre-norm layer: causal self-attention, cross-attention to memory, feed-forward.

    Dropout acts on the residual branches and inside the feed-forward, not on attention
    probabilities: that keeps CPU/GPU fused attention kernels usable (no L x T matrix).
    """

    def __init__(self, cfg: DecoderConfig) -> None:
        super().__init__()
        if cfg.d_model % cfg.num_heads:
            raise ValueError(f"d_model {cfg.d_model} not divisible by num_heads {cfg.num_heads}")
        self.heads = cfg.num_heads
        self.norm_self = nn.LayerNorm(cfg.d_model)
        self.self_qkv = nn.Linear(cfg.d_model, 3 * cfg.d_model)
        self.self_out = nn.Linear(cfg.d_model, cfg.d_model)
        self.norm_cross = nn.LayerNorm(cfg.d_model)
        self.cross_q = nn.Linear(cfg.d_model, cfg.d_model)
        self.cross_kv = nn.Linear(cfg.d_model, 2 * cfg.d_model)
        self.cross_out = nn.Linear(cfg.d_model, cfg.d_model)
        self.norm_ff = nn.LayerNorm(cfg.d_model)
        self.ff = nn.Sequential(
            nn.Linear(cfg.d_model, cfg.ff_dim),
            nn.GELU(),
            nn.Dropout(cfg.dropout),
            nn.Linear(cfg.ff_dim, cfg.d_model),
        )
        self.drop = nn.Dropout(cfg.dropout)

    def memory_kv(self, memory: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Cross-attention keys and values, each (B, heads, T, Dh), from memory (B, T, D)."""
        key, value = self.cross_kv(memory).chunk(2, dim=-1)
        return _split_heads(key, self.heads), _split_heads(value, self.heads)

    def forward(
        self,
        hidden: torch.Tensor,
        memory_kv: tuple[torch.Tensor, torch.Tensor],
        past: tuple[torch.Tensor, torch.Tensor] | None = None,
    ) -> tuple[torch.Tensor, tuple[torch.Tensor, torch.Tensor]]:
        """Run the layer on new positions.

        Args:
            hidden: (B, L_new, D) the new positions.
            memory_kv: cross-attention keys/values from :meth:`memory_kv`.
            past: self-attention keys/values (B, heads, L_past, Dh) of earlier positions.

        Returns:
            hidden (B, L_new, D) and the self-attention keys/values of all positions.
        """
        query, key, value = self.self_qkv(self.norm_self(hidden)).chunk(3, dim=-1)
        query, key, value = (_split_heads(t, self.heads) for t in (query, key, value))
        if past is not None:
            key = torch.cat([past[0], key], dim=2)
            value = torch.cat([past[1], value], dim=2)
        new_len, total_len = query.shape[2], key.shape[2]
        if new_len == 1:
            attended = F.scaled_dot_product_attention(query, key, value)
        elif new_len == total_len:
            attended = F.scaled_dot_product_attention(query, key, value, is_causal=True)
        else:  # several new positions after a cache: explicit causal mask with an offset
            offset = total_len - new_len
            mask = torch.ones(new_len, total_len, dtype=torch.bool, device=hidden.device)
            mask = torch.tril(mask, diagonal=offset)
            attended = F.scaled_dot_product_attention(query, key, value, attn_mask=mask)
        hidden = hidden + self.drop(self.self_out(_merge_heads(attended)))
        cross_query = _split_heads(self.cross_q(self.norm_cross(hidden)), self.heads)
        crossed = F.scaled_dot_product_attention(cross_query, *memory_kv)
        hidden = hidden + self.drop(self.cross_out(_merge_heads(crossed)))
        hidden = hidden + self.drop(self.ff(self.norm_ff(hidden)))
        return hidden, (key, value)


class ReportDecoder(nn.Module):
    """Transformer decoder over visual tokens, trained from scratch.

    Args:
        cfg: sizes (see :class:`DecoderConfig`).
    """

    def __init__(self, cfg: DecoderConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self.visual_norm = nn.LayerNorm(cfg.visual_dim)
        self.visual_proj = nn.Linear(cfg.visual_dim, cfg.d_model)
        self.kind_embedding = nn.Embedding(3, cfg.d_model)
        self.structure_embedding = nn.Embedding(cfg.num_structures + 1, cfg.d_model)
        self.token_embedding = nn.Embedding(cfg.vocab_size, cfg.d_model, padding_idx=cfg.pad_id)
        self.position_embedding = nn.Embedding(cfg.max_length, cfg.d_model)
        if cfg.num_findings:
            # finding token l = label_l + state_l * present_l, state +1 present / -1 absent
            self.finding_label = nn.Embedding(cfg.num_findings, cfg.d_model)
            self.finding_present = nn.Embedding(cfg.num_findings, cfg.d_model)
        self.embed_drop = nn.Dropout(cfg.dropout)
        self.layers = nn.ModuleList(DecoderLayer(cfg) for _ in range(cfg.num_layers))
        self.final_norm = nn.LayerNorm(cfg.d_model)
        self.apply(self._init_weights)
        if cfg.num_findings:
            # a projected visual token starts at norm ~ 0.02 sqrt(C) sqrt(D) (LayerNorm, then
            # std-0.02 weights); finding tokens start at the same scale (std 0.02 sqrt(C))
            # instead of 10x smaller, or the decoder's cross-attention never picks them up
            for table in (self.finding_label, self.finding_present):
                nn.init.normal_(table.weight, std=0.02 * cfg.visual_dim**0.5)

    @staticmethod
    def _init_weights(module: nn.Module) -> None:
        if isinstance(module, nn.Linear):
            nn.init.normal_(module.weight, std=0.02)
            if module.bias is not None:
                nn.init.zeros_(module.bias)
        elif isinstance(module, nn.Embedding):
            nn.init.normal_(module.weight, std=0.02)

    def encode_visual(self, visual: VisualTokens) -> torch.Tensor:
        """Project visual tokens to the decoder width.

        Args:
            visual: tokens (B, T, C), kind (T,), structure (T,).

        Returns:
            memory (B, T, D).
        """
        if visual.tokens.shape[-1] != self.cfg.visual_dim:
            raise ValueError(
                f"visual tokens have width {visual.tokens.shape[-1]}, decoder expects "
                f"{self.cfg.visual_dim}"
            )
        memory = self.visual_proj(self.visual_norm(visual.tokens))
        slot = self.kind_embedding(visual.kind) + self.structure_embedding(visual.structure)
        memory = memory + slot.unsqueeze(0)  # (B, T, D)
        if self.cfg.num_findings:
            memory = torch.cat([memory, self.finding_tokens(visual.findings, memory.dtype)], 1)
        return self.embed_drop(memory)

    def finding_tokens(self, states: torch.Tensor | None, dtype: torch.dtype) -> torch.Tensor:
        """Finding states (B, L) in [-1, 1] -> L memory tokens (B, L, D), one per label."""
        if states is None or states.shape[-1] != self.cfg.num_findings:
            got = None if states is None else tuple(states.shape)
            raise ValueError(
                f"decoder expects {self.cfg.num_findings} finding states per case, got {got} "
                "(stage2.finding_tokens needs features of a stage-1 model with a finding head)"
            )
        ids = torch.arange(self.cfg.num_findings, device=states.device)
        value = states.to(dtype)[..., None]  # (B, L, 1)
        return self.finding_label(ids)[None] + value * self.finding_present(ids)[None]

    def _embed(self, input_ids: torch.Tensor, start: int) -> torch.Tensor:
        """Token + position embeddings of ids (B, L) placed at positions start..start+L-1."""
        end = start + input_ids.shape[1]
        if end > self.cfg.max_length:
            raise ValueError(f"sequence of {end} tokens exceeds max_length {self.cfg.max_length}")
        positions = torch.arange(start, end, device=input_ids.device)
        return self.embed_drop(self.token_embedding(input_ids) + self.position_embedding(positions))

    def _logits(self, hidden: torch.Tensor) -> torch.Tensor:
        return F.linear(self.final_norm(hidden), self.token_embedding.weight)

    def token_logits(self, state: torch.Tensor, input_ids: torch.Tensor) -> torch.Tensor:
        """Teacher-forced next-token logits.

        Args:
            state: memory (B, T, D) from :meth:`encode_visual`.
            input_ids: (B, L) ids starting with BOS (right-padded).

        Returns:
            (B, L, V) logits; position i predicts id i + 1.
        """
        hidden = self._embed(input_ids, 0)
        for layer in self.layers:
            hidden, _ = layer(hidden, layer.memory_kv(state))
        return self._logits(hidden)

    def forward(
        self,
        visual_tokens: torch.Tensor,
        kind: torch.Tensor,
        structure: torch.Tensor,
        input_ids: torch.Tensor,
        findings: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Teacher-forced logits (B, L, V) from visual tokens (B, T, C) and ids (B, L)
        (and finding states (B, L_f) with finding tokens).

        Plain tensor arguments so that a DDP wrapper can call it.
        """
        state = self.encode_visual(VisualTokens(visual_tokens, kind, structure, findings))
        return self.token_logits(state, input_ids)

    def init_cache(self, state: torch.Tensor) -> dict[str, Any]:
        """Empty decoding cache holding each layer's cross-attention keys/values."""
        return {"memory": [layer.memory_kv(state) for layer in self.layers], "past": None}

    def step(
        self, state: torch.Tensor, cache: dict[str, Any], input_ids: torch.Tensor
    ) -> tuple[torch.Tensor, dict[str, Any]]:
        """Logits of the next token given all ids so far; only uncached positions are run.

        Args:
            state: memory (B, T, D) (unused beyond the cache, kept for the interface).
            cache: from :meth:`init_cache` or a previous step.
            input_ids: (B, L) all ids so far.

        Returns:
            logits (B, V) for position L, and the updated cache.
        """
        past = cache["past"]
        start = 0 if past is None else past[0][0].shape[2]
        hidden = self._embed(input_ids[:, start:], start)
        new_past = []
        for index, layer in enumerate(self.layers):
            hidden, kv = layer(
                hidden, cache["memory"][index], None if past is None else past[index]
            )
            new_past.append(kv)
        return self._logits(hidden[:, -1]), {"memory": cache["memory"], "past": new_past}

    @staticmethod
    def reorder_cache(cache: dict[str, Any], index: torch.Tensor) -> dict[str, Any]:
        """Select batch rows ``index`` (B',) of every cached tensor (beam search)."""

        def pick(pair: tuple[torch.Tensor, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
            return pair[0].index_select(0, index), pair[1].index_select(0, index)

        past = cache["past"]
        return {
            "memory": [pick(kv) for kv in cache["memory"]],
            "past": None if past is None else [pick(kv) for kv in past],
        }

    @property
    def max_positions(self) -> int:
        """Most token positions (BOS included) the decoder can embed."""
        return self.cfg.max_length


def teacher_forced_loss(
    model: nn.Module,
    visual: VisualTokens,
    token_ids: torch.Tensor,
    pad_id: int,
    label_smoothing: float = 0.0,
    input_dropout: float = 0.0,
    unk_id: int | None = None,
) -> torch.Tensor:
    """Mean cross-entropy of predicting ``token_ids[:, 1:]`` from ``token_ids[:, :-1]``.

    Args:
        model: a decoder (either kind, possibly DDP-wrapped) whose ``forward`` gives logits.
        visual: the batch's visual tokens.
        token_ids: (B, L) ``[BOS] ... [EOS]`` right-padded with ``pad_id``.
        pad_id: padding id; those targets are ignored.
        label_smoothing: cross-entropy label smoothing in [0, 1).
        input_dropout: probability of replacing each decoder *input* token (never the
            first, never padding) by ``unk_id``; targets are unchanged ("word dropout").
            The decoder can then not predict the report from its own prefix alone and has
            to read the visual tokens.
        unk_id: the replacement id (required when ``input_dropout > 0``).

    Returns:
        Scalar loss.
    """
    inputs = token_ids[:, :-1]  # (B, L-1)
    if input_dropout > 0:
        if unk_id is None:
            raise ValueError("input_dropout > 0 needs unk_id (a tokenizer with an unknown token)")
        drop = torch.rand(inputs.shape, device=inputs.device) < input_dropout
        drop[:, 0] = False
        drop &= inputs != pad_id
        inputs = inputs.masked_fill(drop, unk_id)
    extra = {} if visual.findings is None else {"findings": visual.findings}
    logits = model(visual.tokens, visual.kind, visual.structure, inputs, **extra)  # (B, L-1, V)
    targets = token_ids[:, 1:]
    return F.cross_entropy(
        logits.reshape(-1, logits.shape[-1]).float(),
        targets.reshape(-1),
        ignore_index=pad_id,
        label_smoothing=label_smoothing,
    )


def load_stage2(
    path: str | Path, device: torch.device | str = "cpu", merge_lora: bool = False
) -> tuple[nn.Module, Any, dict[str, Any]]:
    """Load ``model.pt`` written by ``ctrg stage2``: (decoder in eval mode, tokenizer, meta).

    ``meta`` holds the rest of the checkpoint (``frozen_hash``, ``visual_tokens``, ``step``,
    ``metrics``, ``config``...). ``merge_lora`` (LLM decoder only, for decoding): fold the
    LoRA adapters into the frozen weights (``generate.merge_lora``).

    Raises:
        ValueError: naming the file when it is not a stage-2 checkpoint.
    """
    state = torch.load(path, map_location="cpu", weights_only=True)
    if not isinstance(state, dict) or "model" not in state or "kind" not in state:
        raise ValueError(f"{path}: not a stage-2 checkpoint (needs 'model' and 'kind' keys)")
    if state["kind"] == "transformer":
        from ctrg.models.tokenizer import ReportTokenizer

        tokenizer = ReportTokenizer.from_json(state["tokenizer"])
        model: nn.Module = ReportDecoder(DecoderConfig(**state["decoder_config"]))
    elif state["kind"] == "llm":
        from ctrg.models.llm import LLMConfig, build_from_path

        model, tokenizer = build_from_path(
            LLMConfig(**state["llm_config"]), state.get("llm_dtype", "float32")
        )
    else:
        raise ValueError(f"{path}: unknown decoder kind {state['kind']!r}")
    model.load_state_dict(state["model"])
    if merge_lora and state["kind"] == "llm":
        model.lm.merge_adapter()  # one matmul per projection per token instead of three
    meta = {k: v for k, v in state.items() if k != "model"}
    return model.to(device).eval(), tokenizer, meta

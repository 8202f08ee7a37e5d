"""Batched greedy and beam-search decoding: the one code path for validation and inference.

Works with any decoder that has the interface described in ``ctrg.models.decoder``
(``encode_visual``, ``init_cache``, ``step``, ``reorder_cache``, ``max_positions``).
Logit processing, in order: repetition penalty (CTRL-style), no-repeat n-gram ban, EOS ban
below ``min_length``; then log-softmax. Lengths count generated tokens (BOS excluded, EOS
excluded).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F

from ctrg.features.select import VisualTokens

log = logging.getLogger(__name__)

STRATEGIES: tuple[str, ...] = ("greedy", "beam")


@dataclass
class GenerationConfig:
    """Decoding settings (the ``generate.decoding`` config section)."""

    strategy: str = "beam"  # greedy | beam
    num_beams: int = 3  # beams per case (beam only)
    min_length: int = 5  # EOS is banned before this many generated tokens
    max_length: int = 200  # most generated tokens
    no_repeat_ngram_size: int = 0  # ban repeating any n-gram of this size (0 = off)
    repetition_penalty: float = 1.0  # > 1 discourages tokens already generated (1 = off)
    length_penalty: float = 1.0  # beam score = sum log p / length ** length_penalty

    def __post_init__(self) -> None:
        if self.strategy not in STRATEGIES:
            raise ValueError(f"strategy must be one of {STRATEGIES}, got {self.strategy!r}")
        if self.num_beams < 1 or self.max_length < 1 or self.min_length < 0:
            raise ValueError(f"invalid generation sizes: {self}")
        if self.min_length > self.max_length:
            raise ValueError(f"min_length {self.min_length} > max_length {self.max_length}")
        if self.repetition_penalty <= 0:
            raise ValueError(f"repetition_penalty must be > 0, got {self.repetition_penalty}")


def banned_ngram_tokens(sequences: torch.Tensor, ngram: int) -> torch.Tensor:
    """Which next tokens would repeat an n-gram already in each row.

    Args:
        sequences: (R, L) ids so far.
        ngram: n-gram size (>= 1).

    Returns:
        (R, K) pairs as a (M, 2) tensor of (row, token) to ban.
    """
    rows, length = sequences.shape
    if ngram < 1 or length < ngram:
        return sequences.new_zeros((0, 2))
    if ngram == 1:
        row_ids = torch.arange(rows, device=sequences.device).repeat_interleave(length)
        return torch.stack([row_ids, sequences.reshape(-1)], dim=1)
    windows = sequences.unfold(1, ngram, 1)  # (R, W, n)
    suffix = sequences[:, length - ngram + 1 :].unsqueeze(1)  # (R, 1, n-1)
    match = (windows[:, :, :-1] == suffix).all(dim=-1)  # (R, W)
    row_ids, window_ids = match.nonzero(as_tuple=True)
    return torch.stack([row_ids, windows[row_ids, window_ids, -1]], dim=1)


def process_logits(
    logits: torch.Tensor,
    sequences: torch.Tensor,
    generated: int,
    eos_id: int,
    cfg: GenerationConfig,
    never: tuple[int, ...] = (),
) -> torch.Tensor:
    """Apply repetition control and the minimum length; return log-probabilities.

    Args:
        logits: (R, V) next-token logits.
        sequences: (R, L) ids so far, BOS first.
        generated: tokens generated so far (L - 1).
        eos_id: end-of-sequence id.
        cfg: decoding settings.
        never: ids that are never generated (BOS, padding): an undertrained model that
            prefers them would otherwise yield empty reports after they are stripped.

    Returns:
        (R, V) log-probabilities with banned tokens at -inf.
    """
    logits = logits.float().clone()
    if never:
        logits[:, list(never)] = float("-inf")
    if cfg.repetition_penalty != 1.0 and generated > 0:
        seen = sequences[:, 1:]
        picked = logits.gather(1, seen)
        picked = torch.where(
            picked > 0, picked / cfg.repetition_penalty, picked * cfg.repetition_penalty
        )
        logits.scatter_(1, seen, picked)
    if cfg.no_repeat_ngram_size > 0:
        banned = banned_ngram_tokens(sequences[:, 1:], cfg.no_repeat_ngram_size)
        logits[banned[:, 0], banned[:, 1]] = float("-inf")
    if generated < cfg.min_length:
        logits[:, eos_id] = float("-inf")
    return F.log_softmax(logits, dim=-1)


def _max_new_tokens(model: Any, cfg: GenerationConfig) -> int:
    limit = getattr(model, "max_positions", None)
    if limit is None:
        return cfg.max_length
    return max(1, min(cfg.max_length, int(limit) - 1))


@torch.no_grad()
def greedy_search(
    model: Any,
    visual: VisualTokens,
    bos_id: int,
    eos_id: int,
    pad_id: int,
    cfg: GenerationConfig,
) -> list[list[int]]:
    """Greedy decoding of a batch.

    Returns:
        One id list per case, without BOS and EOS.
    """
    state = model.encode_visual(visual)
    batch = state.shape[0]
    device = state.device
    sequences = torch.full((batch, 1), bos_id, dtype=torch.long, device=device)
    finished = torch.zeros(batch, dtype=torch.bool, device=device)
    cache = model.init_cache(state)
    for generated in range(_max_new_tokens(model, cfg)):
        logits, cache = model.step(state, cache, sequences)
        logprobs = process_logits(logits, sequences, generated, eos_id, cfg, (bos_id, pad_id))
        chosen = logprobs.argmax(dim=-1)
        chosen = torch.where(finished, torch.full_like(chosen, pad_id), chosen)
        sequences = torch.cat([sequences, chosen.unsqueeze(1)], dim=1)
        finished |= chosen == eos_id
        if bool(finished.all()):
            break
    return [_strip(row, eos_id, pad_id) for row in sequences[:, 1:].tolist()]


def _strip(ids: list[int], eos_id: int, pad_id: int) -> list[int]:
    """Ids up to the first EOS, padding dropped."""
    out: list[int] = []
    for token in ids:
        if token == eos_id:
            break
        if token != pad_id:
            out.append(token)
    return out


class _Hypotheses:
    """The best ``num_beams`` finished hypotheses of one case."""

    def __init__(self, num_beams: int, length_penalty: float) -> None:
        self.num_beams = num_beams
        self.length_penalty = length_penalty
        self.items: list[tuple[float, list[int]]] = []

    def score(self, total_logprob: float, length: int) -> float:
        return total_logprob / max(length, 1) ** self.length_penalty

    def add(self, ids: list[int], total_logprob: float) -> None:
        self.items.append((self.score(total_logprob, len(ids)), ids))
        self.items.sort(key=lambda item: item[0], reverse=True)
        del self.items[self.num_beams :]

    def is_done(self, best_running: float, length: int) -> bool:
        """No running beam can still beat the worst kept hypothesis."""
        if len(self.items) < self.num_beams:
            return False
        return self.score(best_running, length) <= self.items[-1][0]


def _advance_case(
    case: int,
    candidates: tuple[list[float], list[int]],
    vocab: int,
    eos_id: int,
    sequences: torch.Tensor,
    hypotheses: _Hypotheses,
    chosen: tuple[torch.Tensor, torch.Tensor, torch.Tensor],
) -> int:
    """Keep one case's best ``K`` non-EOS continuations; EOS ranked within the top K finishes.

    Args:
        case: batch index; its beams are rows ``case*K .. case*K+K-1``.
        candidates: the case's 2K best (total score, beam * vocab + token), best first.
        vocab: vocabulary size.
        eos_id: end-of-sequence id.
        sequences: (B*K, L) ids so far.
        hypotheses: the case's finished hypotheses (updated).
        chosen: next (scores (B, K), tokens (B, K), source rows (B, K)), filled in place.

    Returns:
        How many beams continue.
    """
    next_scores, next_tokens, next_rows = chosen
    beams = next_scores.shape[1]
    kept = 0
    for rank, (score, flat) in enumerate(zip(*candidates)):
        if score == float("-inf"):
            break
        beam, token = divmod(flat, vocab)
        row = case * beams + beam
        if token == eos_id:
            if rank < beams:
                hypotheses.add(sequences[row, 1:].tolist(), score)
            continue
        next_scores[case, kept], next_tokens[case, kept] = score, token
        next_rows[case, kept] = row
        kept += 1
        if kept == beams:
            break
    return kept


@torch.no_grad()
def beam_search(
    model: Any,
    visual: VisualTokens,
    bos_id: int,
    eos_id: int,
    pad_id: int,
    cfg: GenerationConfig,
) -> list[list[int]]:
    """Batched beam search (``cfg.num_beams`` beams per case).

    Returns:
        The best hypothesis per case, without BOS and EOS.
    """
    beams = cfg.num_beams
    state = model.encode_visual(visual)
    batch, device = state.shape[0], state.device
    state = state.repeat_interleave(beams, dim=0)  # (B*K, ...)
    cache = model.init_cache(state)
    sequences = torch.full((batch * beams, 1), bos_id, dtype=torch.long, device=device)
    beam_scores = torch.zeros(batch, beams, device=device)
    beam_scores[:, 1:] = float("-inf")  # all beams start equal: expand only the first
    hypotheses = [_Hypotheses(beams, cfg.length_penalty) for _ in range(batch)]
    done = [False] * batch
    for generated in range(_max_new_tokens(model, cfg)):
        logits, cache = model.step(state, cache, sequences)
        logprobs = process_logits(logits, sequences, generated, eos_id, cfg, (bos_id, pad_id))
        vocab = logprobs.shape[-1]
        totals = (beam_scores.view(-1, 1) + logprobs).view(batch, beams * vocab)
        top_scores, top_ids = totals.topk(2 * beams, dim=1)
        chosen = (
            torch.full((batch, beams), float("-inf"), device=device),
            torch.full((batch, beams), pad_id, dtype=torch.long, device=device),
            torch.arange(batch * beams, device=device).view(batch, beams).clone(),
        )
        for case in range(batch):
            if done[case]:
                continue
            candidates = (top_scores[case].tolist(), top_ids[case].tolist())
            kept = _advance_case(
                case, candidates, vocab, eos_id, sequences, hypotheses[case], chosen
            )
            best = chosen[0][case].max().item()
            done[case] = kept == 0 or hypotheses[case].is_done(best, generated + 1)
        rows = chosen[2].view(-1)
        sequences = torch.cat([sequences[rows], chosen[1].view(-1, 1)], dim=1)
        cache = model.reorder_cache(cache, rows)
        beam_scores = chosen[0]
        if all(done):
            break
    for case in range(batch):  # cases still running at max length keep their beams
        if not done[case] or not hypotheses[case].items:
            for beam in range(beams):
                score = beam_scores[case, beam].item()
                if score > float("-inf"):
                    row = sequences[case * beams + beam, 1:].tolist()
                    hypotheses[case].add(_strip(row, eos_id, pad_id), score)
    return [hyp.items[0][1] if hyp.items else [] for hyp in hypotheses]


def generate_ids(
    model: Any,
    visual: VisualTokens,
    bos_id: int,
    eos_id: int,
    pad_id: int,
    cfg: GenerationConfig,
) -> list[list[int]]:
    """Decode a batch with ``cfg.strategy``; the model is switched to eval mode."""
    model.eval()
    search = greedy_search if cfg.strategy == "greedy" or cfg.num_beams == 1 else beam_search
    return search(model, visual, bos_id, eos_id, pad_id, cfg)


def generate_reports(
    model: Any, tokenizer: Any, visual: VisualTokens, cfg: GenerationConfig
) -> list[str]:
    """Generate one report per case: the function validation and inference both call.

    Args:
        model: a decoder (either kind).
        tokenizer: has ``bos_id``, ``eos_id``, ``pad_id`` and ``decode(ids)``.
        visual: the batch's visual tokens, on the model's device.
        cfg: decoding settings.

    Returns:
        One report string per case.
    """
    ids = generate_ids(model, visual, tokenizer.bos_id, tokenizer.eos_id, tokenizer.pad_id, cfg)
    return [tokenizer.decode(row) for row in ids]

"""Greedy and beam search on hand-built Markov "decoders", and the logit processors."""

from __future__ import annotations

import itertools
import math

import pytest
import torch

from ctrg.features.select import VisualTokens
from ctrg.models.generation import (
    GenerationConfig,
    banned_ngram_tokens,
    generate_ids,
    process_logits,
)

PAD, BOS, EOS = 0, 1, 2


class MarkovModel:
    """Next-token log-probabilities depend only on the last token (and the case's table)."""

    max_positions = None

    def __init__(self, tables: torch.Tensor) -> None:
        self.tables = tables  # (B, V, V) log-probabilities, row = previous token

    def eval(self) -> MarkovModel:
        return self

    def encode_visual(self, visual: VisualTokens) -> torch.Tensor:
        return visual.tokens[:, 0, :1].long()  # (B, 1): which table each case uses

    def init_cache(self, state: torch.Tensor) -> None:
        return None

    def step(self, state: torch.Tensor, cache: None, ids: torch.Tensor):
        return self.tables[state[:, 0], ids[:, -1]], None

    @staticmethod
    def reorder_cache(cache: None, index: torch.Tensor) -> None:
        return None


def _visual(case_tables: list[int]) -> VisualTokens:
    tokens = torch.tensor(case_tables, dtype=torch.float32).view(-1, 1, 1)
    return VisualTokens(tokens, torch.zeros(1, dtype=torch.long), torch.zeros(1, dtype=torch.long))


def _table(rows: dict[int, dict[int, float]], vocab: int) -> torch.Tensor:
    table = torch.full((vocab, vocab), 1e-9)
    for prev, probs in rows.items():
        for token, prob in probs.items():
            table[prev, token] = prob
    return (table / table.sum(-1, keepdim=True)).log()


def test_greedy_and_beam_differ_by_hand() -> None:
    """BOS -> a .6 / b .4; a -> a .34, b .33, EOS .33; b -> EOS .9, a .1.

    Greedy: a, a, ... (0.6 * 0.34 ...). Beam: 'b EOS' = 0.36 beats 'a EOS' = 0.198.
    """
    a, b = 3, 4
    table = _table(
        {BOS: {a: 0.6, b: 0.4}, a: {a: 0.34, b: 0.33, EOS: 0.33}, b: {EOS: 0.9, a: 0.1}}, vocab=5
    )
    model = MarkovModel(table.unsqueeze(0))
    greedy = GenerationConfig(strategy="greedy", min_length=0, max_length=3)
    assert generate_ids(model, _visual([0]), BOS, EOS, PAD, greedy) == [[a, a, a]]
    beam = GenerationConfig(
        strategy="beam", num_beams=2, min_length=0, max_length=3, length_penalty=0.0
    )
    assert generate_ids(model, _visual([0]), BOS, EOS, PAD, beam) == [[b]]


def _exhaustive_best(table: torch.Tensor, max_length: int) -> list[int]:
    vocab = table.shape[0]
    best, best_score = None, -math.inf
    tokens = [t for t in range(vocab) if t not in (PAD, BOS)]
    for length in range(1, max_length + 1):
        for seq in itertools.product(tokens, repeat=length):
            if EOS in seq[:-1]:
                continue
            if seq[-1] != EOS and length < max_length:
                continue
            prev, score = BOS, 0.0
            for token in seq:  # BOS and PAD are never generated: renormalise over the rest
                score += (table[prev, token] - table[prev, tokens].logsumexp(0)).item()
                prev = token
            if score > best_score:
                best, best_score = [t for t in seq if t != EOS], score
    return best


def test_wide_beam_finds_the_exhaustive_optimum_batched() -> None:
    """Random 6-token tables, 3 cases in one batch: a beam as wide as the search space finds
    the exact best sequence of each case (sum of log-probabilities, length_penalty 0)."""
    generator = torch.Generator().manual_seed(0)
    tables = torch.randn(3, 6, 6, generator=generator).mul(2).log_softmax(-1)
    model = MarkovModel(tables)
    cfg = GenerationConfig(
        strategy="beam", num_beams=64, min_length=0, max_length=4, length_penalty=0.0
    )
    got = generate_ids(model, _visual([0, 1, 2]), BOS, EOS, PAD, cfg)
    assert got == [_exhaustive_best(tables[i], 4) for i in range(3)]


def test_min_length_bans_eos() -> None:
    table = _table({BOS: {EOS: 0.9, 3: 0.1}, 3: {EOS: 0.9, 3: 0.1}}, vocab=4)
    model = MarkovModel(table.unsqueeze(0))
    for strategy in ("greedy", "beam"):
        cfg = GenerationConfig(strategy=strategy, min_length=3, max_length=8, num_beams=2)
        assert generate_ids(model, _visual([0]), BOS, EOS, PAD, cfg) == [[3, 3, 3]]


def test_banned_ngrams_by_hand() -> None:
    seq = torch.tensor([[5, 6, 7, 5, 6]])
    assert banned_ngram_tokens(seq, 3).tolist() == [[0, 7]]
    assert banned_ngram_tokens(seq, 2).tolist() == [[0, 7]]
    assert sorted(banned_ngram_tokens(seq, 1)[:, 1].tolist()) == [5, 5, 6, 6, 7]
    assert banned_ngram_tokens(torch.tensor([[5, 6]]), 3).shape == (0, 2)


def test_no_repeat_ngram_stops_loops() -> None:
    """Always prefers token 3 (then 4, then 5): with unigram ban each appears once."""
    table = _table({t: {3: 0.5, 4: 0.3, 5: 0.15, EOS: 0.05} for t in range(6)}, vocab=6)
    model = MarkovModel(table.unsqueeze(0))
    cfg = GenerationConfig(strategy="greedy", min_length=0, max_length=6, no_repeat_ngram_size=1)
    assert generate_ids(model, _visual([0]), BOS, EOS, PAD, cfg) == [[3, 4, 5]]


def test_repetition_penalty_by_hand() -> None:
    logits = torch.tensor([[2.0, -1.0, 0.5]])
    seq = torch.tensor([[BOS, 0, 1]])  # tokens 0 and 1 already generated
    cfg = GenerationConfig(repetition_penalty=2.0, min_length=0)
    out = process_logits(logits, seq, generated=2, eos_id=EOS, cfg=cfg)
    expected = torch.tensor([[1.0, -2.0, 0.5]]).log_softmax(-1)
    torch.testing.assert_close(out, expected)


def test_invalid_settings_are_refused() -> None:
    with pytest.raises(ValueError, match="strategy"):
        GenerationConfig(strategy="sample")
    with pytest.raises(ValueError, match="min_length"):
        GenerationConfig(min_length=10, max_length=5)


def test_bos_and_padding_are_never_generated():
    logits = torch.tensor([[5.0, 4.0, 1.0, 0.0]])  # BOS-like id 0 and pad-like id 1 lead
    seq = torch.tensor([[0]])
    cfg = GenerationConfig(min_length=0)
    out = process_logits(logits, seq, generated=0, eos_id=3, cfg=cfg, never=(0, 1))
    assert out[0, 0] == float("-inf") and out[0, 1] == float("-inf")
    assert int(out.argmax()) == 2

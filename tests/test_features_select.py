"""Top-k patch selection by max-over-heads attention, with hand-computed expectations."""

from __future__ import annotations

import pytest
import torch

from ctrg.features.select import (
    TOKEN_OBSERVATION,
    TOKEN_PATCH,
    TOKEN_STRUCTURE,
    assemble_visual_tokens,
    attention_scores,
    select_top_patches,
)


def _attention() -> torch.Tensor:
    """(B=1, heads=2, S=2, N=5): max over heads and mean over heads rank differently."""
    head0 = [[0.0, 0.45, 0.45, 0.05, 0.05], [0.2, 0.2, 0.2, 0.3, 0.1]]
    head1 = [[0.5, 0.0, 0.4, 0.05, 0.05], [0.1, 0.1, 0.7, 0.05, 0.05]]
    return torch.tensor([[head0, head1]])


def _patches() -> torch.Tensor:
    """Patch n has token (n, 10 n): the gathered tokens reveal the indices."""
    index = torch.arange(5, dtype=torch.float32)
    return torch.stack([index, 10 * index], dim=-1).unsqueeze(0)  # (1, 5, 2)


def test_max_over_heads() -> None:
    scores = attention_scores(_attention())
    expected = torch.tensor([[[0.5, 0.45, 0.45, 0.05, 0.05], [0.2, 0.2, 0.7, 0.3, 0.1]]])
    torch.testing.assert_close(scores, expected)


def test_top_k_by_hand() -> None:
    chosen = select_top_patches(_attention(), _patches(), top_k=3)
    # structure 0: max = [.5, .45, .45, .05, .05] -> 0, then the tie 1/2 in index order.
    # (mean over heads would give [.25, .225, .425, ...] -> 2, 0, 1: a different choice.)
    # structure 1: max = [.2, .2, .7, .3, .1] -> 2, 3, then the tie 0/1 -> 0.
    assert chosen.index.tolist() == [[[0, 1, 2], [2, 3, 0]]]
    torch.testing.assert_close(chosen.score, torch.tensor([[[0.5, 0.45, 0.45], [0.7, 0.3, 0.2]]]))
    assert chosen.tokens.shape == (1, 2, 3, 2)
    assert chosen.tokens[0, 1].tolist() == [[2.0, 20.0], [3.0, 30.0], [0.0, 0.0]]


def test_selection_errors_name_the_shapes() -> None:
    with pytest.raises(ValueError, match="top_k"):
        select_top_patches(_attention(), _patches(), top_k=6)
    with pytest.raises(ValueError, match="does not match"):
        select_top_patches(_attention(), torch.zeros(1, 4, 2), top_k=2)


def test_visual_tokens_selected_layout() -> None:
    """S=2, k=2: [o0, o1, o0, p00, p01, o1, p10, p11]."""
    observation = torch.tensor([[[100.0], [200.0]]])  # (1, 2, 1)
    patches = torch.tensor([[[[1.0], [2.0]], [[3.0], [4.0]]]])  # (1, 2, 2, 1)
    visual = assemble_visual_tokens(observation, patches, "selected")
    assert visual.tokens[0, :, 0].tolist() == [100, 200, 100, 1, 2, 200, 3, 4]
    o, s, p = TOKEN_OBSERVATION, TOKEN_STRUCTURE, TOKEN_PATCH
    assert visual.kind.tolist() == [o, o, s, p, p, s, p, p]
    assert visual.structure.tolist() == [0, 1, 0, 0, 0, 1, 1, 1]


def test_paper_count_is_110_and_all_mode() -> None:
    observation = torch.zeros(2, 10, 8)
    visual = assemble_visual_tokens(observation, torch.zeros(2, 10, 9, 8), "selected")
    assert visual.tokens.shape == (2, 110, 8)
    everything = assemble_visual_tokens(observation, torch.zeros(2, 216, 8), "all")
    assert everything.tokens.shape == (2, 226, 8)
    assert everything.structure[10:].unique().tolist() == [10]
    with pytest.raises(ValueError, match="mode"):
        assemble_visual_tokens(observation, torch.zeros(2, 216, 8), "some")

"""The default transformer decoder: causality, cache, conditioning, padding, learning."""

from __future__ import annotations

import pytest
import torch
from stage2_helpers import tiny_decoder

from ctrg.features.select import assemble_visual_tokens
from ctrg.models.decoder import teacher_forced_loss
from ctrg.models.generation import GenerationConfig, generate_ids


def _visual(batch: int = 2, seed: int = 1):
    generator = torch.Generator().manual_seed(seed)
    observation = torch.randn(batch, 2, 6, generator=generator)
    patches = torch.randn(batch, 2, 3, 6, generator=generator)
    return assemble_visual_tokens(observation, patches, "selected")  # T = 2 + 2*4 = 10


def test_logits_shape_and_causality() -> None:
    model, visual = tiny_decoder(), _visual()
    ids = torch.tensor([[2, 5, 6, 7, 3], [2, 8, 9, 3, 0]])
    state = model.encode_visual(visual)
    logits = model.token_logits(state, ids)
    assert logits.shape == (2, 5, 20)
    changed = ids.clone()
    changed[:, 3:] = 11
    again = model.token_logits(state, changed)
    torch.testing.assert_close(logits[:, :3], again[:, :3])
    assert not torch.allclose(logits[:, 3:], again[:, 3:])


def test_cached_steps_match_full_forward() -> None:
    model, visual = tiny_decoder(), _visual()
    ids = torch.tensor([[2, 5, 6, 7, 4], [2, 8, 9, 10, 11]])
    state = model.encode_visual(visual)
    full = model.token_logits(state, ids)
    cache = model.init_cache(state)
    for length in range(1, 6):
        step_logits, cache = model.step(state, cache, ids[:, :length])
        torch.testing.assert_close(step_logits, full[:, length - 1], atol=1e-5, rtol=1e-5)
    # several new positions at once after a cache (offset causal mask)
    cache = model.init_cache(state)
    _, cache = model.step(state, cache, ids[:, :2])
    logits, _ = model.step(state, cache, ids)
    torch.testing.assert_close(logits, full[:, -1], atol=1e-5, rtol=1e-5)


def test_visual_tokens_condition_the_logits() -> None:
    model = tiny_decoder()
    ids = torch.tensor([[2, 5, 6]])
    first = model.token_logits(model.encode_visual(_visual(1, seed=1)), ids)
    second = model.token_logits(model.encode_visual(_visual(1, seed=2)), ids)
    assert (first - second).abs().max() > 1e-3


def test_padding_does_not_change_the_loss() -> None:
    model, visual = tiny_decoder(), _visual(1)
    short = torch.tensor([[2, 5, 6, 3]])
    padded = torch.tensor([[2, 5, 6, 3, 0, 0]])
    torch.testing.assert_close(
        teacher_forced_loss(model, visual, short, pad_id=0),
        teacher_forced_loss(model, visual, padded, pad_id=0),
    )


def test_learns_image_dependent_reports_and_generates_them() -> None:
    """Two images, two reports: after training, greedy decoding returns each image's report."""
    model = tiny_decoder().train()
    visual = _visual(2)
    reports = torch.tensor([[2, 5, 6, 7, 3], [2, 9, 8, 3, 0]])
    optimizer = torch.optim.AdamW(model.parameters(), lr=3e-3)
    for _ in range(150):
        loss = teacher_forced_loss(model, visual, reports, pad_id=0)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    assert loss.item() < 0.05
    for strategy in ("greedy", "beam"):
        cfg = GenerationConfig(strategy=strategy, num_beams=3, min_length=1, max_length=10)
        generated = generate_ids(model, visual, bos_id=2, eos_id=3, pad_id=0, cfg=cfg)
        assert generated == [[5, 6, 7], [9, 8]]


class _Recorder(torch.nn.Module):
    """Stands in for a decoder: records its input ids, returns uniform logits."""

    def __init__(self, vocab: int) -> None:
        super().__init__()
        self.vocab, self.seen = vocab, None

    def forward(self, tokens, kind, structure, input_ids):  # type: ignore[no-untyped-def]
        self.seen = input_ids.clone()
        return torch.zeros(*input_ids.shape, self.vocab, requires_grad=True)


def test_input_dropout_replaces_inputs_but_not_first_pad_or_targets():
    from ctrg.features.select import VisualTokens

    visual = VisualTokens(torch.zeros(2, 1, 4), torch.zeros(1).long(), torch.zeros(1).long())
    ids = torch.tensor([[2, 5, 6, 7, 3, 0, 0], [2, 8, 9, 3, 0, 0, 0]])  # BOS=2 EOS=3 pad=0
    model = _Recorder(vocab=10)
    plain = teacher_forced_loss(model, visual, ids, pad_id=0)
    assert torch.equal(model.seen, ids[:, :-1])
    torch.manual_seed(0)
    dropped = teacher_forced_loss(model, visual, ids, 0, input_dropout=0.95, unk_id=1)
    seen = model.seen
    assert torch.equal(seen[:, 0], ids[:, 0])  # the first input is never dropped
    assert torch.equal(seen == 0, ids[:, :-1] == 0)  # padding stays padding
    assert ((seen == 1) | (seen == ids[:, :-1])).all() and (seen == 1).sum() >= 4
    # uniform logits: the loss is log(V) over the same 7 targets either way
    assert torch.allclose(plain, dropped) and torch.allclose(plain, torch.log(torch.tensor(10.0)))
    with pytest.raises(ValueError, match="unk_id"):
        teacher_forced_loss(model, visual, ids, 0, input_dropout=0.5)

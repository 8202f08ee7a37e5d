"""The default transformer decoder: causality, cache, conditioning, padding, learning."""

from __future__ import annotations

import torch

from ctrg.features.select import assemble_visual_tokens
from ctrg.models.decoder import DecoderConfig, ReportDecoder, teacher_forced_loss
from ctrg.models.generation import GenerationConfig, generate_ids


def _decoder(**overrides: int | float) -> ReportDecoder:
    torch.manual_seed(0)
    sizes = dict(
        vocab_size=20,
        visual_dim=6,
        num_structures=2,
        d_model=32,
        num_layers=2,
        num_heads=4,
        ff_dim=64,
        dropout=0.0,
        max_length=16,
    )
    sizes.update(overrides)
    return ReportDecoder(DecoderConfig(**sizes)).eval()


def _visual(batch: int = 2, seed: int = 1):
    generator = torch.Generator().manual_seed(seed)
    observation = torch.randn(batch, 2, 6, generator=generator)
    patches = torch.randn(batch, 2, 3, 6, generator=generator)
    return assemble_visual_tokens(observation, patches, "selected")  # T = 2 + 2*4 = 10


def test_logits_shape_and_causality() -> None:
    model, visual = _decoder(), _visual()
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
    model, visual = _decoder(), _visual()
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
    model = _decoder()
    ids = torch.tensor([[2, 5, 6]])
    first = model.token_logits(model.encode_visual(_visual(1, seed=1)), ids)
    second = model.token_logits(model.encode_visual(_visual(1, seed=2)), ids)
    assert (first - second).abs().max() > 1e-3


def test_padding_does_not_change_the_loss() -> None:
    model, visual = _decoder(), _visual(1)
    short = torch.tensor([[2, 5, 6, 3]])
    padded = torch.tensor([[2, 5, 6, 3, 0, 0]])
    torch.testing.assert_close(
        teacher_forced_loss(model, visual, short, pad_id=0),
        teacher_forced_loss(model, visual, padded, pad_id=0),
    )


def test_learns_image_dependent_reports_and_generates_them() -> None:
    """Two images, two reports: after training, greedy decoding returns each image's report."""
    model = _decoder().train()
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

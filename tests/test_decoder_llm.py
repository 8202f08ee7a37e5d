"""The LoRA causal-LM decoder on a tiny randomly initialised Llama (built here, no download)."""

from __future__ import annotations

import pytest
import torch

from ctrg.features.select import assemble_visual_tokens
from ctrg.models.decoder import teacher_forced_loss
from ctrg.models.generation import GenerationConfig, generate_ids, generate_reports
from ctrg.models.llm import HFReportTokenizer, LLMConfig, build_llm_decoder
from ctrg.models.tokenizer import train_tokenizer

transformers = pytest.importorskip("transformers")
pytest.importorskip("peft")

REPORTS = [
    "The heart is normal in size. No pleural effusion.",
    "A 5 mm nodule in the right upper lobe. Small pleural effusion on the left.",
    "Emphysema in both lungs. The trachea is patent.",
] * 4


@pytest.fixture(scope="module")
def tokenizer() -> HFReportTokenizer:
    trained = train_tokenizer(
        REPORTS + ["<Img></Img> Describe the scan."],
        kind="wordpiece",
        vocab_size=120,
        min_frequency=1,
    )
    fast = transformers.PreTrainedTokenizerFast(
        tokenizer_object=trained.tokenizer,
        bos_token="[BOS]",
        eos_token="[EOS]",
        pad_token="[PAD]",
        unk_token="[UNK]",
    )
    return HFReportTokenizer(fast)


def _model(tokenizer: HFReportTokenizer):
    torch.manual_seed(0)
    config = transformers.LlamaConfig(
        vocab_size=tokenizer.vocab_size,
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=256,
        initializer_range=0.3,
        bos_token_id=tokenizer.bos_id,
        eos_token_id=tokenizer.eos_id,
        pad_token_id=tokenizer.pad_id,
    )
    language_model = transformers.LlamaForCausalLM(config)
    cfg = LLMConfig(
        visual_dim=6,
        projector_hidden=16,
        lora_r=4,
        lora_alpha=8,
        lora_dropout=0.0,
        prompt=" Describe the scan.",
        max_length=40,
    )
    return build_llm_decoder(cfg, language_model, tokenizer)


def _visual(batch: int = 2):
    generator = torch.Generator().manual_seed(3)
    return assemble_visual_tokens(
        torch.randn(batch, 2, 6, generator=generator),
        torch.randn(batch, 2, 3, 6, generator=generator),
    )


def _batch(tokenizer: HFReportTokenizer, texts: list[str]) -> torch.Tensor:
    rows = [tokenizer.encode(text) for text in texts]
    width = max(map(len, rows))
    return torch.tensor([row + [tokenizer.pad_id] * (width - len(row)) for row in rows])


def test_only_lora_and_projector_train(tokenizer: HFReportTokenizer) -> None:
    model = _model(tokenizer)
    trainable = [name for name, p in model.named_parameters() if p.requires_grad]
    assert trainable and all("lora_" in n or n.startswith("projector.") for n in trainable)
    for proj in ("q_proj", "k_proj", "v_proj", "o_proj"):
        assert any(proj in n for n in trainable), proj
    assert set(model.state_dict()) == set(trainable)  # checkpoints hold adapters only


def test_cached_decoding_matches_teacher_forcing(tokenizer: HFReportTokenizer) -> None:
    model = _model(tokenizer).eval()
    ids = _batch(tokenizer, REPORTS[:2])[:, :6]
    with torch.no_grad():
        state = model.encode_visual(_visual())
        full = model.token_logits(state, ids)
        cache = model.init_cache(state)
        for length in range(1, ids.shape[1] + 1):
            logits, cache = model.step(state, cache, ids[:, :length])
            torch.testing.assert_close(logits, full[:, length - 1], atol=1e-4, rtol=1e-4)
    assert full.shape == (2, 6, tokenizer.vocab_size)


def test_training_lowers_loss_and_state_round_trips(tokenizer: HFReportTokenizer) -> None:
    model = _model(tokenizer).train()
    visual, ids = _visual(), _batch(tokenizer, REPORTS[:2])
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=3e-2)
    first = teacher_forced_loss(model, visual, ids, tokenizer.pad_id).item()
    for _ in range(20):
        loss = teacher_forced_loss(model, visual, ids, tokenizer.pad_id)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    assert loss.item() < 0.5 * first
    model.eval()
    reloaded = _model(tokenizer).eval()
    reloaded.load_state_dict(model.state_dict())
    with torch.no_grad():
        torch.testing.assert_close(
            reloaded.token_logits(reloaded.encode_visual(visual), ids),
            model.token_logits(model.encode_visual(visual), ids),
        )
    with pytest.raises(ValueError, match="missing"):
        reloaded.load_state_dict({})


def test_greedy_and_beam_generation_run_batched(tokenizer: HFReportTokenizer) -> None:
    model = _model(tokenizer)
    visual = _visual(3)
    greedy = GenerationConfig(strategy="greedy", min_length=2, max_length=6)
    one_beam = GenerationConfig(strategy="beam", num_beams=1, min_length=2, max_length=6)
    ids = generate_ids(model, visual, tokenizer.bos_id, tokenizer.eos_id, tokenizer.pad_id, greedy)
    assert len(ids) == 3 and all(2 <= len(row) <= 6 for row in ids)
    assert ids == generate_ids(
        model, visual, tokenizer.bos_id, tokenizer.eos_id, tokenizer.pad_id, one_beam
    )
    beam = GenerationConfig(strategy="beam", num_beams=3, min_length=2, max_length=6)
    texts = generate_reports(model, tokenizer, visual, beam)
    assert len(texts) == 3 and all(isinstance(text, str) for text in texts)

"""The ``llm`` section of ``ctrg bench speed``: the authors' stage-2 decoder at its real size.

The authors' final decoder is LLaMA-2-7B with LoRA adapters and a 2-layer MLP visual prefix
(``ctrg.models.llm``). No LLaMA weights ship offline, and random weights cost the same
arithmetic and memory, so the language model is built from its published shape with random
weights directly on the device (``--llm llama2-7b``); ``--llm tiny`` is a 2-layer model of the
same family for CPU checks. Measured: one LoRA training step (forward, backward through the
frozen LM, AdamW on the adapters and the projector) on ``B`` reports of the config's report
length behind ``S + S*(1+k)`` visual tokens and the prompt, its peak memory (model build
included, so the frozen weights count), and greedy decoding of one report to the authors'
cap of new tokens with EOS banned (the worst case), with the adapters separate (as trained)
and merged into the frozen weights (``merge_adapter``). Prompt lengths are those of the LLaMA
tokenizer on the authors' prompt; the prompt ids themselves are random.
"""

from __future__ import annotations

from typing import Any

import torch

from ctrg.anatomy import CHEST_STRUCTURES
from ctrg.bench.timing import MB, amp_enabled, autocast, median_seconds, peak_memory
from ctrg.features.select import VisualTokens, assemble_visual_tokens
from ctrg.models.decoder import teacher_forced_loss
from ctrg.models.generation import GenerationConfig, generate_ids
from ctrg.models.llm import DTYPES, LLMConfig, LLMReportDecoder

LLAMA_SHAPES: dict[str, dict[str, int]] = {
    "tiny": {  # 2 layers of the same family: CPU tests of this section
        "hidden_size": 64,
        "intermediate_size": 172,
        "num_hidden_layers": 2,
        "num_attention_heads": 4,
        "num_key_value_heads": 4,
        "vocab_size": 1000,
    },
    "llama2-7b": {  # meta-llama/Llama-2-7b-hf config.json
        "hidden_size": 4096,
        "intermediate_size": 11008,
        "num_hidden_layers": 32,
        "num_attention_heads": 32,
        "num_key_value_heads": 32,
        "vocab_size": 32000,
    },
}
LLM_CHOICES: tuple[str, ...] = ("none", *LLAMA_SHAPES)
PREFIX_TOKENS = 4  # LLaMA tokens of "<Img>"
SUFFIX_TOKENS = 21  # LLaMA tokens of "</Img>" + the authors' instruction
NEW_TOKENS = 330  # the authors' cap on generated tokens
BOS_ID, EOS_ID, PAD_ID = 1, 2, 0  # LLaMA's ids (pad: none in LLaMA, 0 = <unk> here)


def build_language_model(shape: str, dtype: torch.dtype, device: torch.device) -> Any:
    """A LLaMA causal LM of ``LLAMA_SHAPES[shape]`` with random weights, built on ``device``."""
    from transformers import LlamaConfig, LlamaForCausalLM

    config = LlamaConfig(**LLAMA_SHAPES[shape], max_position_embeddings=4096)
    previous = torch.get_default_dtype()
    torch.set_default_dtype(dtype)  # weights are created in the LM's dtype, never in fp32
    try:
        with device:
            model = LlamaForCausalLM(config)
    finally:
        torch.set_default_dtype(previous)
    return model


def _visual_tokens(batch: int, structures: int, top_k: int, dim: int, device: torch.device):
    """Random selected-patch tokens: (B, S + S*(1+k), C)."""
    observation = torch.randn(batch, structures, dim)  # (B, S, C)
    patches = torch.randn(batch, structures, top_k, dim)  # (B, S, k, C)
    visual = assemble_visual_tokens(observation, patches, "selected")
    return VisualTokens(
        visual.tokens.to(device), visual.kind.to(device), visual.structure.to(device)
    )


def build_decoder(
    shape: str, section: dict[str, Any], visual_dim: int, device: torch.device
) -> LLMReportDecoder:
    """LoRA-wrapped random LM + MLP projector, as ``ctrg stage2`` builds ``decoder_kind: llm``."""
    llm = section["llm"]
    cfg = LLMConfig(
        visual_dim=visual_dim,
        projector_hidden=llm["projector_hidden"],
        lora_r=llm["lora_r"],
        lora_alpha=llm["lora_alpha"],
        lora_dropout=llm["lora_dropout"],
        lora_target_modules=list(llm["lora_target_modules"]),
        max_length=section["max_report_tokens"],
    )
    language_model = build_language_model(shape, DTYPES[llm["dtype"]], device)
    vocab = LLAMA_SHAPES[shape]["vocab_size"]
    prefix = torch.randint(3, vocab, (PREFIX_TOKENS,)).tolist()
    suffix = torch.randint(3, vocab, (SUFFIX_TOKENS,)).tolist()
    return LLMReportDecoder(cfg, language_model, prefix, suffix).to(device)


def bench_llm(shape: str, setup: Any, batch_size: int) -> dict[str, Any]:
    """Training step, peak memory and worst-case decode of the LLM decoder.

    Args:
        shape: a key of ``LLAMA_SHAPES``.
        setup: ``ctrg.bench.speed.Setup``: its ``stage2`` section (``llm``, ``optim``,
            ``max_report_tokens``), device, visual_dim, top_k, repeats (decodes) and
            train_steps (timed training steps, median).
        batch_size: reports per training step.
    """
    torch.manual_seed(0)
    section = setup.stage2
    device, amp = setup.device, section["optim"]["amp"]
    vocab, length = LLAMA_SHAPES[shape]["vocab_size"], section["max_report_tokens"]
    visual = _visual_tokens(
        batch_size, len(CHEST_STRUCTURES), setup.top_k, setup.visual_dim, device
    )
    ids = torch.randint(3, vocab, (batch_size, length), device=device)  # (B, L)
    ids[:, 0] = BOS_ID

    def step() -> None:
        with autocast(amp, device):
            loss = teacher_forced_loss(decoder, visual, ids, pad_id=PAD_ID)
        if not torch.isfinite(loss):
            raise FloatingPointError(f"LLM decoder loss is {loss.item()}")
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    with peak_memory(device) as memory:
        decoder = build_decoder(shape, section, setup.visual_dim, device).train()
        trainable = [p for p in decoder.parameters() if p.requires_grad]
        optimizer = torch.optim.AdamW(trainable, lr=section["optim"]["lr"])
        step()  # warm-up: optimizer state exists from here on
    step_s = median_seconds(step, setup.train_steps, device)
    decode_s, tokens = _decode_seconds(decoder, setup)
    decoder.lm.merge_adapter()  # LoRA folded into the frozen weights: plain LLaMA per token
    try:
        merged_s, _ = _decode_seconds(decoder, setup)
    finally:
        decoder.lm.unmerge_adapter()
    return {
        "shape": shape,
        "parameters": sum(p.numel() for p in decoder.parameters()),
        "trainable_parameters": sum(p.numel() for p in trainable),
        "batch_size": batch_size,
        "sequence_tokens": PREFIX_TOKENS + int(visual.tokens.shape[1]) + SUFFIX_TOKENS + length,
        "step_s": step_s,
        "reports_per_s": batch_size / step_s,
        "peak_mb": memory["bytes"] / MB,
        "memory_kind": memory["kind"],
        "decode_s": decode_s,
        "generated_tokens": tokens,
        "ms_per_token": decode_s / max(tokens, 1) * 1e3,
        "decode_merged_s": merged_s,
        "dtype": section["llm"]["dtype"],
        "amp": "bf16" if amp_enabled(amp, device) else "off",
    }


def _decode_seconds(decoder: LLMReportDecoder, setup: Any) -> tuple[float, int]:
    """Median seconds to decode one report of ``NEW_TOKENS`` greedy tokens (EOS banned)."""
    section = setup.stage2
    visual = _visual_tokens(1, len(CHEST_STRUCTURES), setup.top_k, setup.visual_dim, setup.device)
    cap = min(NEW_TOKENS, section["max_report_tokens"] - 1)
    full = GenerationConfig(strategy="greedy", num_beams=1, min_length=cap, max_length=cap)
    warm = GenerationConfig(strategy="greedy", num_beams=1, min_length=0, max_length=2)
    with autocast(section["optim"]["amp"], setup.device):
        generate_ids(decoder, visual, BOS_ID, EOS_ID, PAD_ID, warm)
        produced: list[int] = []

        def run() -> None:
            produced[:] = generate_ids(decoder, visual, BOS_ID, EOS_ID, PAD_ID, full)[0]

        seconds = median_seconds(run, setup.repeats, setup.device)
    return seconds, len(produced)

"""``ctrg stage2`` / ``generate-features`` with decoder_kind = llm on a tiny local Llama.

The language model and its tokenizer are built here, randomly initialised, and saved to a
temporary folder (nothing downloads); stage 2 loads them from ``stage2.llm.model_path``.
"""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest
import torch
from stage2_helpers import stage2_argv, write_config
from test_stage2_train import HASH_A, TEXTS, _cache, _generate_config

from ctrg import generate
from ctrg.models.decoder import load_stage2
from ctrg.models.tokenizer import train_tokenizer
from ctrg.train import stage2

transformers = pytest.importorskip("transformers")
pytest.importorskip("peft")


def _local_llama(folder: Path) -> Path:
    trained = train_tokenizer(
        [*TEXTS, "<Img></Img> Describe the scan."] * 3,
        kind="wordpiece",
        vocab_size=120,
        min_frequency=1,
    )
    tokenizer = transformers.PreTrainedTokenizerFast(
        tokenizer_object=trained.tokenizer,
        bos_token="[BOS]",
        eos_token="[EOS]",
        pad_token="[PAD]",
        unk_token="[UNK]",
    )
    torch.manual_seed(0)
    config = transformers.LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=256,
        initializer_range=0.3,
        bos_token_id=2,
        eos_token_id=3,
        pad_token_id=0,
    )
    transformers.LlamaForCausalLM(config).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


def _merged_decoder_matches(unmerged: torch.nn.Module, merged: torch.nn.Module) -> None:
    """generate.merge_lora: adapters folded into the weights, same fp32 logits."""
    lora_layers = [m for m in merged.modules() if hasattr(m, "merged_adapters")]
    assert lora_layers and all(m.merged for m in lora_layers)
    assert not any(m.merged for m in unmerged.modules() if hasattr(m, "merged_adapters"))
    generator = torch.Generator().manual_seed(1)
    tokens = torch.randn(2, 5, 16, generator=generator)  # (B, T, C) visual tokens
    kind, structure = torch.zeros(5, dtype=torch.long), torch.zeros(5, dtype=torch.long)
    ids = torch.randint(4, 50, (2, 7), generator=generator)
    with torch.no_grad():
        expected = unmerged(tokens, kind, structure, ids)
        got = merged(tokens, kind, structure, ids)
    assert expected.abs().max() > 0.1  # not a trivially flat output
    torch.testing.assert_close(got, expected, rtol=1e-4, atol=1e-4)


def test_llm_decoder_trains_exports_and_generates(tmp_path: Path) -> None:
    before = torch.get_num_threads()
    cache = _cache(tmp_path / "features", HASH_A, cases=30)
    llm = {
        "model_path": str(_local_llama(tmp_path / "llama")),
        "dtype": "float32",
        "projector_hidden": 16,
        "lora_r": 4,
        "lora_alpha": 8,
        "lora_dropout": 0.0,
        "prompt": " Describe the scan.",
    }
    section = {
        "decoder_kind": "llm",
        "batch_size": 4,
        "max_report_tokens": 40,
        "llm": llm,
        "optim": {"lr": 0.01},
        "loop": {"max_steps": 6, "eval_every": 3, "checkpoint_every": 3, "log_every": 3},
        "validation": {"max_cases": 2, "decoding": {"min_length": 1, "max_length": 8}},
    }
    out = tmp_path / "stage2"
    argv = stage2_argv(write_config(tmp_path / "stage2.json", "stage2", section), cache, out)
    try:
        assert stage2.main(argv) == 0
        summary = json.loads((out / "summary.json").read_text())
        assert summary["decoder_kind"] == "llm" and summary["steps"] == 6
        state = torch.load(out / "model.pt", weights_only=True)
        assert state["model"] and all(
            "lora_" in k or k.startswith("projector.") for k in state["model"]
        )  # adapters only
        model, tokenizer, meta = load_stage2(out / "model.pt")
        assert meta["kind"] == "llm" and tokenizer.bos_id == 2
        _merged_decoder_matches(model, load_stage2(out / "model.pt", merge_lora=True)[0])
        predictions = tmp_path / "predictions.csv"
        gen = [
            "--model",
            str(out / "model.pt"),
            "--reports",
            str(cache / "reports.csv"),
            "--config",
            str(_generate_config(tmp_path / "g.json")),
            "--out",
            str(predictions),
            "--threads",
            "1",
        ]
        assert generate.main([str(cache / "index.csv"), *gen]) == 0
    finally:
        torch.set_num_threads(before)
    frame = pd.read_csv(predictions, keep_default_na=False)
    assert len(frame) == 4 and list(frame.columns) == [
        "case_id",
        "split",
        "reference",
        "prediction",
    ]

"""Shared builders for the stage-2 tests: a tiny decoder, stage configs and command lines."""

from __future__ import annotations

import json
from pathlib import Path

import torch

from ctrg.models.decoder import DecoderConfig, ReportDecoder

TINY_DECODER = {"d_model": 32, "num_layers": 2, "num_heads": 2, "ff_dim": 64, "dropout": 0.0}
"""Decoder sizes of the tiny stage-2 trainings (stage2.decoder)."""


def tiny_decoder(**overrides: int | float) -> ReportDecoder:
    """A seeded 2-layer ReportDecoder over 6-channel visual tokens of 2 structures, in eval."""
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


def tiny_stage2_section(**overrides: object) -> dict:
    """A stage2 config section that trains the tiny decoder in seconds (top-level keys
    replaced by ``overrides``)."""
    section = {
        "batch_size": 8,
        "tokenizer": {"vocab_size": 300, "min_frequency": 1},
        "decoder": dict(TINY_DECODER),
        "optim": {"lr": 0.003},
        "loop": {"max_steps": 40, "eval_every": 20, "checkpoint_every": 20, "log_every": 10},
        "validation": {"max_cases": 4, "decoding": {"min_length": 1, "max_length": 30}},
    }
    section.update(overrides)
    return section


def write_config(path: Path, name: str, section: dict) -> Path:
    """A resolved stage config as ``ctrg run-config`` writes it (seed 0, run t, CPU)."""
    payload = {"section": name, "seed": 0, "run": "t", "device": "cpu", name: section}
    path.write_text(json.dumps(payload))
    return path


def stage2_argv(config: Path, cache: Path, out: Path, labels: bool = False) -> list[str]:
    """``ctrg stage2`` arguments over a feature cache holding index.csv and reports.csv
    (and labels.csv, passed with ``labels``), one thread."""
    argv = ["--config", str(config), "--features", str(cache / "index.csv")]
    argv += ["--reports", str(cache / "reports.csv"), "--out", str(out), "--threads", "1"]
    return [*(["--labels", str(cache / "labels.csv")] if labels else []), *argv]

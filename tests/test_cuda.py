"""CUDA paths on tiny sizes: run them where a GPU is (``pytest tests/test_cuda.py``).

Skipped without CUDA, so CI (CPU only) skips them; they ran on an H200 on 2026-12-04
(docs/speed_gpu.md). They check that the code runs on the GPU with bf16 autocast and agrees
with the CPU, not its speed.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from stage1_helpers import make_tiny_data, stage1_argv, tiny_config, write_config

from ctrg.models.observer import load_stage1
from ctrg.models.vision import PositionGenerator
from ctrg.train import stage1

pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU"),
]


def test_stage1_trains_on_cuda_with_bf16_autocast(tmp_path) -> None:
    paths = make_tiny_data(tmp_path)
    payload = tiny_config()
    payload["device"] = "cuda"  # amp: auto -> bf16 autocast on CUDA
    out = tmp_path / "out"
    assert stage1.main(stage1_argv(paths, write_config(tmp_path, payload), out, "never")) == 0
    summary = json.loads((out / "summary.json").read_text())
    assert summary["steps"] == 6 and summary["device"].startswith("cuda")
    records = [json.loads(line) for line in (out / "train_log.jsonl").read_text().splitlines()]
    assert all(np.isfinite(r["loss"]) for r in records if r["kind"] == "train")
    observer = load_stage1(out / "model.pt").eval()  # weights_only load onto the CPU
    volume = torch.randn(2, 1, 16, 32, 32)
    with torch.no_grad():
        on_cpu = observer.encode_volume(volume).observation_embeddings
        on_gpu = observer.cuda().encode_volume(volume.cuda()).observation_embeddings
    torch.testing.assert_close(on_gpu.cpu(), on_cpu, rtol=1e-2, atol=1e-2)  # TF32 convs


def test_position_generator_under_cuda_autocast_matches_fp32() -> None:
    torch.manual_seed(0)
    peg = PositionGenerator(16).cuda()
    grid = torch.randn(2, 4, 6, 6, 16, device="cuda")  # (B, t, h, w, dim)
    plain = peg(grid)
    with torch.autocast("cuda", dtype=torch.bfloat16):
        inside = peg(grid)
    assert inside.dtype == torch.float32
    torch.testing.assert_close(inside, plain, rtol=0, atol=0)

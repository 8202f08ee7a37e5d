"""``ctrg bench stage2-memory`` runs and its memory grows with the visual tokens (no timing checks)."""

from __future__ import annotations

import json
from pathlib import Path

import torch

from ctrg.bench import stage2_memory


def test_bench_rows_and_memory_order(tmp_path: Path, capsys) -> None:
    before = torch.get_num_threads()
    out = tmp_path / "bench.json"
    config = tmp_path / "stage2.json"
    decoder = {"d_model": 32, "num_layers": 2, "num_heads": 2, "ff_dim": 64}
    config.write_text(json.dumps({"section": "stage2", "seed": 0, "stage2": {"decoder": decoder}}))
    argv = [
        "--config",
        str(config),
        "--batch-size",
        "2",
        "--report-tokens",
        "16",
        "--patches",
        "216",
        "2048",
        "--repeats",
        "1",
        "--threads",
        "1",
        "--json",
        str(out),
    ]
    try:
        assert stage2_memory.main(argv) == 0
    finally:
        torch.set_num_threads(before)
    rows = json.loads(out.read_text())["rows"]
    assert [row["visual_tokens"] for row in rows] == [110, 226, 2058]
    peaks = [row["peak_mb"] for row in rows]
    assert 0 < peaks[0] < peaks[1] < peaks[2]
    printed = capsys.readouterr().out
    assert "memory x" in printed and "all (2048 patches)" in printed

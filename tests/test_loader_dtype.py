"""Stage-1 volumes through the loader in their stored dtype: same float32 tensors on the device.

``VolumeTextDataset(stored_dtype=True)`` keeps float16 volumes as stored; ``move_to_device``
widens float16 to float32 after the copy. float16 -> float32 is exact, so the batches equal
the float32 path bit for bit; ``ctrg bench loader`` times the two.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from torch.utils.data import DataLoader

from ctrg.bench import loader
from ctrg.data.dataset import Augment, VolumeTextDataset, collate_cases
from ctrg.train.loop_config import move_to_device


@pytest.fixture()
def volumes(tmp_path: Path) -> Path:
    """Four float16 volumes, one int16 volume, and their manifest."""
    return _write(tmp_path)


def _write(root: Path) -> Path:
    rng = np.random.default_rng(0)
    rows = []
    for i in range(5):
        dtype = np.int16 if i == 4 else np.float16
        scale = 1000 if i == 4 else 1
        np.save(root / f"c{i}.npy", (rng.uniform(-1, 1, (4, 6, 6)) * scale).astype(dtype))
        rows.append({"case_id": f"c{i}", "split": "train", "path": f"c{i}.npy"})
    pd.DataFrame(rows).to_csv(root / "manifest.csv", index=False)
    return root / "manifest.csv"


def _cache():
    from ctrg.models.text_cache import TextCache

    ids = [f"c{i}" for i in range(5)]
    return TextCache(torch.randn(5, 10, 8), torch.randn(5, 8), ids, {})


def test_stored_dtype_keeps_float16_and_widens_others(volumes: Path) -> None:
    cache = _cache()
    stored = VolumeTextDataset(volumes, cache, "train", stored_dtype=True)
    plain = VolumeTextDataset(volumes, cache, "train")
    assert stored[0]["volume"].dtype == torch.float16 and plain[0]["volume"].dtype == torch.float32
    assert stored[4]["volume"].dtype == torch.float32  # int16 is widened as before
    assert torch.equal(stored[0]["volume"].float(), plain[0]["volume"])
    augmented = VolumeTextDataset(volumes, cache, "train", Augment(), stored_dtype=True)
    assert augmented[0]["volume"].dtype == torch.float32  # augmentation computes in float32


def test_batches_reach_the_device_identical(volumes: Path) -> None:
    cache = _cache()
    batches = []
    for stored in (False, True):
        dataset = VolumeTextDataset(volumes, cache, "train", stored_dtype=stored)
        data = DataLoader(dataset, batch_size=2, collate_fn=collate_cases)
        batches.append([move_to_device(b, torch.device("cpu")) for b in data])
    for plain, stored in zip(*batches):
        assert stored["volume"].dtype == torch.float32
        assert torch.equal(stored["volume"], plain["volume"])
        assert torch.equal(stored["text_features"], plain["text_features"])


def test_move_to_device_widens_only_float16() -> None:
    batch = {"a": torch.ones(2, dtype=torch.float16), "b": [torch.ones(2, dtype=torch.bfloat16)]}
    batch["c"] = torch.arange(3)
    moved = move_to_device(batch, torch.device("cpu"))
    assert moved["a"].dtype == torch.float32 and moved["b"][0].dtype == torch.bfloat16
    assert moved["c"].dtype == torch.int64


def test_loader_bench_times_both_dtypes(tmp_path: Path, capsys) -> None:
    config = tmp_path / "tiny.yaml"
    config.write_text("stage1: {model: {volume_shape: [8, 16, 16], patch_shape: [4, 8, 8]}}\n")
    out = tmp_path / "loader.json"
    argv = ["--configfile", str(config), "--device", "cpu", "--cases", "5", "--batch-size", "2"]
    argv += ["--workers", "0", "--passes", "1", "--cold", "--folder", str(tmp_path)]
    assert loader.main([*argv, "--out-json", str(out), "--log-level", "WARNING"]) == 0
    rows = json.loads(out.read_text())["rows"]
    assert [(r["workers"], r["dtype"]) for r in rows] == [(0, "float32"), (0, "stored")]
    assert all(r["volumes_per_s"] > 0 for r in rows)
    ratio = rows[0]["file_gb_per_s"] / rows[0]["volumes_per_s"]
    assert ratio == pytest.approx(8 * 16 * 16 * 2 / 1e9)  # float16 file bytes per volume
    assert "| 0 | stored |" in capsys.readouterr().out
    assert not list(tmp_path.glob("tmp*"))  # the volumes are removed afterwards

"""Feature extraction reads volumes in their stored dtype, one batch ahead in a thread.

float16 -> float32 is exact, so features from float16 volumes widened on the device equal
the features of the same volumes handed over as float32, bit for bit.
"""

from __future__ import annotations

import threading
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from stage1_helpers import TINY_OBSERVER

from ctrg.features.extract import extract_batch, load_part, prefetch
from ctrg.models.observer import ObserverConfig, StructureObserver


def test_prefetch_keeps_order_and_loads_one_ahead() -> None:
    live, most, lock = [0], [0], threading.Lock()

    def load(item: int) -> int:
        with lock:
            live[0] += 1
            most[0] = max(most[0], live[0])
        time.sleep(0.01)
        return item * 10

    seen = []
    for value in prefetch(range(6), load):
        seen.append(value)
        with lock:
            live[0] -= 1  # the consumer is done with this item
    assert seen == [0, 10, 20, 30, 40, 50]
    assert most[0] == 2  # the item in use and the one loading behind it


def test_prefetch_raises_the_loaders_error_at_its_item() -> None:
    def load(item: int) -> int:
        if item == 2:
            raise RuntimeError("item 2 is broken")
        return item

    got = []
    with pytest.raises(RuntimeError, match="item 2"):
        for value in prefetch(range(4), load):
            got.append(value)
    assert got == [0, 1]
    assert list(prefetch([], load)) == []


@pytest.fixture()
def parts(tmp_path: Path) -> pd.DataFrame:
    rng = np.random.default_rng(0)
    rows = []
    for i, dtype in enumerate([np.float16, np.float32, np.int16, np.float16, np.float16]):
        volume = rng.uniform(-1, 1, (16, 16, 16))
        if i == 3:
            volume[0, 0, 0] = np.nan  # rejected: non-finite
        if i == 4:
            volume = volume[:8]  # rejected: wrong shape
        np.save(tmp_path / f"c{i}.npy", (volume * (100 if dtype == np.int16 else 1)).astype(dtype))
        rows.append({"case_id": f"c{i}", "path": str(tmp_path / f"c{i}.npy")})
    return pd.DataFrame(rows)


def test_load_part_keeps_float_dtypes_and_reports_bad_files(parts: pd.DataFrame) -> None:
    volumes, kept, rejected = load_part(parts, (16, 16, 16))
    assert [v.dtype for v in volumes] == [np.float16, np.float32, np.float32]
    assert [r["case_id"] for r in kept] == ["c0", "c1", "c2"]
    assert [r["case_id"] for r in rejected] == ["c3", "c4"]
    assert "non-finite" in rejected[0]["reason"] and "shape" in rejected[1]["reason"]
    assert rejected[1]["file"].endswith("c4.npy")


def test_float16_volumes_give_the_float32_features(parts: pd.DataFrame) -> None:
    torch.manual_seed(0)
    observer = StructureObserver(ObserverConfig(**TINY_OBSERVER)).eval()
    volumes, _, _ = load_part(parts.iloc[[0]], (16, 16, 16))
    stored = np.stack(volumes)
    assert stored.dtype == np.float16
    half = extract_batch(observer, stored, 3, True, torch.device("cpu"))[0]
    full = extract_batch(observer, stored.astype(np.float32), 3, True, torch.device("cpu"))[0]
    assert half.keys() == full.keys()
    for key in full:
        assert torch.equal(half[key], full[key]), key

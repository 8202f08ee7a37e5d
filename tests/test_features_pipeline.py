"""freeze -> extract (2 shards) -> gather on a tiny real StructureObserver and real .npy files."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from safetensors.torch import load_file, save_file
from stage1_helpers import TINY_OBSERVER

from ctrg.features import extract, freeze, gather
from ctrg.features.cache import load_case_features, load_frozen, read_index
from ctrg.models.observer import ObserverConfig, StructureObserver, observer_config_dict


def _checkpoint(path: Path, seed: int) -> Path:
    torch.manual_seed(seed)
    observer = StructureObserver(ObserverConfig(**TINY_OBSERVER))
    torch.save(
        {
            "model": observer.state_dict(),
            "observer": observer_config_dict(observer.config),
            "config": {"note": "test"},
            "step": 7,
        },
        path,
    )
    return path


@pytest.fixture(scope="module")
def workspace(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("features")
    volumes = root / "volumes"
    volumes.mkdir()
    rng = np.random.default_rng(0)
    rows = []
    for i in range(6):
        shape = (16, 16, 16) if i != 4 else (16, 16, 8)  # case 4: wrong shape -> rejected
        np.save(volumes / f"c{i}.npy", rng.uniform(-1, 1, shape).astype(np.float16))
        rows.append(
            {"case_id": f"c{i}", "split": ["train", "valid", "test"][i % 3], "path": f"c{i}.npy"}
        )
    pd.DataFrame(rows).to_csv(volumes / "manifest.csv", index=False)
    config = {
        "section": "features",
        "seed": 0,
        "run": "t",
        "device": "cpu",
        "features": {"top_k": 3, "store_all_patches": True, "batch_size": 2},
    }
    (root / "features.json").write_text(json.dumps(config))
    for name, seed in (("a", 0), ("b", 1)):
        ckpt = _checkpoint(root / f"stage1_{name}.pt", seed)
        assert (
            freeze.main([str(ckpt), "--out", str(root / f"frozen_{name}" / "model.safetensors")])
            == 0
        )
    return root


def _extract(root: Path, model: str, shard: int, out: Path) -> None:
    argv = [
        str(root / "volumes" / "manifest.csv"),
        "--frozen",
        str(root / f"frozen_{model}" / "model.safetensors"),
        "--config",
        str(root / "features.json"),
        "--shard",
        f"{shard:03d}",
        "--num-shards",
        "2",
        "--out",
        str(out),
    ]
    assert extract.main(argv) == 0


def test_freeze_hash_is_content_and_checked(workspace: Path) -> None:
    meta_a = json.loads((workspace / "frozen_a" / "frozen.json").read_text())
    meta_b = json.loads((workspace / "frozen_b" / "frozen.json").read_text())
    _, _, content = load_frozen(workspace / "frozen_a" / "model.safetensors")
    assert meta_a["frozen_hash"] == content and meta_a["stage1_step"] == 7
    assert meta_a["frozen_hash"] != meta_b["frozen_hash"]
    again = workspace / "again" / "model.safetensors"
    freeze.main([str(workspace / "stage1_a.pt"), "--out", str(again)])
    assert json.loads((again.parent / "frozen.json").read_text())["frozen_hash"] == content
    tensors = load_file(again)  # tamper with one weight, keep the recorded hash
    from safetensors import safe_open

    with safe_open(str(again), framework="pt") as handle:
        metadata = handle.metadata()
    name = sorted(tensors)[0]
    tensors[name] = tensors[name] + 1
    save_file(tensors, str(again), metadata=metadata)
    with pytest.raises(ValueError, match="differs from the recorded"):
        load_frozen(again)


def test_extract_two_shards_and_gather(workspace: Path) -> None:
    shards = [workspace / "fa" / f"shard-{i:03d}" for i in range(2)]
    for i, shard in enumerate(shards):
        _extract(workspace, "a", i, shard)
    out = workspace / "fa" / "index.csv"
    assert gather.main([str(s) for s in shards] + ["--out", str(out)]) == 0
    index = read_index(out)
    rejected = pd.concat([pd.read_csv(s / "rejected.csv") for s in shards])
    assert sorted(index["case_id"]) == ["c0", "c1", "c2", "c3", "c5"]
    assert rejected["case_id"].tolist() == ["c4"] and "shape" in rejected["reason"].iloc[0]
    content = json.loads((workspace / "frozen_a" / "frozen.json").read_text())["frozen_hash"]
    assert set(index["frozen_hash"]) == {content}
    # the cached features equal a direct run of the frozen model, selection included
    tensors, config, _ = load_frozen(workspace / "frozen_a" / "model.safetensors")
    observer = freeze.build_observer(tensors, config)
    volume = np.load(workspace / "volumes" / "c1.npy").astype(np.float32)
    with torch.no_grad():
        direct = observer.encode_volume(torch.from_numpy(volume)[None, None])
    cached = load_case_features(index.set_index("case_id").at["c1", "path"], content)
    torch.testing.assert_close(cached["observation_tokens"], direct.observation_tokens[0])
    row = direct.attention[0].amax(dim=0)  # (S, N)
    expected = torch.argsort(row, dim=-1, descending=True, stable=True)[:, :3]
    assert torch.equal(cached["selected_patch_index"], expected)
    gathered = cached["patch_tokens"][cached["selected_patch_index"]]  # (S, k, C)
    torch.testing.assert_close(cached["selected_patch_tokens"], gathered)
    assert cached["attention"].shape == (10, 8)
    summary = json.loads((shards[0] / "summary.json").read_text())
    assert summary["frozen_hash"] == content


def test_gather_refuses_shards_of_two_frozen_models(workspace: Path) -> None:
    shard_a, shard_b = workspace / "mix" / "shard-000", workspace / "mix" / "shard-001"
    _extract(workspace, "a", 0, shard_a)
    _extract(workspace, "b", 1, shard_b)
    with pytest.raises(ValueError, match="frozen models"):
        gather.main([str(shard_a), str(shard_b), "--out", str(workspace / "mix" / "index.csv")])


def test_extract_refuses_a_stale_frozen_json(workspace: Path) -> None:
    stale = workspace / "stale"
    stale.mkdir()
    (stale / "model.safetensors").write_bytes(
        (workspace / "frozen_a" / "model.safetensors").read_bytes()
    )
    (stale / "frozen.json").write_text((workspace / "frozen_b" / "frozen.json").read_text())
    argv = [
        str(workspace / "volumes" / "manifest.csv"),
        "--frozen",
        str(stale / "model.safetensors"),
        "--config",
        str(workspace / "features.json"),
        "--out",
        str(workspace / "stale_out"),
    ]
    with pytest.raises(ValueError, match="does not match"):
        extract.main(argv)

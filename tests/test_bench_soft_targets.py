"""Where the soft pseudo targets put their mass (ctrg bench soft-targets)."""

from __future__ import annotations

import json
import math

import pytest
import torch
from stage1_helpers import make_tiny_data, tiny_config

from ctrg.bench.soft_targets import identical_copies, main, read_queue, soft_target_shares
from ctrg.models.observer import ObserverConfig, StructureObserver, observer_config_dict
from ctrg.models.text_cache import load_text_cache
from ctrg.queue import StructureQueue


def test_shares_by_hand():
    # keys: 0 = the positive, 1 = an identical copy, 2 = another text of the same
    # structure, 3 = a key of another structure (projected like key 2)
    keys = torch.tensor([[1.0, 0.0], [1.0, 0.0], [0.0, 1.0], [0.0, 1.0]])
    raw = torch.tensor([[1.0, 0.0, 0.0], [1.0, 0.0, 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0]])
    structures = torch.tensor([0, 0, 0, 1])
    shares = soft_target_shares(keys[:1], keys, torch.tensor([0]), raw, structures, tau=1.0)
    e = math.e  # soft target: softmax([1, 1, 0, 0])
    expected = [e / (2 * e + 2), e / (2 * e + 2), 1 / (2 * e + 2), 1 / (2 * e + 2)]
    assert shares[0].tolist() == pytest.approx(expected)


def test_identical_copies_counts_queue_entries_equal_to_the_own_text():
    train = torch.tensor([[[1.0, 0.0]], [[0.0, 2.0]]])  # (N=2, S=1, H=2)
    queue = torch.tensor([[3.0, 0.0], [1.0, 0.0], [0.0, 1.0], [1.0, 1.0]])
    assert identical_copies(train, queue, torch.zeros(4, dtype=torch.long)) == [1.5]


def test_read_queue_names_a_checkpoint_without_one(tmp_path):
    path = tmp_path / "checkpoint.pt"
    torch.save({"model": {"observer.w": torch.zeros(1)}}, path)
    with pytest.raises(ValueError, match="checkpoint.pt: no queue.features"):
        read_queue(str(path))


def test_cli_on_a_saved_model_and_queue(tmp_path, capsys):
    paths = make_tiny_data(tmp_path, n_cases=12)
    cache = load_text_cache(paths["cache"])
    section = tiny_config()["stage1"]
    n, s, h = cache.embeddings.shape
    config = ObserverConfig.from_dict(
        {**section["model"], "text_dim": h, "num_structures": s, "spatial_readout": True}
    )
    observer = StructureObserver(config)
    loss = {"tau": 0.07, "alpha": 0.2}
    model = tmp_path / "model.pt"
    torch.save(
        {
            "model": observer.state_dict(),
            "observer": observer_config_dict(config),
            "config": {"loss": loss, "loop": {"batch_size": 4}},
        },
        model,
    )
    queue = StructureQueue(s, 8, h, "fifo")
    queue.update(cache.embeddings.reshape(n * s, h), torch.arange(s).repeat(n), gather=False)
    state = {f"queue.{k}": v for k, v in queue.state_dict().items()}
    torch.save({"model": state}, tmp_path / "checkpoint.pt")
    out = tmp_path / "soft.json"
    args = ["--model", str(model), "--checkpoint", str(tmp_path / "checkpoint.pt")]
    args += ["--volumes", str(paths["manifest"]), "--text-cache", str(paths["cache"])]
    args += ["--batches", "5", "--out-json", str(out)]
    assert main(args) == 0
    result = json.loads(out.read_text())
    assert result["queue_entries"] == 8 * s and len(result["structures"]) == s
    for row in result["structures"].values():
        total = row["own"] + row["identical"] + row["similar"] + row["other_structures"]
        assert total == pytest.approx(1.0, abs=1e-5)
    assert "| structure | own |" in capsys.readouterr().out

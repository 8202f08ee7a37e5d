"""Held-out stage-1 retrieval with a permutation null (ctrg bench stage1-retrieval)."""

from __future__ import annotations

import json

import pytest
import torch
from stage1_helpers import make_tiny_data, tiny_config

from ctrg.bench.stage1_retrieval import main, permutation_test, rank_stats
from ctrg.models.observer import ObserverConfig, StructureObserver, observer_config_dict


def test_rank_stats_by_hand():
    e = torch.eye(3)
    text = e[:, None, :]  # (N=3, S=1, E=3), three distinct reports
    image = e[[0, 2, 1]][:, None, :]  # case 0 right, cases 1 and 2 swapped
    similarity = torch.einsum("ise,jse->ij", image, text)
    stats = rank_stats(similarity, torch.arange(3))
    # 1-based ranks: case 0 -> 1; case 1 scores text 2 highest -> own text ranks 2 (tie-free)
    assert permutation_test(image, text, permutations=1)["candidates"] == 3
    assert stats[0] == pytest.approx(1 / 3) and stats[1] == 1.0
    assert stats[2] == pytest.approx((1 + 2 + 2) / 3)


def test_perfect_pairing_beats_every_shuffle_and_noise_does_not():
    generator = torch.Generator().manual_seed(0)
    text = torch.nn.functional.normalize(torch.randn(40, 2, 8, generator=generator), dim=-1)
    perfect = permutation_test(text.clone(), text, permutations=200)
    assert perfect["top1"] == 1.0 and perfect["mean_rank"] == 1.0
    assert perfect["top1_p"] == 0.0 and perfect["mean_rank_p"] == 0.0
    assert perfect["mean_rank_null"] == pytest.approx(20.5, abs=1.5)  # (40 + 1) / 2
    noise = torch.nn.functional.normalize(torch.randn(40, 2, 8, generator=generator), dim=-1)
    unrelated = permutation_test(noise, text, permutations=200)
    assert unrelated["mean_rank_p"] > 0.01  # no pairing signal: not significant


def test_cli_on_a_saved_model(tmp_path, capsys):
    paths = make_tiny_data(tmp_path, n_cases=8)
    from ctrg.models.text_cache import load_text_cache

    cache = load_text_cache(paths["cache"])
    model = tiny_config()["stage1"]["model"]
    shapes = {"text_dim": cache.embeddings.shape[-1], "num_structures": cache.embeddings.shape[1]}
    config = ObserverConfig.from_dict({**model, **shapes, "spatial_readout": True})
    observer = StructureObserver(config)
    model = tmp_path / "model.pt"
    torch.save({"model": observer.state_dict(), "observer": observer_config_dict(config)}, model)
    out = tmp_path / "retrieval.json"
    args = ["--model", str(model), "--volumes", str(paths["manifest"]), "--text-cache"]
    args += [
        str(paths["cache"]),
        "--splits",
        "train",
        "--permutations",
        "20",
        "--out-json",
        str(out),
    ]
    assert main(args) == 0
    result = json.loads(out.read_text())
    assert result["cases"] >= 2 and result["permutations"] == 20
    assert 1.0 <= result["mean_rank"] <= result["candidates"]
    assert "mean rank" in capsys.readouterr().out

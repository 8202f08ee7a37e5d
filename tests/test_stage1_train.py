"""``ctrg stage1`` end to end on tiny volumes: outputs, resume, ablation switches, checks."""

from __future__ import annotations

import json
from functools import partialmethod

import numpy as np
import pandas as pd
import pytest
import torch
from stage1_helpers import make_tiny_data, stage1_argv, tiny_config, write_config

from ctrg.models.observer import load_stage1
from ctrg.train import stage1
from ctrg.train.loop import Trainer


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    root = tmp_path_factory.mktemp("stage1")
    return root, make_tiny_data(root)


@pytest.fixture(scope="module")
def full_run(data):
    root, paths = data
    config = write_config(root, tiny_config())
    out = root / "full"
    assert stage1.main(stage1_argv(paths, config, out, resume="never")) == 0
    return out


def test_outputs_and_summary(full_run):
    out = full_run
    for name in (
        "model.pt",
        "summary.json",
        "train_log.jsonl",
        "resolved_config.json",
        "work/checkpoint.pt",
        "work/best.pt",
    ):
        assert (out / name).exists(), name
    summary = json.loads((out / "summary.json").read_text())
    assert summary["steps"] == 6 and summary["train_cases"] == 12 and summary["valid_cases"] == 4
    assert [r["step"] for r in summary["curve"]] == [3, 6]
    final = summary["final"]
    assert 0 <= final["retrieval_top1"] <= 1 and final["retrieval_top1_chance"] > 0
    assert "structure_top1/lung" in final
    assert summary["volumes_per_second"] > 0 and summary["peak_memory_mb"] > 0
    lung = summary["attention_concentration"]["per_structure"]["lung"]
    assert lung["cases"] == 4 and 0 <= lung["hit_any"] <= 1
    records = [json.loads(line) for line in (out / "train_log.jsonl").read_text().splitlines()]
    assert [r["step"] for r in records if r["kind"] == "train"] == [1, 2, 3, 4, 5, 6]
    assert all(np.isfinite(r["loss"]) for r in records if r["kind"] == "train")


def test_model_pt_loads_for_stage2(full_run):
    state = torch.load(full_run / "model.pt", weights_only=True)
    assert set(state) >= {"model", "config", "observer", "step", "provenance"}
    observer = load_stage1(full_run / "model.pt")
    out = observer.encode_volume(torch.zeros(1, 1, 16, 32, 32))
    assert out.attention.shape == (1, 2, 10, 64)


def test_killed_run_resumes_to_identical_weights(data, full_run, monkeypatch):
    root, paths = data
    config = write_config(root, tiny_config())
    out = root / "resumed"
    # first attempt "dies" after step 3; the last checkpoint is from step 2
    with monkeypatch.context() as patch:
        patch.setattr(Trainer, "fit", partialmethod(Trainer.fit, stop_at_step=3))
        stage1.main(stage1_argv(paths, config, out))
    assert torch.load(out / "work/checkpoint.pt", weights_only=True)["step"] == 2
    assert stage1.main(stage1_argv(paths, config, out)) == 0
    a = torch.load(full_run / "work/checkpoint.pt", weights_only=True)
    b = torch.load(out / "work/checkpoint.pt", weights_only=True)
    assert a["step"] == b["step"] == 6
    for key, value in a["model"].items():
        assert torch.equal(value, b["model"][key]), key
    assert a["optimizer"]["state"].keys() == b["optimizer"]["state"].keys()
    losses = {}
    for run in (full_run, out):
        lines = (run / "train_log.jsonl").read_text().splitlines()
        losses[run] = [json.loads(x)["loss"] for x in lines if json.loads(x)["kind"] == "train"]
    assert losses[full_run] == losses[out]


def test_config_change_starts_fresh(data, full_run, tmp_path):
    root, paths = data
    out = tmp_path / "changed"
    first = write_config(tmp_path, tiny_config(max_steps=2))
    assert stage1.main(stage1_argv(paths, first, out)) == 0
    changed = tiny_config(max_steps=2)
    changed["stage1"]["loss"] = {"alpha": 0.5}
    second = write_config(tmp_path, changed)
    assert stage1.main(stage1_argv(paths, second, out)) == 0
    summary = json.loads((out / "summary.json").read_text())
    assert summary["steps"] == 2


@pytest.mark.parametrize(
    "override",
    [
        {"model": {"queries": "global"}},
        {"queue": {"kind": "fifo", "size": 4}},
        {"queue": {"kind": "none"}},
        {"loss": {"soft_targets": False, "symmetric": True}},
    ],
)
def test_ablation_switches_train(data, tmp_path, override):
    root, paths = data
    payload = tiny_config(max_steps=2, eval_every=2)
    for key, values in override.items():
        payload["stage1"].setdefault(key, {}).update(values)
    config = write_config(tmp_path, payload)
    assert stage1.main(stage1_argv(paths, config, tmp_path / "out")) == 0
    summary = json.loads((tmp_path / "out" / "summary.json").read_text())
    assert np.isfinite(summary["final"]["valid_loss"])
    observer = load_stage1(tmp_path / "out" / "model.pt")
    queries = 1 if override.get("model", {}).get("queries") == "global" else 10
    assert (
        observer.encode_volume(torch.zeros(1, 1, 16, 32, 32)).observation_tokens.shape[1] == queries
    )


def test_stale_text_cache_is_refused(data, tmp_path):
    root, paths = data
    texts = pd.read_csv(paths["texts"])
    texts.loc[0, "lung"] = "Something else entirely."
    texts.to_csv(tmp_path / "texts.csv", index=False)
    argv = stage1_argv(
        {**paths, "texts": tmp_path / "texts.csv"},
        write_config(tmp_path, tiny_config()),
        tmp_path / "out",
    )
    with pytest.raises(ValueError, match="rerun ctrg encode-texts"):
        stage1.main(argv)


def test_float16_volumes_through_the_loader_train_the_same_weights(data, tmp_path, monkeypatch):
    """Without augmentation stage 1 loads volumes as stored (float16); weights are unchanged."""
    from ctrg.data.dataset import VolumeTextDataset

    root, paths = data
    payload = tiny_config(max_steps=3, eval_every=3)
    payload["stage1"]["data"] = {"augment": False}
    config = write_config(tmp_path, payload)
    loaded: list[torch.dtype] = []

    class Recording(VolumeTextDataset):
        def __getitem__(self, i):  # type: ignore[no-untyped-def]
            item = super().__getitem__(i)
            loaded.append(item["volume"].dtype)
            return item

    monkeypatch.setattr(stage1, "VolumeTextDataset", Recording)
    assert stage1.main(stage1_argv(paths, config, tmp_path / "stored", "never")) == 0
    assert torch.float16 in loaded  # the training split went through as stored

    class Widening(Recording):
        def __init__(self, *args, **kwargs):  # type: ignore[no-untyped-def]
            super().__init__(*args, **{**kwargs, "stored_dtype": False})

    loaded.clear()
    monkeypatch.setattr(stage1, "VolumeTextDataset", Widening)
    assert stage1.main(stage1_argv(paths, config, tmp_path / "float32", "never")) == 0
    assert set(loaded) == {torch.float32}
    stored = torch.load(tmp_path / "stored" / "model.pt", weights_only=True)["model"]
    widened = torch.load(tmp_path / "float32" / "model.pt", weights_only=True)["model"]
    assert stored.keys() == widened.keys()
    assert all(torch.equal(stored[k], widened[k]) for k in stored)

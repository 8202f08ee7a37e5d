"""The generic training loop: schedule, sampler, accumulation, best checkpoint, all grads."""

from __future__ import annotations

import json

import pytest
import torch
from stage1_helpers import tiny_config
from torch import nn
from torch.utils.data import TensorDataset

from ctrg.config import load_schema, validate
from ctrg.train.distributed import DistInfo, EpochBatchSampler
from ctrg.train.loop import LoopConfig, Trainer, lr_lambda
from ctrg.train.stage1 import build_model


def test_warmup_then_linear_decay_by_hand():
    factor = lr_lambda(max_steps=10, warmup_fraction=0.2)  # 2 warm-up steps
    assert [factor(s) for s in (0, 1, 2, 6, 10)] == [0.5, 1.0, 1.0, 0.5, 0.0]


def test_ranks_split_the_single_process_batches():
    single = list(EpochBatchSampler(10, 4, seed=3, dist_info=DistInfo()))
    rank0 = list(EpochBatchSampler(10, 2, 3, DistInfo(rank=0, world_size=2)))
    rank1 = list(EpochBatchSampler(10, 2, 3, DistInfo(rank=1, world_size=2)))
    assert len(single) == 2  # 10 // 4, the incomplete batch is dropped
    assert [a + b for a, b in zip(rank0, rank1)] == single
    resumed = EpochBatchSampler(10, 4, 3, DistInfo())
    resumed.set_position(0, 1)
    assert list(resumed) == single[1:]
    with pytest.raises(ValueError, match="fewer than one global batch"):
        EpochBatchSampler(3, 2, 0, DistInfo(rank=0, world_size=2))


def _toy_run(tmp_path, name: str, batch_size: int, accum: int, evaluate=None, best=None):
    torch.manual_seed(0)
    data = TensorDataset(torch.randn(16, 3), torch.randn(16, 1))
    model = nn.Linear(3, 1)

    def step(m, batch):
        x, y = batch
        return ((m(x) - y) ** 2).mean(), {}

    loop = LoopConfig(
        max_steps=2,
        lr=0.1,
        warmup_fraction=0.0,
        grad_accum=accum,
        log_every=1,
        eval_every=1,
        checkpoint_every=1,
        tensorboard=False,
        best_metric=best,
    )
    trainer = Trainer(
        model, loop, tmp_path / name, data, step, batch_size=batch_size, evaluate_fn=evaluate
    )
    return model, trainer.fit(resume="never")


def test_gradient_accumulation_equals_the_larger_batch(tmp_path):
    big, _ = _toy_run(tmp_path, "big", batch_size=4, accum=1)
    accumulated, _ = _toy_run(tmp_path, "acc", batch_size=2, accum=2)
    for a, b in zip(big.parameters(), accumulated.parameters()):
        assert torch.allclose(a, b, atol=1e-6)


def test_best_checkpoint_follows_the_metric(tmp_path):
    values = iter([0.3, 0.1])
    _, result = _toy_run(
        tmp_path, "best", 4, 1, evaluate=lambda m, s: {"score": next(values)}, best="score"
    )
    assert result["best"] == {"metric": "score", "value": 0.3, "step": 1}
    assert torch.load(result["best_checkpoint"], weights_only=True)["step"] == 1
    log = [json.loads(x) for x in (tmp_path / "best" / "train_log.jsonl").read_text().splitlines()]
    assert [r["score"] for r in log if r["kind"] == "valid"] == [0.3, 0.1]


def test_every_stage1_parameter_gets_a_gradient():
    section = tiny_config()["stage1"]
    validate(section, load_schema("stage1"), "stage1")
    model = build_model(section, text_dim=16, num_structures=10)
    loss, _ = model(torch.randn(2, 1, 16, 32, 32), torch.randn(2, 10, 16), torch.randn(2, 16))
    loss.backward()
    missing = [n for n, p in model.named_parameters() if p.grad is None]
    assert missing == []

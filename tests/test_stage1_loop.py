"""The generic training loop: schedule, sampler, accumulation, best checkpoint, all grads."""

from __future__ import annotations

import json

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
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


def test_bucketed_batches_by_hand():
    # 8 items, batch 2, pools of 2 batches: each run of 4 permuted items is sorted by length.
    lengths = [5, 1, 7, 3, 8, 2, 6, 4]
    plain = EpochBatchSampler(8, 2, seed=1, dist_info=DistInfo())
    bucketed = EpochBatchSampler(8, 2, 1, DistInfo(), lengths=lengths, bucket_pool=2)
    perm = [i for batch in plain.global_batches() for i in batch]
    pools = [sorted(perm[:4], key=lengths.__getitem__), sorted(perm[4:], key=lengths.__getitem__)]
    expected = [pools[0][:2], pools[0][2:], pools[1][:2], pools[1][2:]]
    got = list(bucketed)
    assert sorted(map(tuple, got)) == sorted(map(tuple, expected))  # same batches, shuffled
    assert sorted(i for batch in got for i in batch) == list(range(8))
    assert list(EpochBatchSampler(8, 2, 1, DistInfo(), lengths, 2)) == got  # deterministic
    resumed = EpochBatchSampler(8, 2, 1, DistInfo(), lengths, 2)
    resumed.set_position(0, 3)
    assert list(resumed) == got[3:]
    rank0 = list(EpochBatchSampler(8, 1, 1, DistInfo(rank=0, world_size=2), lengths, 2))
    rank1 = list(EpochBatchSampler(8, 1, 1, DistInfo(rank=1, world_size=2), lengths, 2))
    assert [a + b for a, b in zip(rank0, rank1)] == got
    # P = 1 keeps the unbucketed batches (as sets); only their order changes
    one = EpochBatchSampler(8, 2, 1, DistInfo(), lengths, 1)
    assert sorted(sorted(b) for b in one) == sorted(sorted(b) for b in plain)
    with pytest.raises(ValueError, match="needs one length per training item"):
        EpochBatchSampler(8, 2, 1, DistInfo(), bucket_pool=2)
    with pytest.raises(ValueError, match="bucket_pool must be >= 0"):
        EpochBatchSampler(8, 2, 1, DistInfo(), lengths, -1)


@settings(max_examples=50, deadline=None)
@given(
    lengths=st.lists(st.integers(1, 300), min_size=8, max_size=60),
    batch=st.integers(1, 4),
    pool=st.integers(1, 5),
    seed=st.integers(0, 10),
)
def test_bucketing_never_pads_more(lengths, batch, pool, seed):
    """Sorted chunks minimise the sum of batch maxima of each pool, so an epoch never pads more."""
    size = len(lengths)
    plain = EpochBatchSampler(size, batch, seed, DistInfo(), lengths)
    bucketed = EpochBatchSampler(size, batch, seed, DistInfo(), lengths, pool)
    cost = [sum(len(b) * max(lengths[i] for i in b) for b in s) for s in (plain, bucketed)]
    assert cost[1] <= cost[0]
    seen = sorted(i for b in bucketed for i in b)
    assert seen == sorted(i for b in plain for i in b)  # the same items once each

"""Diversity-enhanced and FIFO negative queues: hand-computed updates and the flooding case."""

from __future__ import annotations

import pytest
import torch

from ctrg.queue import EMPTY_SCORE, StructureQueue


def bank(queue: StructureQueue, s: int = 0) -> list[list[float]]:
    rows = queue.features[s][queue.filled[s]]
    return [[round(v, 4) for v in row.tolist()] for row in rows]


def test_empty_queue_takes_new_texts_first():
    queue = StructureQueue(1, 3, 2, tau=1.0)
    queue.update(torch.tensor([[1.0, 0.0], [0.0, 2.0]]), torch.tensor([0, 0]))
    assert bank(queue) == [[1.0, 0.0], [0.0, 1.0]]  # stored L2-normalised
    assert queue.filled[0].tolist() == [True, True, False]
    assert queue.scores[0, 2].item() == EMPTY_SCORE


def test_redundant_new_text_is_rejected():
    queue = StructureQueue(1, 2, 2, tau=1.0)
    queue.update(torch.tensor([[1.0, 0.0], [0.0, 1.0]]), torch.tensor([0, 0]))
    # bank e1=(1,0), e2=(0,1): old scores (e1.e2)/1 = 0 each; new x=(1,0): x.mean = 0.5
    queue.update(torch.tensor([[1.0, 0.0]]), torch.tensor([0]))
    assert bank(queue) == [[1.0, 0.0], [0.0, 1.0]]
    assert queue.scores[0].tolist() == pytest.approx([0.0, 0.0])


def test_duplicate_entry_is_evicted_for_a_novel_text():
    queue = StructureQueue(1, 2, 2, tau=0.5)
    queue.update(torch.tensor([[1.0, 0.0], [1.0, 0.0]]), torch.tensor([0, 0]))
    # old: each duplicate scores (1)/1/0.5 = 2; new (0,1): (0,1).(2,0)/2/0.5 = 0
    queue.update(torch.tensor([[0.0, 1.0]]), torch.tensor([0]))
    assert bank(queue) == [[0.0, 1.0], [1.0, 0.0]]
    assert queue.scores[0].tolist() == pytest.approx([0.0, 2.0])


def test_structures_have_separate_banks():
    queue = StructureQueue(2, 2, 2, tau=1.0)
    queue.update(torch.tensor([[1.0, 0.0], [0.0, 1.0]]), torch.tensor([1, 1]))
    assert queue.filled[0].sum() == 0 and queue.filled[1].sum() == 2
    keys, structures = queue.keys()
    assert keys.shape == (2, 2) and structures.tolist() == [1, 1]


def test_fifo_ring_buffer():
    queue = StructureQueue(1, 2, 2, kind="fifo")
    queue.update(torch.tensor([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]]), torch.tensor([0, 0, 0]))
    # slot 0 <- a, slot 1 <- b, slot 0 <- c (overwrites a)
    assert bank(queue) == [[0.7071, 0.7071], [0.0, 1.0]]
    assert queue.pointer[0].item() == 1


def _flood(kind: str, steps: int = 30) -> list[int]:
    """Each step: 3 copies of the default sentence + 1 novel text. Returns default counts."""
    torch.manual_seed(0)
    dim = 32
    default = torch.zeros(dim)
    default[0] = 1.0
    queue = StructureQueue(1, 8, dim, kind=kind, tau=0.07)
    counts = []
    for _ in range(steps):
        novel = torch.randn(1, dim)
        queue.update(torch.cat([default.repeat(3, 1), novel]), torch.zeros(4, dtype=torch.long))
        rows = queue.features[0][queue.filled[0]]
        counts.append(int(((rows @ default) > 0.999).sum()))
    return counts


def test_identical_default_texts_do_not_flood_the_diversity_queue():
    diversity, fifo = _flood("diversity"), _flood("fifo")
    assert fifo[-1] == 6  # FIFO: 3 of every 4 slots hold the same sentence
    assert max(diversity[5:]) <= 3  # at most one batch's copies at any time
    assert sum(diversity[5:]) / len(diversity[5:]) < 2.0
    assert min(diversity[5:]) <= 1  # copies are evicted again once they are redundant


def test_state_dict_round_trip_keeps_the_bank():
    queue = StructureQueue(1, 4, 2)
    queue.update(torch.tensor([[1.0, 0.0], [0.0, 1.0]]), torch.tensor([0, 0]))
    other = StructureQueue(1, 4, 2)
    other.load_state_dict(queue.state_dict())
    assert torch.equal(other.features, queue.features) and torch.equal(other.filled, queue.filled)


def test_unknown_kind_is_rejected():
    with pytest.raises(ValueError, match="diversity or fifo"):
        StructureQueue(1, 2, 2, kind="lifo")


def test_queue_entries_equal_to_a_batch_text_are_found_per_structure():
    from ctrg.train.stage1 import batch_duplicates

    # batch of 1 case, 2 structures, 2-d features: s0 text (1, 0), s1 text (0, 3)
    batch = torch.tensor([[[1.0, 0.0], [0.0, 3.0]]])
    queue = torch.tensor([[2.0, 0.0], [0.0, 1.0], [0.0, 1.0], [1.0, 1.0]])
    structures = torch.tensor([0, 0, 1, 1])
    # entry 0 = s0's text (scaled); entry 1 equals s1's text but sits in s0's bank; entry 2
    # = s1's text; entry 3 differs
    assert batch_duplicates(queue, structures, batch).tolist() == [True, False, True, False]


def test_skip_batch_texts_removes_the_own_text_from_the_keys():
    from ctrg.losses import LossConfig
    from ctrg.models.observer import ObserverConfig, StructureObserver
    from ctrg.train.stage1 import Stage1Model

    config = ObserverConfig(
        volume_shape=(8, 16, 16),
        patch_shape=(4, 8, 8),
        vision_dim=16,
        vision_heads=2,
        vision_dim_head=8,
        spatial_depth=1,
        temporal_depth=1,
        query_dim=16,
        query_heads=2,
        embed_dim=8,
        text_dim=4,
        num_structures=2,
    )
    torch.manual_seed(0)
    volume, texts = torch.randn(2, 1, 8, 16, 16), torch.randn(2, 2, 4)
    losses = {}
    for skip in (False, True):
        torch.manual_seed(1)
        model = Stage1Model(StructureObserver(config), LossConfig(), "fifo", 4, skip)
        model.queue.update(texts.reshape(-1, 4), torch.tensor([0, 1, 0, 1]), gather=False)
        model.eval()  # no queue update inside forward
        losses[skip] = model(volume, texts, torch.zeros(2, 4))[0]
    # with the batch's own texts also in the queue the positives compete with copies of
    # themselves; skipping them leaves only the in-batch keys, i.e. the no-queue loss
    torch.manual_seed(1)
    plain = Stage1Model(StructureObserver(config), LossConfig(), "none", 4).eval()
    assert torch.allclose(losses[True], plain(volume, texts, torch.zeros(2, 4))[0])
    assert not torch.allclose(losses[False], losses[True])

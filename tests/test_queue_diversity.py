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

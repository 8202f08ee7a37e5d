"""Retrieval metrics, the attention-concentration check and the volume dataset, by hand."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from stage1_helpers import make_tiny_data

from ctrg.data.dataset import Augment, VolumeTextDataset, collate_cases
from ctrg.models.attention_check import attention_hits, patch_label_fractions
from ctrg.models.text_cache import load_text_cache
from ctrg.train.retrieval import grouped_ranks, retrieval_metrics


def test_grouped_ranks_merge_identical_candidates():
    similarity = torch.tensor([[0.9, 0.9, 0.1], [0.2, 0.5, 0.6], [0.3, 0.3, 0.8]])
    groups = torch.tensor([0, 0, 1])  # candidates 0 and 1 carry the same text
    ranks, count = grouped_ranks(similarity, groups)
    # row 0: true group 0 (0.9) vs group 1 (0.1) -> rank 0
    # row 1: true group 0 scored by its first member (0.2) vs 0.6 -> rank 1
    # row 2: true group 1 (0.8) vs 0.3 -> rank 0
    assert ranks.tolist() == [0, 1, 0] and count == 2


def test_retrieval_metrics_by_hand():
    e = torch.eye(3)
    text = torch.stack([e[[0, 0]], e[[1, 0]], e[[2, 0]]])  # (N=3, S=2, E=3); structure 1 shared
    image = torch.stack([e[[0, 0]], e[[2, 0]], e[[1, 0]]])  # cases 1 and 2 swapped
    metrics = retrieval_metrics(image, text, ["lung", "heart"], ks=(1, 2))
    # summed score of image i and text j = image_i0 . text_j0 + 1 (structure 1 always agrees).
    # case 0: 2 vs 1, 1 -> rank 0. case 1 (image e2): own text 1, text 2 scores 2 -> rank 1;
    # case 2 likewise -> rank 1. So top-1 = 1/3 and top-2 = 1.
    assert metrics["retrieval_top1"] == pytest.approx(1 / 3)
    assert metrics["retrieval_top2"] == 1.0
    assert metrics["retrieval_top1_chance"] == pytest.approx(1 / 3)
    assert metrics["retrieval_mean_rank"] == pytest.approx((1 + 2 + 2) / 3)  # 1-based ranks
    assert metrics["retrieval_mean_rank_chance"] == 2.0  # (3 candidates + 1) / 2
    assert metrics["structure_candidates/heart"] == 1
    assert metrics["structure_top1/heart"] == 1.0  # one distinct text: always right
    assert metrics["structure_top1/lung"] == pytest.approx(1 / 3)


def test_patch_label_fractions_and_hits_by_hand():
    labels = np.zeros((4, 4, 4), np.uint8)
    labels[:2, :2, :2] = 3  # patch 0 entirely lung (structure 2)
    labels[2:, 2:, 2:] = 3  # patch 7 entirely lung
    labels[0, 0, 2] = 3  # one voxel of patch 1
    fractions = patch_label_fractions(labels, (2, 2, 2), 11)
    assert fractions.shape == (8, 11)
    assert fractions[0, 3] == 1.0 and fractions[1, 3] == pytest.approx(1 / 8)
    attention = torch.zeros(1, 10, 8)
    attention[0, 2] = torch.tensor([0.5, 0.1, 0.3, 0.0, 0.0, 0.0, 0.0, 0.1])  # lung query
    hits = attention_hits(attention, fractions, top_k=2)  # top-2 patches: 0 and 2
    assert hits["hit_any"][2] == 0.5 and hits["chance_any"][2] == pytest.approx(3 / 8)
    assert hits["hit_majority"][2] == 0.5 and hits["chance_majority"][2] == pytest.approx(2 / 8)
    assert np.isnan(hits["hit_any"][0])  # trachea absent from this map


def test_dataset_skips_bad_cases_and_augments_deterministically(tmp_path, caplog):
    paths = make_tiny_data(tmp_path, n_cases=8)
    cache = load_text_cache(paths["cache"])
    (tmp_path / "volumes" / "case_001.npy").write_bytes(b"not a numpy file")
    np.save(tmp_path / "volumes" / "case_002.npy", np.zeros((8, 32, 32), np.float16))
    train = VolumeTextDataset(paths["manifest"], cache, "train", expected_shape=(16, 32, 32))
    assert train.case_ids == ["case_000", "case_003", "case_004", "case_005"]
    assert "case_001" in caplog.text and "case_002" in caplog.text
    item = train[0]
    assert item["volume"].shape == (1, 16, 32, 32) and item["text_features"].shape == (10, 16)
    augmented = VolumeTextDataset(paths["manifest"], cache, "train", Augment(), seed=1)
    first, again = augmented[0]["volume"], augmented[0]["volume"]
    assert torch.equal(first, again) and not torch.equal(first, item["volume"])
    augmented.set_epoch(1)
    assert not torch.equal(augmented[0]["volume"], first)
    batch = collate_cases([item, None, train[1]])
    assert batch["volume"].shape[0] == 2 and batch["case_id"] == ["case_000", "case_003"]
    with pytest.raises(RuntimeError, match="unreadable"):
        collate_cases([None])

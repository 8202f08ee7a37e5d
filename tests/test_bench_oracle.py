"""The stage-1 oracle diagnostic: informative labels learn retrieval, shuffled ones do not."""

from __future__ import annotations

import torch

from ctrg.bench.stage1_oracle import train_oracle
from ctrg.config import load_stage_config


def synthetic(cases: int, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """6 binary labels; each of 2 structures' texts is a fixed linear map of them + noise."""
    labels = (torch.rand(cases, 6, generator=generator) < 0.5).float()
    maps = torch.randn(2, 6, 16, generator=torch.Generator().manual_seed(1))
    texts = torch.einsum("nl,slh->nsh", labels, maps) + 0.05 * torch.randn(
        cases, 2, 16, generator=generator
    )
    return labels, texts  # (N, 6), (N, 2, 16)


def section() -> dict:
    stage1 = load_stage_config(None, "stage1")["stage1"]
    stage1["queue"]["size"] = 32
    stage1["loop"]["batch_size"] = 8
    stage1["optim"]["lr"] = 3e-3
    stage1["model"]["embed_dim"] = 32
    return stage1


def test_oracle_learns_retrieval_and_the_shuffled_control_does_not():
    torch.manual_seed(0)
    generator = torch.Generator().manual_seed(0)
    train, valid = synthetic(200, generator), synthetic(20, generator)
    curve = train_oracle(train, valid, section(), steps=200, eval_every=100)
    assert [point["step"] for point in curve] == [100, 200]
    informed = curve[-1]
    assert informed["retrieval_top1_chance"] <= 0.06
    assert informed["retrieval_top1"] >= 0.5

    torch.manual_seed(0)
    shuffled = (train[0][torch.randperm(200, generator=generator)], train[1])
    control = train_oracle(shuffled, valid, section(), steps=200, eval_every=200)[-1]
    assert control["retrieval_top1"] <= 0.2


def test_finding_table_has_one_column_per_finding_side_and_device(tmp_path):
    from ctrg.bench.stage1_oracle import read_labels

    path = tmp_path / "findings.csv"
    path.write_text(
        "case_id,label,structure,side,location\n"
        "a,Lung nodule,lung,left,\n"
        "a,Medical material,others,left,pacemaker\n"
        "b,Lung nodule,lung,right,\n"
        "b,Lung nodule,lung,right,\n"
    )
    table = read_labels(None, str(path), ["a", "b", "c"])
    assert list(table.columns) == [
        "Lung nodule|left|",
        "Lung nodule|right|",
        "Medical material|left|pacemaker",
    ]
    assert table.to_numpy().tolist() == [[1, 0, 1], [0, 1, 0], [0, 0, 0]]

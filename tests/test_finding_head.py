"""Finding head of stage 1: read-out, loss and metrics by hand, and the ctrg stage1 path."""

from __future__ import annotations

import json
import math

import pandas as pd
import pytest
import torch
from stage1_helpers import make_tiny_data, stage1_argv, tiny_config, write_config

from ctrg.anatomy import CHEST_STRUCTURES, CTRATE_LABELS
from ctrg.config import load_schema, validate
from ctrg.features.cache import load_frozen
from ctrg.features.freeze import build_observer, freeze
from ctrg.models.finding_head import (
    FindingHead,
    FindingHeadConfig,
    FindingLoss,
    finding_metrics,
    label_structures,
    positive_weights,
)
from ctrg.models.observer import load_stage1
from ctrg.train import stage1
from ctrg.train.stage1 import build_model

NAN = float("nan")


def test_each_label_reads_only_its_structure_token():
    head = FindingHead(FindingHeadConfig(structures=(1, 1, 2)), dim=8).eval()
    tokens = torch.randn(2, 4, 8)  # (B, S, C)
    base = head(tokens)
    assert base.shape == (2, 3)
    other = tokens.clone()
    other[:, 0] += 5.0  # no label reads query 0
    other[:, 3] -= 5.0  # nor query 3
    assert torch.allclose(head(other), base)
    own = tokens.clone()
    own[:, 2] = torch.randn(2, 8)  # only label 2 reads query 2
    changed = head(own)
    assert torch.allclose(changed[:, :2], base[:, :2])
    assert not torch.allclose(changed[:, 2], base[:, 2])


def test_label_structures_follow_the_label_table():
    index = label_structures(CTRATE_LABELS, CHEST_STRUCTURES)
    assert index[CTRATE_LABELS.index("Cardiomegaly")] == CHEST_STRUCTURES.index("heart")
    assert index[CTRATE_LABELS.index("Pleural effusion")] == CHEST_STRUCTURES.index("pleura")
    assert index[CTRATE_LABELS.index("Hiatal hernia")] == CHEST_STRUCTURES.index("esophagus")
    assert set(label_structures(CTRATE_LABELS, CHEST_STRUCTURES, num_queries=1)) == {0}
    with pytest.raises(ValueError, match="without a structure"):
        label_structures(("Fracture",), CHEST_STRUCTURES)


def test_finding_loss_by_hand_ignores_unknown_labels():
    loss = FindingLoss(torch.tensor([2.0, 1.0]))
    # known: (logit 0, label 1) -> 2 * log(1 + e^0); (logit 1, label 0) -> log(1 + e^1)
    logits = torch.tensor([[0.0, 5.0], [3.0, 1.0]])
    labels = torch.tensor([[1.0, NAN], [NAN, 0.0]])
    expected = (2 * math.log(2.0) + math.log(1 + math.e)) / 2
    assert loss(logits, labels).item() == pytest.approx(expected, rel=1e-6)
    none = loss(logits.requires_grad_(), torch.full((2, 2), NAN))
    assert none.item() == 0.0
    none.backward()  # still a graph: a batch without labels does not break the step


def test_positive_weights_by_hand():
    labels = torch.tensor([[1.0, 0.0, 1.0], [0.0, 0.0, 0.0], [0.0, NAN, 0.0], [0.0, NAN, 0.0]])
    # label 0: 1 positive, 3 negatives -> 3; label 1: no positive -> 1; label 2: 1 vs 3 -> 3
    assert positive_weights(labels, cap=10.0).tolist() == [3.0, 1.0, 3.0]
    assert positive_weights(labels, cap=2.0).tolist() == [2.0, 1.0, 2.0]


def test_finding_metrics_by_hand():
    logits = torch.tensor([[2.0, 1.0], [1.0, NAN], [0.0, -1.0], [-1.0, 3.0]])
    labels = torch.tensor([[1.0, 1.0], [0.0, NAN], [1.0, 1.0], [0.0, 1.0]])
    metrics = finding_metrics(logits, labels)
    # label 0: positives (2, 0) vs negatives (1, -1): 3 of 4 pairs ordered; label 1 has no
    # negative, so only label 0 enters the AUC
    assert metrics["finding_auc"] == pytest.approx(0.75)
    assert metrics["finding_labels_scored"] == 1.0
    # predicted (logit > 0): (0,0) (1,0) (0,1) (3,1); true: (0,0) (2,0) (0,1) (2,1) (3,1)
    # tp 3, predicted 4, true 5 -> 6 / 9
    assert metrics["finding_micro_f1"] == pytest.approx(6 / 9)


def test_finding_weight_adds_exactly_the_weighted_head_loss():
    section = tiny_config()["stage1"]
    section["findings"] = {"weight": 0.5}
    validate(section, load_schema("stage1"), "stage1")
    torch.manual_seed(0)
    model = build_model(section, text_dim=16, num_structures=10)
    labels = torch.randint(0, 2, (4, len(CTRATE_LABELS))).float()
    labels[0, 3] = NAN
    model.set_finding_labels(labels, cap=10.0)
    model.eval()  # no queue update, no dropout: both calls see the same model
    args = (torch.randn(4, 1, 16, 32, 32), torch.randn(4, 10, 16), torch.randn(4, 16))
    total, metrics = model(*args, labels)
    plain, _ = model(*args)
    assert plain.item() == pytest.approx(metrics["contrastive_loss"].item(), rel=1e-6)
    assert total.item() == pytest.approx(
        plain.item() + 0.5 * metrics["finding_loss"].item(), rel=1e-6
    )
    total.backward()
    assert model.observer.finding_head.weight.grad.abs().sum() > 0


def _labels_csv(root, paths):
    """Report labels of the tiny cases: 'Lung nodule' = a nodule in an upper quadrant."""
    texts = pd.read_csv(paths["texts"])
    frame = pd.DataFrame(0, index=texts["case_id"], columns=list(CTRATE_LABELS))
    frame["Lung nodule"] = texts["lung"].str.contains("upper").astype(int).to_numpy()
    frame = frame.drop(index=texts["case_id"].iloc[1])  # one case without labels
    path = root / "labels.csv"
    frame.rename_axis("case_id").reset_index().to_csv(path, index=False)
    return path


def test_stage1_trains_and_exports_a_finding_head(tmp_path):
    paths = make_tiny_data(tmp_path)
    labels = _labels_csv(tmp_path, paths)
    payload = tiny_config(max_steps=4, eval_every=2)
    payload["stage1"]["findings"] = {"weight": 1.0}
    config = write_config(tmp_path, payload)
    argv = stage1_argv(paths, config, tmp_path / "out", resume="never")
    with pytest.raises(ValueError, match="needs --labels"):
        stage1.main(argv)
    assert stage1.main([*argv, "--labels", str(labels)]) == 0
    summary = json.loads((tmp_path / "out" / "summary.json").read_text())
    assert 0.0 <= summary["final"]["finding_auc"] <= 1.0
    valid = pd.read_csv(paths["manifest"]).query("split == 'valid'")["case_id"]
    nodules = pd.read_csv(labels).set_index("case_id").loc[valid, "Lung nodule"]
    assert nodules.nunique() == 2  # the tiny data's validation cases have both classes
    assert summary["final"]["finding_labels_scored"] == 1.0  # only Lung nodule varies
    observer = load_stage1(tmp_path / "out" / "model.pt")
    out = observer.encode_volume(torch.zeros(2, 1, 16, 32, 32))
    assert out.finding_logits.shape == (2, len(CTRATE_LABELS))
    # the frozen observer (stage 2's feature extraction) keeps the head
    (tmp_path / "frozen").mkdir()
    frozen = tmp_path / "frozen" / "observer.safetensors"
    freeze(tmp_path / "out" / "model.pt", frozen)
    tensors, observer_config, _ = load_frozen(frozen)
    rebuilt = build_observer(tensors, observer_config)
    assert torch.allclose(
        rebuilt.encode_volume(torch.zeros(2, 1, 16, 32, 32)).finding_logits, out.finding_logits
    )


def test_bad_labels_file_is_named(tmp_path):
    paths = make_tiny_data(tmp_path)
    pd.DataFrame({"case_id": ["case_000"], "Cardiomegaly": [1]}).to_csv(
        tmp_path / "bad.csv", index=False
    )
    payload = tiny_config(max_steps=2)
    payload["stage1"]["findings"] = {"weight": 1.0}
    argv = stage1_argv(paths, write_config(tmp_path, payload), tmp_path / "out", "never")
    with pytest.raises(ValueError, match=r"bad\.csv: missing label columns"):
        stage1.main([*argv, "--labels", str(tmp_path / "bad.csv")])
    assert not (tmp_path / "out" / "model.pt").exists()


def test_finding_states_of_the_head_and_of_report_labels():
    from ctrg.models.finding_head import finding_states, label_states

    logits = torch.tensor([[2.0, -0.5, 0.0]])
    assert finding_states(logits).tolist() == [[1.0, -1.0, -1.0]]  # logit 0 = p 0.5: absent
    assert finding_states(logits, threshold=-1.0).tolist() == [[1.0, 1.0, 1.0]]
    assert label_states(torch.tensor([[1.0, 0.0, NAN]])).tolist() == [[1.0, -1.0, 0.0]]

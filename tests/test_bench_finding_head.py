"""ctrg bench finding-head on a tiny real feature cache: head and report scores by hand."""

from __future__ import annotations

import json

import pandas as pd
import pytest
import torch

from ctrg.anatomy import CTRATE_LABELS
from ctrg.bench import finding_head
from ctrg.features.cache import save_case_features

L = len(CTRATE_LABELS)
CARDIO = CTRATE_LABELS.index("Cardiomegaly")


def _cache(root, truth_cardio, head_cardio, split):
    rows, truth = [], []
    for i, (true, said) in enumerate(zip(truth_cardio, head_cardio)):
        logits = torch.full((L,), -3.0)
        logits[CARDIO] = 3.0 if said else -3.0
        tensors = {
            "observation_tokens": torch.zeros(10, 4),
            "selected_patch_tokens": torch.zeros(10, 1, 4),
            "selected_patch_index": torch.zeros(10, 1, dtype=torch.long),
            "selected_patch_score": torch.zeros(10, 1),
            "attention": torch.zeros(10, 8).half(),
            "finding_logits": logits,
        }
        case = f"case_{i}"
        save_case_features(root / f"{case}.safetensors", tensors, {"frozen_hash": "h" * 64})
        rows.append({"case_id": case, "split": split, "path": f"{case}.safetensors"})
        rows[-1]["frozen_hash"] = "h" * 64
        truth.append({"case_id": case, **{n: 0 for n in CTRATE_LABELS}, "Cardiomegaly": true})
    pd.DataFrame(rows).to_csv(root / "index.csv", index=False)
    pd.DataFrame(truth).to_csv(root / "truth.csv", index=False)


def test_head_and_report_agreement_by_hand(tmp_path):
    # truth: cardiomegaly in cases 0, 1; the head says 0 and 2; reports name it in 0 only
    _cache(tmp_path, [1, 1, 0, 0], [1, 0, 1, 0], "test")
    reports = ["The heart is enlarged (cardiomegaly).", "Normal.", "Normal.", "Normal."]
    frame = pd.DataFrame({"case_id": [f"case_{i}" for i in range(4)], "prediction": reports})
    frame.to_csv(tmp_path / "predictions.csv", index=False)
    out = tmp_path / "head.json"
    argv = [
        "--features",
        str(tmp_path / "index.csv"),
        "--ground-truth",
        str(tmp_path / "truth.csv"),
    ]
    assert (
        finding_head.main(
            [*argv, "--predictions", str(tmp_path / "predictions.csv"), "--out-json", str(out)]
        )
        == 0
    )
    result = json.loads(out.read_text())
    test = result["splits"]["test"]
    assert test["cases"] == 4 and test["finding_labels_scored"] == 1.0
    assert test["finding_micro_f1"] == pytest.approx(0.5)  # tp 1, predicted 2, true 2
    assert test["finding_auc"] == pytest.approx(0.5)  # positives (3, -3) vs negatives (3, -3)
    reports_scores = result["reports"]
    assert reports_scores["reports_vs_truth_micro_f1"] == pytest.approx(2 / 3)  # tp 1: 1 + 2
    assert reports_scores["reports_vs_head_micro_f1"] == pytest.approx(2 / 3)
    assert reports_scores["positives"] == {"reports": 1, "head": 2}

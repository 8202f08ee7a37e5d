"""Ridge probe from frozen features to labels (ctrg bench probe)."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
import torch

from ctrg.bench.probe import main, ridge_loo, roc_auc
from ctrg.features.cache import save_case_features


def test_roc_auc_by_hand():
    # positives score 0.9 and 0.4; negatives 0.4 and 0.1: pairs won 1 + 1 + 0.5 (tie) + 1
    assert roc_auc(np.array([0.9, 0.4, 0.4, 0.1]), np.array([1, 1, 0, 0])) == 3.5 / 4
    assert np.isnan(roc_auc(np.array([0.1, 0.2]), np.array([1, 1])))


def test_leave_one_out_error_matches_refitting_without_each_case():
    generator = torch.Generator().manual_seed(0)
    x = torch.randn(12, 5, generator=generator, dtype=torch.float64)
    x = x - x.mean(0)
    y = (x[:, :1] + 0.5 * torch.randn(12, 1, generator=generator, dtype=torch.float64)).float()
    _, _, chosen, loo = ridge_loo(x.float(), y, penalties=(0.5, 50.0))
    errors = {}
    for penalty in (0.5, 50.0):
        residuals = []
        for i in range(12):
            keep = torch.arange(12) != i
            xk, yk = x[keep], y[keep].double()
            xm, ym = xk.mean(0), yk.mean(0)  # the refit centres on its own cases
            w = torch.linalg.solve(
                (xk - xm).T @ (xk - xm) + penalty * torch.eye(5), (xk - xm).T @ (yk - ym)
            )
            residuals.append(float(y[i].double() - ((x[i] - xm) @ w + ym)))
        errors[penalty] = np.mean(np.square(residuals))
    assert loo[:, 0].tolist() == pytest.approx([errors[0.5], errors[50.0]], rel=1e-5)
    assert chosen.item() == min(errors, key=errors.get)


def _features(root, n_cases: int, signal: bool):
    generator = torch.Generator().manual_seed(1)
    rows, labels = [], []
    for i in range(n_cases):
        label = i % 2
        tokens = torch.randn(2, 4, generator=generator)
        if signal:
            tokens[0, 0] += 3.0 * label
        tensors = {
            "observation_tokens": tokens,
            "selected_patch_tokens": tokens[:, None, :].repeat(1, 3, 1),
            "selected_patch_index": torch.zeros(2, 3, dtype=torch.long),
            "selected_patch_score": torch.zeros(2, 3),
            "attention": torch.zeros(2, 8).half(),
        }
        case = f"case_{i}"
        save_case_features(root / f"{case}.safetensors", tensors, {"frozen_hash": "h" * 64})
        split = "train" if i < n_cases * 2 // 3 else "test"
        rows.append(
            {
                "case_id": case,
                "split": split,
                "path": f"{case}.safetensors",
                "frozen_hash": "h" * 64,
            }
        )
        labels.append({"case_id": case, "Cardiomegaly": label, "Emphysema": 0})
    pd.DataFrame(rows).to_csv(root / "index.csv", index=False)
    pd.DataFrame(labels).to_csv(root / "labels.csv", index=False)


@pytest.mark.parametrize("signal", [True, False])
def test_cli_reads_a_label_the_features_carry_and_not_one_they_do_not(tmp_path, signal):
    _features(tmp_path, 60, signal)
    out = tmp_path / "probe.json"
    argv = ["--features", str(tmp_path / "index.csv"), "--labels", str(tmp_path / "labels.csv")]
    assert main([*argv, "--tokens", "both", "--eval-splits", "test", "--out-json", str(out)]) == 0
    result = json.loads(out.read_text())
    assert result["train_cases"] == 40 and result["eval_cases"] == 20 and result["inputs"] == 16
    assert np.isnan(result["per_label"]["Emphysema"]["auc"])  # no positive: left out
    auc = result["per_label"]["Cardiomegaly"]["auc"]
    assert auc > 0.95 if signal else auc < 0.85
    assert result["mean_auc"] == auc

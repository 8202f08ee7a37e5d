"""ctrg bench text-signal: pooled R² of text embeddings on finding indicators."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch
from safetensors.torch import save_file

from ctrg.anatomy import CHEST_STRUCTURES
from ctrg.bench.text_signal import explained_variance, indicators, structure_signal


def test_explained_variance_by_hand():
    design = np.array([[0.0], [0.0], [1.0], [1.0]])
    assert explained_variance(np.array([[1.0], [1.0], [3.0], [3.0]]), design) == pytest.approx(1.0)
    # group means 1 and 3, residuals +-1: 1 - 4/8
    assert explained_variance(np.array([[0.0], [2.0], [2.0], [4.0]]), design) == pytest.approx(0.5)
    assert explained_variance(np.ones((4, 2)), design) == 0.0
    assert explained_variance(np.array([[0.0], [2.0], [2.0], [4.0]]), design[:, :0]) == 0.0


def test_indicators_and_structure_signal(tmp_path):
    findings = pd.DataFrame(
        {
            "case_id": ["a", "b", "b"],
            "label": ["Lung nodule", "Lung nodule", "Cardiomegaly"],
            "structure": ["lung", "lung", "heart"],
            "side": ["left", "right", ""],
        }
    )
    ids = ["a", "b", "c", "d"]
    assert indicators(findings, ids, "lung", False).tolist() == [[1], [1], [0], [0]]
    assert indicators(findings, ids, "lung", True).tolist() == [[1, 0], [0, 1], [0, 0], [0, 0]]
    embeddings = torch.zeros(4, len(CHEST_STRUCTURES), 2)
    embeddings[:, CHEST_STRUCTURES.index("lung"), 0] = torch.tensor([1.0, 1.0, 0.0, 0.0])
    embeddings[:, CHEST_STRUCTURES.index("lung"), 1] = torch.tensor([1.0, -1.0, 0.0, 0.0])
    path = tmp_path / "cache.safetensors"
    save_file({"embeddings": embeddings}, str(path), metadata={"case_ids": '["a","b","c","d"]'})
    findings.to_csv(tmp_path / "findings.csv", index=False)
    rows = {
        r["structure"]: r for r in structure_signal(str(path), str(tmp_path / "findings.csv"), None)
    }
    lung = rows["lung"]
    # total sum of squares 1 (dimension 0, the nodule indicator) + 2 (dimension 1, its side)
    assert lung["r2_findings"] == pytest.approx(1 / 3)
    assert lung["r2_findings_and_side"] == pytest.approx(1.0)
    assert lung["cases_with_findings"] == 2

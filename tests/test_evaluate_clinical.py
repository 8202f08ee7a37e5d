"""Clinical efficacy: per-label and averaged P/R/F1 against hand computation."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from ctrg.anatomy import CTRATE_LABELS
from ctrg.evaluate.clinical import (
    case_counts,
    clinical_report,
    labels_to_matrix,
    load_ground_truth,
    scores_from_counts,
)

TRUTH = np.array([[1, 0, 1], [1, 1, 0], [0, 0, 0], [1, 0, 0]])
PRED = np.array([[1, 0, 0], [0, 1, 1], [0, 0, 0], [1, 1, 0]])
# label 0: tp 2 fp 0 fn 1 -> P 1, R 2/3, F1 0.8
# label 1: tp 1 fp 1 fn 0 -> P 1/2, R 1, F1 2/3
# label 2: tp 0 fp 1 fn 1 -> P 0, R 0, F1 0


def test_per_label_and_averages_by_hand():
    s = scores_from_counts(case_counts(TRUTH, PRED).sum(0))
    np.testing.assert_allclose(s["precision"], [1, 0.5, 0])
    np.testing.assert_allclose(s["recall"], [2 / 3, 1, 0])
    np.testing.assert_allclose(s["f1"], [0.8, 2 / 3, 0])
    np.testing.assert_allclose(s["support"], [3, 1, 1])
    # micro: tp 3, fp 2, fn 2 -> F1 = 6 / 10
    assert s["micro_precision"] == pytest.approx(3 / 5)
    assert s["micro_recall"] == pytest.approx(3 / 5)
    assert s["micro_f1"] == pytest.approx(0.6)
    assert s["macro_f1"] == pytest.approx((0.8 + 2 / 3) / 3)
    assert s["weighted_f1"] == pytest.approx((3 * 0.8 + 1 * 2 / 3) / 5)
    assert s["macro_precision"] == pytest.approx(0.5)


def test_scores_vectorise_over_leading_dims():
    counts = case_counts(TRUTH, PRED)
    stacked = np.stack([counts.sum(0), counts[:2].sum(0)])
    s = scores_from_counts(stacked)
    assert s["micro_f1"].shape == (2,)
    # first two cases: tp 2, fp 1, fn 2 -> 4 / 7
    assert s["micro_f1"][1] == pytest.approx(4 / 7)


def test_zero_division_gives_zero():
    s = scores_from_counts(case_counts(np.zeros((2, 2), int), np.zeros((2, 2), int)).sum(0))
    assert s["micro_f1"] == 0 and s["macro_f1"] == 0 and s["weighted_f1"] == 0


def test_clinical_report_json_ready():
    report = clinical_report(TRUTH, PRED, labels=("a", "b", "c"))
    assert report["per_label"]["b"] == {
        "precision": 0.5,
        "recall": 1.0,
        "f1": pytest.approx(2 / 3),
        "support": 1,
        "predicted": 2,
    }
    assert report["micro_f1"] == pytest.approx(0.6)


def test_labels_to_matrix_checks():
    row = {name: 0 for name in CTRATE_LABELS}
    assert labels_to_matrix([row]).shape == (1, 18)
    with pytest.raises(ValueError, match="lacks labels"):
        labels_to_matrix([{"Emphysema": 1}])
    with pytest.raises(ValueError, match="0 or 1"):
        labels_to_matrix([{**row, "Emphysema": 2}])


def test_load_ground_truth_aligns_and_reports(tmp_path):
    frame = pd.DataFrame({"case_id": ["b", "a"], **{n: [0, 0] for n in CTRATE_LABELS}})
    frame.loc[0, "Emphysema"] = 1
    path = tmp_path / "labels.csv"
    frame.to_csv(path, index=False)
    truth, rows = load_ground_truth(path, ["a", "x", "b"])
    assert rows.tolist() == [0, 2]
    assert truth[1, CTRATE_LABELS.index("Emphysema")] == 1
    assert truth[0].sum() == 0
    with pytest.raises(ValueError, match="none of the 1 evaluated cases"):
        load_ground_truth(path, ["zzz"])
    frame.drop(columns=["Emphysema"]).to_csv(path, index=False)
    with pytest.raises(ValueError, match=r"labels.csv: missing label columns \['Emphysema'\]"):
        load_ground_truth(path, ["a"])

"""Template-collapse diagnostics on a toy set."""

from __future__ import annotations

import numpy as np
import pytest

from ctrg.evaluate.collapse import collapse_report, normal_template_bias, text_codes

NORMAL = "no abnormality."
TEXTS = [NORMAL, NORMAL, NORMAL, "nodule.", "effusion."]
TRUTH = np.array([[1, 0], [0, 0], [1, 1], [1, 0], [0, 0]] + [[0, 0]] * 5)
PRED = np.array([[0, 0], [0, 0], [0, 0], [1, 0], [0, 1]] + [[0, 0]] * 5)


def test_collapse_by_hand():
    out = collapse_report(TEXTS, TRUTH[:5], PRED[:5], rare_prevalence=0.2, labels=("a", "b"))
    assert out["share_distinct"] == pytest.approx(3 / 5)
    assert out["share_most_frequent"] == pytest.approx(3 / 5)
    assert out["most_frequent_report"] == NORMAL
    # abnormal cases: 0, 2, 3; all-normal predictions among them: 0, 2 -> 2/3
    assert out["normal_template_bias"] == pytest.approx(2 / 3)
    assert out["share_predicted_all_normal"] == pytest.approx(3 / 5)
    # prevalence a = 3/5 (not rare), b = 1/5 (rare); b's only positive (case 2) missed
    assert out["rare_label_recall"] == {"b": 0.0}


def test_bias_is_nan_without_findings_and_codes_are_stable():
    assert np.isnan(normal_template_bias(np.zeros((3, 2)), np.zeros((3, 2))))
    assert text_codes(["x", "y", "x"]).tolist() == [0, 1, 0]


def test_without_labels_only_text_diagnostics():
    out = collapse_report(TEXTS, None, None, rare_prevalence=0.1)
    assert "skipped" in out["label_diagnostics"] and "normal_template_bias" not in out

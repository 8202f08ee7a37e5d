"""Template-collapse diagnostics: does the generator fall back on one generic normal report?

3D report generators often emit the same fluent all-normal template for most volumes, which
scores well on BLEU because normal sentences dominate references. These numbers expose it:

* ``share_distinct``: distinct generated reports / cases (1 = every report different).
* ``share_most_frequent``: cases whose report equals the most frequent one / cases.
* ``normal_template_bias``: of the cases with at least one true finding, the share whose
  generated report has no finding at all (labeller output all zero).
* ``rare_label_recall``: recall of each label whose prevalence among the true labels is at
  most ``rare_prevalence`` (and above zero), and their mean.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from typing import Any

import numpy as np

from ctrg.anatomy import CTRATE_LABELS


def text_codes(texts: Sequence[str]) -> np.ndarray:
    """(N,) int codes, equal for equal texts (compare already-normalised texts)."""
    index: dict[str, int] = {}
    return np.asarray([index.setdefault(t, len(index)) for t in texts], dtype=np.int64)


def text_diversity(codes: np.ndarray) -> dict[str, float]:
    """``share_distinct`` and ``share_most_frequent`` of (N,) text codes."""
    if codes.size == 0:
        raise ValueError("no texts")
    counts = np.bincount(codes)
    return {
        "share_distinct": float((counts > 0).sum() / codes.size),
        "share_most_frequent": float(counts.max() / codes.size),
    }


def normal_template_bias(truth: np.ndarray, pred: np.ndarray) -> float:
    """Share of cases with >= 1 true finding whose predicted labels are all zero.

    Args:
        truth: (N, L) 0/1 true labels.
        pred: (N, L) 0/1 predicted labels.

    Returns:
        The share, or NaN when no case has a finding.
    """
    abnormal = truth.any(axis=1)
    if not abnormal.any():
        return float("nan")
    return float((~pred[abnormal].any(axis=1)).mean())


def rare_labels(truth: np.ndarray, rare_prevalence: float) -> np.ndarray:
    """Indices of labels with 0 < prevalence <= ``rare_prevalence`` (truth (N, L))."""
    prevalence = truth.mean(axis=0)
    return np.flatnonzero((prevalence > 0) & (prevalence <= rare_prevalence))


def collapse_report(
    texts: Sequence[str],
    truth: np.ndarray | None,
    pred: np.ndarray | None,
    rare_prevalence: float,
    labels: Sequence[str] = CTRATE_LABELS,
) -> dict[str, Any]:
    """All collapse diagnostics, JSON-ready.

    Args:
        texts: N generated reports (normalised as scored).
        truth: (M, L) true labels of the cases that have them, or None (label-based
            diagnostics then skipped).
        pred: (M, L) labels of the same cases' generated reports, or None.
        rare_prevalence: prevalence threshold of a "rare" label.
    """
    codes = text_codes(texts)
    most_common, count = Counter(texts).most_common(1)[0]
    out: dict[str, Any] = {
        **text_diversity(codes),
        "n_cases": len(texts),
        "n_distinct": int(codes.max() + 1),
        "most_frequent_report": most_common[:300],
        "most_frequent_count": int(count),
    }
    if truth is None or pred is None:
        out["label_diagnostics"] = "skipped: no labels (the labeller did not run)"
        return out
    out["normal_template_bias"] = normal_template_bias(truth, pred)
    out["share_predicted_all_normal"] = float((~pred.any(axis=1)).mean())
    out["share_true_all_normal"] = float((~truth.any(axis=1)).mean())
    rare = rare_labels(truth, rare_prevalence)
    recalls = {}
    for j in rare:
        positives = truth[:, j].astype(bool)
        recalls[labels[j]] = float(pred[positives, j].mean())
    out["rare_prevalence_threshold"] = rare_prevalence
    out["rare_label_recall"] = recalls
    out["rare_label_recall_mean"] = float(np.mean(list(recalls.values()))) if recalls else None
    return out

"""Clinical efficacy: per-label precision/recall/F1 and micro/macro/weighted averages.

Predicted labels come from running the abnormality labeller on the generated reports; the
truth is either the labeller run on the reference reports ("reference" source) or a
ground-truth label CSV (case_id + the 18 CT-RATE columns; the phantom and CT-RATE have them).

Conventions (the scikit-learn ones, ``zero_division=0``): a label's precision is 0 when it is
never predicted, its recall 0 when it is never true; macro averages over all labels, weighted
averages by true-label support, micro pools the counts of all labels.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from ctrg.anatomy import CTRATE_LABELS

log = logging.getLogger(__name__)

_AVERAGES = ("micro", "macro", "weighted")


def labels_to_matrix(
    label_dicts: Sequence[dict[str, int]], labels: Sequence[str] = CTRATE_LABELS
) -> np.ndarray:
    """Stack label dicts into a (N, L) 0/1 int matrix in ``labels`` order.

    Raises:
        ValueError: if a dict lacks a label or holds a value other than 0/1.
    """
    matrix = np.zeros((len(label_dicts), len(labels)), dtype=np.int64)
    for i, found in enumerate(label_dicts):
        missing = [name for name in labels if name not in found]
        if missing:
            raise ValueError(f"label dict {i} lacks labels {missing}")
        matrix[i] = [int(found[name]) for name in labels]
    if not np.isin(matrix, (0, 1)).all():
        raise ValueError("labels must be 0 or 1")
    return matrix


def case_counts(truth: np.ndarray, pred: np.ndarray) -> np.ndarray:
    """Per-case, per-label confusion counts.

    Args:
        truth: (N, L) 0/1 true labels.
        pred: (N, L) 0/1 predicted labels.

    Returns:
        (N, L, 3) int array of (true positive, false positive, false negative).
    """
    if truth.shape != pred.shape:
        raise ValueError(f"truth {truth.shape} and prediction {pred.shape} shapes differ")
    t, p = truth.astype(bool), pred.astype(bool)
    return np.stack([t & p, ~t & p, t & ~p], axis=-1).astype(np.int64)


def _ratio(num: np.ndarray, den: np.ndarray) -> np.ndarray:
    return np.divide(num, den, out=np.zeros_like(num, dtype=float), where=den > 0)


def scores_from_counts(counts: np.ndarray) -> dict[str, np.ndarray]:
    """Precision/recall/F1 from summed counts.

    Args:
        counts: (..., L, 3) summed (tp, fp, fn); leading dims are e.g. bootstrap resamples.

    Returns:
        ``precision``/``recall``/``f1``/``support`` (..., L) and ``micro_*``, ``macro_*``,
        ``weighted_*`` (...) for precision, recall and F1.
    """
    tp, fp, fn = (counts[..., k].astype(float) for k in range(3))
    support = tp + fn
    precision, recall = _ratio(tp, tp + fp), _ratio(tp, support)
    f1 = _ratio(2 * precision * recall, precision + recall)
    out: dict[str, np.ndarray] = {
        "precision": precision,
        "recall": recall,
        "f1": f1,
        "support": support,
    }
    stp, sfp, sfn = tp.sum(-1), fp.sum(-1), fn.sum(-1)
    out["micro_precision"] = _ratio(stp, stp + sfp)
    out["micro_recall"] = _ratio(stp, stp + sfn)
    out["micro_f1"] = _ratio(2 * stp, 2 * stp + sfp + sfn)
    weights = _ratio(support, support.sum(-1, keepdims=True))
    for name, values in (("precision", precision), ("recall", recall), ("f1", f1)):
        out[f"macro_{name}"] = values.mean(-1)
        out[f"weighted_{name}"] = (values * weights).sum(-1)
    return out


def clinical_report(
    truth: np.ndarray, pred: np.ndarray, labels: Sequence[str] = CTRATE_LABELS
) -> dict[str, Any]:
    """JSON-ready clinical efficacy: averages plus a per-label table."""
    scores = scores_from_counts(case_counts(truth, pred).sum(0))
    averages = {
        key: float(value) for key, value in scores.items() if key.split("_")[0] in _AVERAGES
    }
    per_label = {
        name: {
            "precision": float(scores["precision"][j]),
            "recall": float(scores["recall"][j]),
            "f1": float(scores["f1"][j]),
            "support": int(scores["support"][j]),
            "predicted": int(pred[:, j].sum()),
        }
        for j, name in enumerate(labels)
    }
    return {"n_cases": int(truth.shape[0]), **averages, "per_label": per_label}


def run_labeller(texts: Sequence[str]) -> list[dict[str, int]]:
    """Label texts with the project labeller (``ctrg.text.labeller.Labeller``)."""
    from ctrg.text.labeller import Labeller

    return Labeller().label_many(list(texts))


def load_ground_truth(
    path: str | Path, case_ids: Sequence[str], labels: Sequence[str] = CTRATE_LABELS
) -> tuple[np.ndarray, np.ndarray]:
    """Read a ground-truth label CSV aligned to ``case_ids``.

    Args:
        path: CSV with a ``case_id`` column (or CT-RATE's ``VolumeName``) and one 0/1 column
            per label.
        case_ids: the evaluated cases, in order.

    Returns:
        ``(truth (M, L) int, row_index (M,) int)``: labels of the cases present in the file
        and their positions in ``case_ids`` (cases absent from the file are logged and left
        out of this comparison).

    Raises:
        ValueError: naming the file when a label column or the id column is missing, or
            when none of the cases is in it.
    """
    frame = pd.read_csv(path)
    id_column = next((c for c in ("case_id", "VolumeName") if c in frame.columns), None)
    if id_column is None:
        raise ValueError(f"{path}: no case_id column (columns: {list(frame.columns)[:6]}...)")
    missing = [name for name in labels if name not in frame.columns]
    if missing:
        raise ValueError(f"{path}: missing label columns {missing}")
    frame = frame.drop_duplicates(id_column).set_index(id_column)
    keep = [i for i, cid in enumerate(case_ids) if cid in frame.index]
    if not keep:
        raise ValueError(f"{path}: none of the {len(case_ids)} evaluated cases is in the file")
    if len(keep) < len(case_ids):
        log.warning(
            "%s: %d of %d cases have no ground-truth labels; left out of that comparison",
            path,
            len(case_ids) - len(keep),
            len(case_ids),
        )
    values = frame.loc[[case_ids[i] for i in keep], list(labels)].to_numpy()
    if not np.isin(values, (0, 1)).all():
        raise ValueError(f"{path}: label values must be 0 or 1")
    return values.astype(np.int64), np.asarray(keep, dtype=np.int64)


def label_matrix(
    path: str | Path, case_ids: Sequence[str], labels: Sequence[str] = CTRATE_LABELS
) -> tuple[np.ndarray, int]:
    """Labels of ``case_ids`` in their order, NaN for a case the file does not have.

    Returns:
        ``(matrix (N, L) float32 in {0, 1, NaN}, how many cases have labels)``.

    Raises:
        ValueError: as :func:`load_ground_truth` (naming the file).
    """
    matrix = np.full((len(case_ids), len(labels)), np.nan, dtype=np.float32)
    if not len(case_ids):
        return matrix, 0
    values, rows = load_ground_truth(path, case_ids, labels)
    matrix[rows] = values
    return matrix, len(rows)


def positive_names(matrix_row: np.ndarray, labels: Sequence[str] = CTRATE_LABELS) -> str:
    """The ';'-joined names of a row's positive labels ('' when none)."""
    return ";".join(name for name, v in zip(labels, matrix_row) if v)

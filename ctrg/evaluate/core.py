"""One evaluation of reference/prediction pairs: NLG, clinical efficacy, collapse, bootstrap.

Used by ``ctrg evaluate`` (predictions.csv of a run) and ``ctrg evaluate-text`` (any CSV), so
both report the same numbers under the same protocol.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ctrg.anatomy import CTRATE_LABELS
from ctrg.evaluate import clinical, collapse, meteor
from ctrg.evaluate.bootstrap import Statistic
from ctrg.evaluate.nlg import NLG_KEYS, NLGResult, NLGScorer, bleu_from_stats, normalise_texts

log = logging.getLogger(__name__)


@dataclass
class Evaluation:
    """Everything measured on N cases.

    Attributes:
        case_ids, references, predictions: the N cases (texts as given).
        normalise: the normalisation the NLG scores used.
        nlg: NLG scores.
        ref_labels, pred_labels: (N, L) labeller output on references / predictions, or None.
        truths: per truth source (``reference``, ``gt``, ``gt2``...): (N, L) true labels and
            (N,) bool mask of the cases that have them.
        labeller_note: why the labeller did not run, when it did not.
    """

    case_ids: list[str]
    references: list[str]
    predictions: list[str]
    normalise: str
    nlg: NLGResult
    normalised_predictions: list[str]
    ref_labels: np.ndarray | None = None
    pred_labels: np.ndarray | None = None
    truths: dict[str, tuple[np.ndarray, np.ndarray]] = field(default_factory=dict)
    truth_files: dict[str, str] = field(default_factory=dict)
    labeller_note: str | None = None

    @property
    def n(self) -> int:
        return len(self.case_ids)


def _label_both(references: list[str], predictions: list[str], mode: str) -> tuple:
    """Run the labeller on references and predictions; ``mode`` is on|auto|off."""
    if mode == "off":
        return None, None, "labeller switched off"
    try:
        ref = clinical.labels_to_matrix(clinical.run_labeller(references))
        pred = clinical.labels_to_matrix(clinical.run_labeller(predictions))
    except ImportError as err:
        if mode == "on":
            raise RuntimeError(f"the labeller (ctrg.text.labeller) is unavailable: {err}") from err
        note = f"labeller unavailable ({err}); clinical efficacy not computed"
        log.warning(note)
        return None, None, note
    return ref, pred, None


def evaluate_pairs(
    case_ids: Sequence[str],
    references: Sequence[str],
    predictions: Sequence[str],
    scorer: NLGScorer,
    normalise: str = "raw",
    labeller: str = "auto",
    ground_truth: Sequence[str | Path] = (),
) -> Evaluation:
    """Score N reference/prediction pairs.

    Args:
        case_ids: N case ids (unique).
        references, predictions: N texts each.
        scorer: holds the METEOR JVM.
        normalise: see :data:`ctrg.evaluate.nlg.NORMALISATIONS`.
        labeller: ``on`` (error if unavailable), ``auto`` (skip with a recorded note) or ``off``.
        ground_truth: label CSVs (case_id + 18 label columns).
    """
    case_ids, references, predictions = list(case_ids), list(references), list(predictions)
    if len(set(case_ids)) != len(case_ids):
        raise ValueError("case ids are not unique")
    norm_refs = normalise_texts(references, normalise)
    norm_preds = normalise_texts(predictions, normalise)
    nlg = scorer.score(norm_refs, norm_preds)
    ref_labels, pred_labels, note = _label_both(references, predictions, labeller)
    ev = Evaluation(
        case_ids,
        references,
        predictions,
        normalise,
        nlg,
        norm_preds,
        ref_labels,
        pred_labels,
        labeller_note=note,
    )
    if ref_labels is not None:
        ev.truths["reference"] = (ref_labels, np.ones(ev.n, dtype=bool))
    for k, path in enumerate(ground_truth):
        if pred_labels is None:
            raise RuntimeError(f"ground truth {path} given but the labeller did not run: {note}")
        truth, rows = clinical.load_ground_truth(path, case_ids)
        full = np.zeros_like(pred_labels)
        full[rows] = truth
        mask = np.zeros(ev.n, dtype=bool)
        mask[rows] = True
        name = "gt" if k == 0 else f"gt{k + 1}"
        ev.truths[name] = (full, mask)
        ev.truth_files[name] = str(path)
    return ev


def _ce_prefix(source: str) -> str:
    return "ce_" if source == "reference" else f"ce_{source}_"


def collapse_truth(ev: Evaluation) -> str | None:
    """The truth source of the collapse diagnostics: ground truth when given, else reference."""
    for name in ("gt", "reference"):
        if name in ev.truths:
            return name
    return None


def statistic(ev: Evaluation) -> Statistic:
    """The headline numbers as a function of resampled case indices (see bootstrap.py)."""
    counts = {
        name: clinical.case_counts(truth, ev.pred_labels) * mask[:, None, None]
        for name, (truth, mask) in ev.truths.items()
    }
    codes = collapse.text_codes(ev.normalised_predictions)
    source = collapse_truth(ev)
    meteor_summable = meteor.aggregable(ev.nlg.meteor_stats)  # (N, 23), once for all resamples

    def compute(idx: np.ndarray) -> dict[str, float]:
        bleu = bleu_from_stats(ev.nlg.bleu_stats[idx].sum(0))
        out = {f"bleu_{k + 1}": float(bleu[k]) for k in range(4)}
        out["meteor"] = float(meteor.score(meteor_summable[idx].sum(0)))
        out["rouge_l"] = float(ev.nlg.per_case["rouge_l"][idx].mean())
        out["cider"] = float(ev.nlg.per_case["cider"][idx].mean())
        for name, case_count in counts.items():
            scores = clinical.scores_from_counts(case_count[idx].sum(0))
            for avg in ("micro", "macro", "weighted"):
                out[f"{_ce_prefix(name)}{avg}_f1"] = float(scores[f"{avg}_f1"])
        out["share_most_frequent"] = collapse.text_diversity(codes[idx])["share_most_frequent"]
        if source is not None:
            truth, mask = ev.truths[source]
            sel = idx[mask[idx]]
            out["normal_template_bias"] = collapse.normal_template_bias(
                truth[sel], ev.pred_labels[sel]
            )
        return out

    return compute


def summary(ev: Evaluation, rare_prevalence: float) -> dict[str, Any]:
    """Full (non-bootstrap) results: NLG both levels, clinical per source, collapse."""
    out: dict[str, Any] = {
        "n_cases": ev.n,
        "nlg": {"corpus": ev.nlg.corpus, "per_sample_mean": ev.nlg.per_sample_mean},
        "clinical": {},
    }
    for name, (truth, mask) in ev.truths.items():
        report = clinical.clinical_report(truth[mask], ev.pred_labels[mask], CTRATE_LABELS)
        report["truth"] = ev.truth_files.get(name, "labeller on reference reports")
        out["clinical"][name] = report
    if ev.labeller_note:
        out["clinical"]["note"] = ev.labeller_note
    source = collapse_truth(ev)
    truth = pred = None
    if source is not None:
        mask = ev.truths[source][1]
        truth, pred = ev.truths[source][0], ev.pred_labels
        truth, pred = truth[mask], pred[mask]
    out["collapse"] = collapse.collapse_report(
        ev.normalised_predictions, truth, pred, rare_prevalence
    )
    out["collapse"]["truth"] = source
    return out


def headline(ev: Evaluation) -> dict[str, float]:
    """Top-level numbers: corpus NLG and CE F1 (reference labels: ``ce_*``; ground truth:
    ``ce_gt_*``)."""
    out = {key: ev.nlg.corpus[key] for key in NLG_KEYS}
    if ev.truths:
        point = statistic_point_clinical(ev)
        out.update(point)
    return out


def statistic_point_clinical(ev: Evaluation) -> dict[str, float]:
    out = {}
    for name, (truth, mask) in ev.truths.items():
        scores = clinical.scores_from_counts(
            clinical.case_counts(truth[mask], ev.pred_labels[mask]).sum(0)
        )
        for avg in ("micro", "macro", "weighted"):
            out[f"{_ce_prefix(name)}{avg}_f1"] = float(scores[f"{avg}_f1"])
    return out

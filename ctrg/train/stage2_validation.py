"""Validation of stage 2 and the rule that picks the exported checkpoint.

Every ``loop.eval_every`` steps the decoder generates reports for a fixed subset of the
validation split (``ctrg.models.generation``, the code path of ``ctrg generate-features``)
and :class:`Validator` returns:

- ``loss``: teacher-forced cross-entropy per report token;
- ``bleu_4``: corpus BLEU-4 (pycocoevalcap counting, lower-cased);
- ``clinical_f1``: micro-F1 of the 18 CT-RATE labels that the project's rule-based labeller
  (``ctrg.text.labeller``, the one of ``ctrg label-reports`` and ``ctrg evaluate``) reads
  from the generated reports, against the labels it reads from the reference reports;
- ``share_distinct``: share of distinct generated reports.

``stage2.validation.best_metric`` picks the checkpoint (:func:`selection`): ``clinical_f1``
(default; ties broken by the higher ``bleu_4``, then the earlier step), ``bleu_4`` (ties:
the earlier step) or ``loss`` (minimised; ties: the earlier step).
"""

from __future__ import annotations

import logging
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader

from ctrg.evaluate.clinical import case_counts, labels_to_matrix, run_labeller, scores_from_counts
from ctrg.features.dataset import Collate, FeatureReportDataset
from ctrg.models.decoder import teacher_forced_loss
from ctrg.models.generation import GenerationConfig, generate_reports
from ctrg.train.stage2_inputs import visual_batch

log = logging.getLogger(__name__)

SELECTION: dict[str, tuple[str, str | None]] = {
    "clinical_f1": ("max", "bleu_4"),
    "bleu_4": ("max", None),
    "loss": ("min", None),
}
"""best_metric -> (direction, tie-break metric maximised on equal values or None)."""


def bleu_4(references: list[str], predictions: list[str]) -> float:
    """Corpus BLEU-4 with pycocoevalcap's counting on lower-cased, whitespace-collapsed text."""
    from ctrg.evaluate.nlg import bleu_case_stats, bleu_from_stats, normalise_texts

    refs = normalise_texts(references, "lower")
    preds = normalise_texts(predictions, "lower")
    stats = bleu_case_stats(refs, preds).sum(axis=0)
    return float(bleu_from_stats(stats)[3])


def micro_f1(truth: np.ndarray, pred: np.ndarray) -> float:
    """Micro-F1 over all cases and labels: 2 TP / (2 TP + FP + FN).

    Args:
        truth: (N, L) 0/1 reference labels.
        pred: (N, L) 0/1 labels of the generated reports.

    Returns:
        The micro-F1, as ``ctrg evaluate`` computes it (``ctrg.evaluate.clinical``); 0.0
        when neither holds a positive label (F1 undefined: its ``zero_division=0`` convention).
    """
    return float(scores_from_counts(case_counts(truth, pred).sum(axis=0))["micro_f1"])


def selection(best_metric: str) -> dict[str, Any]:
    """The ``LoopConfig`` fields that pick stage 2's best checkpoint by ``best_metric``.

    Raises:
        ValueError: for a metric that is not in :data:`SELECTION`.
    """
    if best_metric not in SELECTION:
        raise ValueError(f"stage2.validation.best_metric {best_metric!r}: not in {list(SELECTION)}")
    mode, tiebreak = SELECTION[best_metric]
    return {"best_metric": best_metric, "best_mode": mode, "best_tiebreak": tiebreak}


class Validator:
    """Validation metrics of generated reports on a fixed subset (rank 0 only; module doc)."""

    def __init__(
        self,
        dataset: FeatureReportDataset,
        tokenizer: Any,
        decoding: GenerationConfig,
        batch_size: int,
        device: torch.device,
    ) -> None:
        self.dataset, self.tokenizer, self.decoding = dataset, tokenizer, decoding
        self.device = device
        collate = Collate(dataset.kind, dataset.structure, tokenizer.pad_id)
        self.loader = DataLoader(dataset, batch_size=batch_size, shuffle=False, collate_fn=collate)
        self.reference_labels = labels_to_matrix(run_labeller(dataset.reports))  # (N, L)
        if not self.reference_labels.any():
            log.warning(
                "no validation reference report has a positive label: clinical_f1 is 0 at "
                "every step, so a selection by it falls to its tie-break"
            )

    def __call__(self, module: nn.Module, step: int) -> dict[str, float]:
        losses, weights, predictions = [], [], []
        for batch in self.loader:
            batch = {k: v.to(self.device) for k, v in batch.items()}
            visual = visual_batch(batch)
            loss = teacher_forced_loss(module, visual, batch["ids"], self.tokenizer.pad_id)
            tokens = int((batch["ids"][:, 1:] != self.tokenizer.pad_id).sum())
            losses.append(float(loss) * tokens)
            weights.append(tokens)
            predictions += generate_reports(module, self.tokenizer, visual, self.decoding)
        predicted_labels = labels_to_matrix(run_labeller(predictions))
        metrics = {
            "loss": sum(losses) / max(sum(weights), 1),
            "bleu_4": bleu_4(self.dataset.reports, predictions),
            "clinical_f1": micro_f1(self.reference_labels, predicted_labels),
            "share_distinct": len(set(predictions)) / len(predictions),
        }
        log.info(
            "step %d validation: loss %.4f, BLEU-4 %.4f, clinical micro-F1 %.4f, "
            "distinct %.2f (e.g. %r)",
            step,
            metrics["loss"],
            metrics["bleu_4"],
            metrics["clinical_f1"],
            metrics["share_distinct"],
            predictions[0][:120],
        )
        return metrics


def make_validator(
    valid_rows: Any, content: str, section: dict[str, Any], tokenizer: Any, device: torch.device
) -> Validator | None:
    """The validation callback, or None (with a warning) when the split has no cases."""
    validation = section["validation"]
    if valid_rows is None:
        log.warning("no %s cases: no validation, model.pt = last step", validation["split"])
        return None
    valid_set = FeatureReportDataset(
        valid_rows,
        content,
        section["visual_tokens"],
        tokenizer,
        section["max_report_tokens"],
        section["finding_tokens"],
    )
    decoding = GenerationConfig(**validation["decoding"])
    return Validator(valid_set, tokenizer, decoding, validation["batch_size"], device)

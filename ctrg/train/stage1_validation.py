"""Stage-1 validation (retrieval, loss, finding head) and the finding labels of the datasets."""

from __future__ import annotations

import logging
from typing import Any

import torch
from torch import nn

from ctrg.anatomy import CTRATE_LABELS
from ctrg.data.dataset import VolumeTextDataset
from ctrg.losses import structure_contrastive_loss
from ctrg.models.finding_head import finding_metrics
from ctrg.train.retrieval import embed_dataset, retrieval_metrics

log = logging.getLogger(__name__)


def make_evaluate(
    valid: VolumeTextDataset, device: torch.device, batch_size: int, names: list[str]
):  # type: ignore[no-untyped-def]
    """evaluate_fn for the Trainer: retrieval metrics + validation loss (keys = all texts)."""

    def evaluate(module: nn.Module, step: int) -> dict[str, float]:
        findings: list[tuple[torch.Tensor, torch.Tensor]] = []
        image, text, _ = embed_dataset(
            module, valid, device, batch_size, finding_sink=lambda i, x: findings.append((i, x))
        )
        metrics = retrieval_metrics(image, text, names)
        loss, _ = structure_contrastive_loss(image, text, module.loss_config)
        metrics["valid_loss"] = float(loss)
        if findings and valid.labels is not None:
            index = torch.cat([i for i, _ in findings])
            metrics.update(
                finding_metrics(torch.cat([x for _, x in findings]), valid.labels[index])
            )
            log.info(
                "step %d: finding head AUC %s, micro-F1 %.3f (%d validation labels scored)",
                step,
                f"{metrics['finding_auc']:.3f}" if "finding_auc" in metrics else "n/a",
                metrics["finding_micro_f1"],
                metrics["finding_labels_scored"],
            )
        log.info(
            "step %d: retrieval top1 %.3f top5 %.3f (chance %.3f), mean rank %.1f (chance %.1f),"
            " valid loss %.3f",
            step,
            metrics["retrieval_top1"],
            metrics["retrieval_top5"],
            metrics["retrieval_top1_chance"],
            metrics["retrieval_mean_rank"],
            metrics["retrieval_mean_rank_chance"],
            metrics["valid_loss"],
        )
        return metrics

    return evaluate


def attach_finding_labels(
    model: Any,
    path: str | None,
    train: VolumeTextDataset,
    valid: VolumeTextDataset | None,
    findings: dict[str, Any],
) -> None:
    """Give the datasets their report-derived labels and the model its finding loss.

    Raises:
        ValueError: when no labels file is given, or when it labels no training case.
    """
    if not path:
        raise ValueError(
            "stage1.findings.weight > 0 needs --labels (the ctrg label output of the reports, "
            "e.g. results/reports/labels.csv)"
        )
    found = train.set_labels(path, CTRATE_LABELS)
    if found == 0:
        raise ValueError(f"{path}: none of the {len(train)} training cases has labels")
    if valid is not None:
        valid.set_labels(path, CTRATE_LABELS)
    model.set_finding_labels(train.labels, findings["pos_weight_cap"])
    log.info(
        "finding head: %d of %d training cases labelled from %s, weight %.2f",
        found,
        len(train),
        path,
        findings["weight"],
    )

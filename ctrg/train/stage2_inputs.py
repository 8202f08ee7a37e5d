"""What the stage-2 decoder is fed: a batch's visual tokens, training noise, teacher findings,
and how many training reports ``stage2.max_report_tokens`` cuts."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import torch

from ctrg.anatomy import CTRATE_LABELS
from ctrg.features.dataset import FeatureReportDataset
from ctrg.features.select import VisualTokens

log = logging.getLogger(__name__)

TRUNCATION_WARNING_SHARE = 0.01
"""A share of truncated training reports above this is logged as a warning."""


def visual_batch(batch: dict[str, torch.Tensor]) -> VisualTokens:
    """The VisualTokens of a collated batch."""
    return VisualTokens(batch["visual"], batch["kind"], batch["structure"], batch.get("findings"))


def add_visual_noise(visual: VisualTokens, scale: float) -> VisualTokens:
    """Training-time noise on the visual tokens (``stage2.visual_noise``).

    Args:
        visual: tokens (B, T, C).
        scale: noise standard deviation in units of each token's channel standard deviation.

    Returns:
        The same VisualTokens with tokens + scale * std_C(token) * N(0, 1) (B, T, C); the
        input itself when ``scale`` is 0.
    """
    if scale == 0:
        return visual
    tokens = visual.tokens
    spread = tokens.float().std(dim=-1, keepdim=True).to(tokens.dtype)  # (B, T, 1)
    noisy = tokens + scale * spread * torch.randn_like(tokens)
    return VisualTokens(noisy, visual.kind, visual.structure, visual.findings)


def teach_findings(train_set: FeatureReportDataset, labels: Path | None) -> None:
    """Train on each report's own labels as finding states (``stage2.finding_teacher``).

    Raises:
        ValueError: without a labels file, or when it labels none of the training cases.
    """
    if labels is None:
        raise ValueError(
            "stage2.finding_teacher needs --labels (the ctrg label output of the reports, "
            "e.g. results/reports/labels.csv)"
        )
    found = train_set.use_report_findings(labels, CTRATE_LABELS)
    if found == 0:
        raise ValueError(f"{labels}: none of the {len(train_set)} training cases has labels")
    log.info(
        "finding tokens: %d of %d training cases taught from %s", found, len(train_set), labels
    )


def truncated_share(lengths: list[int], max_tokens: int) -> float:
    """Share of reports longer than ``max_tokens`` ids (so cut by the dataset).

    Args:
        lengths: untruncated ids per report (BOS and EOS included).
        max_tokens: the limit (``stage2.max_report_tokens``, BOS and EOS included).

    Raises:
        ValueError: for an empty ``lengths``.
    """
    if not lengths:
        raise ValueError("no report lengths: the truncated share is undefined")
    return sum(n > max_tokens for n in lengths) / len(lengths)


def report_truncation(tokenizer: Any, reports: list[str], max_tokens: int) -> dict[str, Any]:
    """How ``max_tokens`` cuts the training reports; logged, a warning above 1%.

    Returns:
        ``train_reports_truncated`` (share), ``train_report_tokens_max`` (the longest
        report's ids, BOS and EOS included) and ``max_report_tokens``.
    """
    lengths = [len(tokenizer.encode(report)) for report in reports]
    share = truncated_share(lengths, max_tokens)
    level = logging.WARNING if share > TRUNCATION_WARNING_SHARE else logging.INFO
    log.log(
        level,
        "%.1f%% of %d training reports are truncated at stage2.max_report_tokens %d "
        "(longest: %d tokens)",
        100 * share,
        len(lengths),
        max_tokens,
        max(lengths),
    )
    return {
        "train_reports_truncated": share,
        "train_report_tokens_max": max(lengths),
        "max_report_tokens": max_tokens,
    }

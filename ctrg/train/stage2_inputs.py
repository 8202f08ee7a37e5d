"""What the stage-2 decoder is fed: a batch's visual tokens, training noise, teacher findings."""

from __future__ import annotations

import logging
from pathlib import Path

import torch

from ctrg.anatomy import CTRATE_LABELS
from ctrg.features.dataset import FeatureReportDataset
from ctrg.features.select import VisualTokens

log = logging.getLogger(__name__)


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

"""Headless matplotlib for every figure ctrg writes: the Agg backend, atomic PNG writes, and
the training-curve panel plot that ``ctrg inspect curves`` draws from a ``train_log.jsonl``."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pandas as pd

from ctrg.runtime import atomic_path

_SKIP_FIELDS = {"step", "epoch", "kind"}
_MAX_PANELS = 12


def pyplot() -> Any:
    """``matplotlib.pyplot`` on the non-interactive Agg backend (no display needed)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def save_figure(fig: Any, path: Path, dpi: int | None = None) -> str:
    """Write ``fig`` as PNG atomically (temp file, then rename), close it, return the path."""
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=dpi)
    pyplot().close(fig)
    return str(path)


def _numeric_fields(frame: pd.DataFrame) -> list[str]:
    return [
        c
        for c in frame.columns
        if c not in _SKIP_FIELDS
        and pd.api.types.is_numeric_dtype(frame[c])
        and frame[c].notna().any()
    ][:_MAX_PANELS]


def training_curves(log_path: Path, title: str, path: Path) -> list[str]:
    """Plot every numeric field of a train_log.jsonl against step, one panel per field.

    Args:
        log_path: a stage's ``train_log.jsonl`` (one JSON record per line, with ``step``
            and optionally ``kind``, e.g. ``train`` / ``valid``).
        title: figure title.
        path: PNG to write.

    Returns:
        The plotted field names (at most 12).

    Raises:
        ValueError: if the log is empty or has no numeric field.
    """
    records = [json.loads(line) for line in log_path.read_text().splitlines() if line.strip()]
    if not records:
        raise ValueError(f"{log_path}: empty training log")
    frame = pd.DataFrame(records)
    fields = _numeric_fields(frame)
    if not fields:
        raise ValueError(f"{log_path}: no numeric fields to plot")
    plt = pyplot()
    cols = min(3, len(fields))
    rows = (len(fields) + cols - 1) // cols
    fig, axes = plt.subplots(rows, cols, figsize=(4 * cols, 2.8 * rows), squeeze=False)
    kinds = frame["kind"] if "kind" in frame else pd.Series(["log"] * len(frame))
    for ax, field in zip(axes.flat, fields):
        for kind in sorted(kinds.unique()):
            part = frame[(kinds == kind) & frame[field].notna()]
            if not part.empty:
                marker = "." if len(part) < 30 else None
                ax.plot(part["step"], part[field], marker=marker, label=kind)
        ax.set_title(field, fontsize=9)
        ax.set_xlabel("step", fontsize=8)
        ax.legend(fontsize=7)
    for ax in list(axes.flat)[len(fields) :]:
        ax.axis("off")
    fig.suptitle(title)
    fig.tight_layout()
    save_figure(fig, path, dpi=90)
    return fields

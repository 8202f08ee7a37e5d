"""Evaluation outputs: metrics.json, metrics.md, per_case.csv and plots/*.png."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from ctrg.anatomy import CTRATE_LABELS
from ctrg.evaluate.bootstrap import bootstrap
from ctrg.evaluate.clinical import positive_names
from ctrg.evaluate.core import Evaluation, collapse_truth, headline, statistic, summary
from ctrg.evaluate.nlg import protocol
from ctrg.plotting import pyplot, save_figure
from ctrg.runtime import (
    atomic_write_csv,
    atomic_write_text,
    sha256_file,
    sha256_json,
    versions,
)

log = logging.getLogger(__name__)

PLOTS = ("per_label_f1.png", "length_histogram.png")


def per_case_frame(ev: Evaluation, splits: list[str] | None = None) -> pd.DataFrame:
    """One row per case: texts, labels, per-case scores, word counts."""
    frame = pd.DataFrame({"case_id": ev.case_ids})
    if splits is not None:
        frame["split"] = splits
    frame["reference"], frame["prediction"] = ev.references, ev.predictions
    frame["reference_words"] = [len(t.split()) for t in ev.references]
    frame["prediction_words"] = [len(t.split()) for t in ev.predictions]
    for key, values in ev.nlg.per_case.items():
        frame[key] = np.round(values, 6)
    if ev.pred_labels is not None:
        frame["predicted_labels"] = [positive_names(r) for r in ev.pred_labels]
        for name, (truth, mask) in ev.truths.items():
            column = "reference_labels" if name == "reference" else f"{name}_labels"
            frame[column] = [positive_names(r) if m else "" for r, m in zip(truth, mask)]
            hit = (truth.astype(bool) & ev.pred_labels.astype(bool)).sum(1)
            wrong = (truth.astype(bool) ^ ev.pred_labels.astype(bool)).sum(1)
            frame[f"{name}_label_f1"] = np.where(
                mask,
                np.divide(
                    2 * hit, 2 * hit + wrong, out=np.ones(len(hit)), where=(2 * hit + wrong) > 0
                ),
                np.nan,
            ).round(6)
    return frame


def _fmt(entry: Any) -> str:
    if isinstance(entry, dict) and "value" in entry:
        return f"{entry['value']:.4f} [{entry['ci_low']:.4f}, {entry['ci_high']:.4f}]"
    return "n/a" if entry is None else f"{entry:.4f}"


def _headline_lines(metrics: dict[str, Any]) -> list[str]:
    """Title, protocol and the headline table with 95% CIs."""
    proto = metrics["protocol"]
    lines = [
        f"# Evaluation of `{metrics['input']['path']}` ({metrics['n_cases']} cases)",
        "",
        f"Protocol: pycocoevalcap, normalisation `{proto['normalise']}`, corpus level; "
        f"bootstrap {proto['bootstrap_resamples']} resamples (seed {proto['seed']}), "
        f"{int(100 * proto['confidence'])}% percentile intervals. {proto['spice']}.",
        "",
        "| metric | value [95% CI] | per-sample mean |",
        "|---|---|---|",
    ]
    per_sample = metrics["nlg"]["per_sample_mean"]
    for key, entry in metrics["headline"].items():
        lines.append(f"| {key} | {_fmt(entry)} | {_fmt(per_sample.get(key))} |")
    return lines


def _clinical_lines(clinical: dict[str, Any]) -> list[str]:
    """One per-label table per ground truth (or the reason there is none)."""
    lines: list[str] = []
    for clin in clinical.values():
        if not isinstance(clin, dict):
            lines += ["", f"Clinical efficacy: {clin}"]
            continue
        rows = [
            [label, f"{row['precision']:.3f}", f"{row['recall']:.3f}", f"{row['f1']:.3f}"]
            + [str(row["support"]), str(row["predicted"])]
            for label, row in clin["per_label"].items()
        ]
        title = f"## Clinical efficacy vs {clin['truth']} ({clin['n_cases']} cases)"
        columns = ["label", "precision", "recall", "F1", "support", "predicted"]
        lines += _section(title, columns, rows)
    return lines


COLLAPSE_KEYS: tuple[str, ...] = (
    "share_distinct",
    "share_most_frequent",
    "normal_template_bias",
    "share_predicted_all_normal",
    "share_true_all_normal",
    "rare_label_recall_mean",
)
"""Template-collapse statistics listed in the Markdown summary, in this order."""


def _collapse_lines(col: dict[str, Any]) -> list[str]:
    """The template-collapse statistics and the most frequent generated report."""
    lines = ["", "## Template collapse", ""]
    lines += [f"- {key}: {_fmt(col[key])}" for key in COLLAPSE_KEYS if key in col]
    lines.append(
        f"- most frequent report ({col['most_frequent_count']}x): "
        f'"{col["most_frequent_report"][:200]}"'
    )
    return lines


def _comparison_lines(cmp: dict[str, Any]) -> list[str]:
    """The paired bootstrap table against another prediction set."""
    rows = [
        [key, f"{row['a']:.4f}", f"{row['b']:.4f}"]
        + [f"{row['delta']:+.4f} [{row['ci_low']:+.4f}, {row['ci_high']:+.4f}]"]
        + [f"{row['p_value']:.3f}"]
        for key, row in cmp["metrics"].items()
    ]
    title = f"## Paired bootstrap: this run minus `{cmp['other']}`"
    return _section(title, ["metric", "this", "other", "delta [95% CI]", "p"], rows)


def _section(title: str, columns: list[str], rows: list[list[str]]) -> list[str]:
    """A Markdown section: a blank line, the title, a blank line and a table."""
    table = ["| " + " | ".join(cells) + " |" for cells in rows]
    return ["", title, "", "| " + " | ".join(columns) + " |", "|" + "---|" * len(columns), *table]


def markdown(metrics: dict[str, Any]) -> str:
    """A Markdown summary: headline table with 95% CIs, protocol, clinical and collapse."""
    lines = _headline_lines(metrics)
    lines += _clinical_lines(metrics["clinical"])
    lines += _collapse_lines(metrics["collapse"])
    if "comparison" in metrics:
        lines += _comparison_lines(metrics["comparison"])
    return "\n".join(lines) + "\n"


def write_plots(ev: Evaluation, metrics: dict[str, Any], plot_dir: Path) -> list[str]:
    """Per-label F1 bar chart and report-length histogram (PNG)."""
    plt = pyplot()
    plot_dir.mkdir(parents=True, exist_ok=True)
    written = []
    fig, ax = plt.subplots(figsize=(9, 5))
    sources = [s for s, c in metrics["clinical"].items() if isinstance(c, dict)]
    width = 0.8 / max(1, len(sources))
    x = np.arange(len(CTRATE_LABELS))
    for k, source in enumerate(sources):
        per_label = metrics["clinical"][source]["per_label"]
        ax.bar(
            x + k * width,
            [per_label[name]["f1"] for name in CTRATE_LABELS],
            width,
            label=f"vs {source}",
        )
    if not sources:
        ax.text(
            0.5,
            0.5,
            "labeller did not run: no clinical efficacy",
            ha="center",
            transform=ax.transAxes,
        )
    ax.set_xticks(
        x + width * (len(sources) - 1) / 2, CTRATE_LABELS, rotation=60, ha="right", fontsize=8
    )
    ax.set_ylim(0, 1)
    ax.set_ylabel("F1")
    ax.set_title("Per-label clinical efficacy F1")
    if sources:
        ax.legend()
    fig.tight_layout()
    written.append(save_figure(fig, plot_dir / PLOTS[0], dpi=110))
    fig, ax = plt.subplots(figsize=(7, 4))
    ref_len = [len(t.split()) for t in ev.references]
    pred_len = [len(t.split()) for t in ev.predictions]
    bins = np.linspace(0, max(ref_len + pred_len + [1]), 30)
    ax.hist(ref_len, bins=bins, alpha=0.6, label="reference")
    ax.hist(pred_len, bins=bins, alpha=0.6, label="generated")
    ax.set_xlabel("words per report")
    ax.set_ylabel("cases")
    ax.set_title("Report length")
    ax.legend()
    fig.tight_layout()
    written.append(save_figure(fig, plot_dir / PLOTS[1], dpi=110))
    return written


def write_table_and_cases(out: Path, metrics: dict[str, Any], frame: pd.DataFrame) -> None:
    atomic_write_text(out / "metrics.md", markdown(metrics))
    atomic_write_csv(out / "per_case.csv", frame)


def metrics_document(
    ev: Evaluation,
    input_path: str | Path,
    resamples: int,
    seed: int,
    confidence: float,
    rare_prevalence: float,
) -> dict[str, Any]:
    """The metrics.json content: headline (with CIs when ``resamples`` > 0), protocol,
    versions, data hash, full NLG / clinical / collapse results."""
    results = summary(ev, rare_prevalence)
    point = headline(ev)
    if resamples > 0:
        boot = bootstrap(statistic(ev), ev.n, resamples, seed, confidence)
        head: dict[str, Any] = {key: boot[key] for key in point}
        results["collapse"]["bootstrap"] = {
            key: boot[key] for key in ("share_most_frequent", "normal_template_bias") if key in boot
        }
    else:
        head = dict(point)
    pairs = sorted(zip(ev.case_ids, ev.references, ev.predictions))
    return {
        **{key: head[key]["value"] if isinstance(head[key], dict) else head[key] for key in head},
        "headline": head,
        "n_cases": ev.n,
        "protocol": {
            **protocol(ev.normalise, "corpus"),
            "per_sample": "nlg.per_sample_mean = mean over cases of each case's own score",
            "bootstrap_resamples": resamples,
            "seed": seed,
            "confidence": confidence,
            "clinical": "labeller (ctrg.text.labeller) on generated reports vs reference-report "
            "labels (ce_*) and vs ground-truth label files (ce_gt*_); sklearn zero_division=0",
            "collapse_truth": collapse_truth(ev),
            "share_distinct_bootstrap": "not bootstrapped: resampling with replacement "
            "duplicates cases and biases it downwards",
        },
        "input": {
            "path": str(input_path),
            "sha256": sha256_file(input_path),
            "pairs_sha256": sha256_json(pairs),
        },
        "versions": {
            **versions(),
            "pycocoevalcap": _version("pycocoevalcap"),
            "java": _java_version(),
        },
        **results,
    }


def _version(package: str) -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(package)
    except PackageNotFoundError:
        return "unknown"


def _java_version() -> str:
    import subprocess

    done = subprocess.run(["java", "-version"], capture_output=True, text=True, check=False)
    return (done.stderr or done.stdout).splitlines()[0] if done.returncode == 0 else "unknown"

"""``ctrg bench quality METRICS.json...``: the ablation/baseline table (Markdown + JSON).

Each input is ``results/<run>/eval/metrics.json`` of a benchmark row (``bench_<row>_s<seed>``)
or a baseline (``baseline_<name>``). Per row: mean +/- sd over seeds, and the bootstrap 95% CI
of the first seed's run as ``metrics.json`` reports it.

A second table reads each benchmark row's ``results/<run>/stage1/summary.json`` (found next to
its ``eval/metrics.json``, or given directly for a row run only to stage 1): the last
validation retrieval (top-1, top-5, mean rank, each with its chance level) and the attention
check (share of the lung and heart queries' top patches touching their structure, with
chance). The stage-1 switches act there first; a decoder that ignores the image (see the
shuffled-image control) hides them from the report metrics.
"""

from __future__ import annotations

import argparse
import json
import logging
import statistics
from pathlib import Path
from typing import Any

from ctrg.bench.row_times import collect_times, times_markdown
from ctrg.bench.rows import load_rows, parse_run
from ctrg.runtime import atomic_write_json, atomic_write_text, provenance, setup_logging

log = logging.getLogger(__name__)

COLUMNS: dict[str, str] = {
    "bleu_1": "BLEU-1",
    "bleu_4": "BLEU-4",
    "meteor": "METEOR",
    "rouge_l": "ROUGE-L",
    "cider": "CIDEr",
    "ce_gt_micro_f1": "CE micro-F1 (GT)",
    "ce_gt_macro_f1": "CE macro-F1 (GT)",
}
"""metrics.json key -> column title. Clinical efficacy is scored against ground-truth labels."""


def row_of(metrics_path: Path) -> tuple[str, int]:
    """(row name, seed) of ``results/<run>/eval/metrics.json``; baselines get seed 0."""
    run = metrics_path.parent.parent.name
    if parsed := parse_run(run):
        return parsed
    if run.startswith("baseline_"):
        return run, 0
    raise ValueError(
        f"{metrics_path}: run {run!r} is neither bench_<row>_s<seed> nor baseline_<name>"
    )


def _row_order(name: str) -> tuple[int, str]:
    """Sort key: rows in ``rows.yaml`` order, then the baselines, then anything else by name."""
    definitions = load_rows()
    order = [*definitions["rows"], *(f"baseline_{k}" for k in definitions["baselines"])]
    return (order.index(name) if name in order else len(order), name)


def summarise(paths: list[Path]) -> dict[str, Any]:
    """Collect per-row values, mean, sd and the first seed's CI for every column."""
    rows: dict[str, dict[str, Any]] = {}
    for path in sorted(paths):
        name, seed = row_of(path)
        metrics = json.loads(path.read_text())
        row = rows.setdefault(name, {"seeds": [], "values": {k: [] for k in COLUMNS}, "ci": {}})
        row["seeds"].append(seed)
        for key in COLUMNS:
            if key not in metrics:
                raise KeyError(f"{path}: no {key!r} (keys: {sorted(metrics)})")
            row["values"][key].append(float(metrics[key]))
            ci = metrics.get("headline", {}).get(key)  # ctrg evaluate: value, ci_low, ci_high
            if ci is not None and key not in row["ci"]:
                row["ci"][key] = [ci["ci_low"], ci["ci_high"]]
    rows = dict(sorted(rows.items(), key=lambda item: _row_order(item[0])))
    for row in rows.values():
        row["mean"] = {k: statistics.fmean(v) for k, v in row["values"].items()}
        row["sd"] = {
            k: statistics.stdev(v) if len(v) > 1 else 0.0 for k, v in row["values"].items()
        }
    return rows


def markdown(rows: dict[str, Any]) -> str:
    """The table: one line per row, ``mean ± sd`` (n seeds) and the CI of the first seed."""
    definitions = load_rows()
    known = {
        **definitions["rows"],
        **{f"baseline_{k}": v for k, v in definitions["baselines"].items()},
    }
    descriptions = {k: known[k] for k in rows if k in known}  # only the rows in this table
    header = "| row | seeds | " + " | ".join(COLUMNS.values()) + " |"
    lines = [header, "|" + "---|" * (len(COLUMNS) + 2)]
    for name, row in rows.items():
        cells = []
        for key in COLUMNS:
            text = f"{row['mean'][key]:.3f}"
            if len(row["seeds"]) > 1:
                text += f" ± {row['sd'][key]:.3f}"
            if key in row["ci"]:
                low, high = row["ci"][key]
                text += f" [{low:.3f}, {high:.3f}]"
            cells.append(text)
        lines.append(f"| {name} | {len(row['seeds'])} | " + " | ".join(cells) + " |")
    lines.append("")
    lines.append(
        "Rows: " + "; ".join(f"`{k}`: {v['description']}" for k, v in descriptions.items()) + "."
    )
    lines.append("Cells: mean ± sd over seeds [bootstrap 95% CI of the first seed's test set].")
    return "\n".join(lines) + "\n"


STAGE1_COLUMNS: dict[str, str] = {
    "retrieval_top1": "top-1",
    "retrieval_top5": "top-5",
    "retrieval_mean_rank": "mean rank",
}
"""Stage-1 summary ``final`` key -> column title (each shown with its ``<key>_chance``)."""


HELDOUT_COLUMNS: dict[str, str] = {
    "top1": "held-out top-1",
    "mean_rank": "held-out mean rank",
}
"""``ctrg bench stage1-retrieval`` JSON key -> column title (each shown with ``<key>_null``)."""


def stage1_values(
    summary: dict[str, Any], heldout: dict[str, Any] | None = None
) -> dict[str, float]:
    """Last validation retrieval and the lung/heart attention check of one stage-1 summary,
    plus the held-out retrieval (``results/<run>/stage1/heldout_retrieval.json``) if given."""
    final = summary.get("final") or {}
    values = {}
    for key in HELDOUT_COLUMNS if heldout else ():
        values[f"heldout_{key}"] = heldout[key]
        values[f"heldout_{key}_chance"] = heldout[f"{key}_null"]
    for key in STAGE1_COLUMNS:
        if key in final:
            values[key], values[f"{key}_chance"] = final[key], final[f"{key}_chance"]
    attention = (summary.get("attention_concentration") or {}).get("per_structure", {})
    for structure in ("lung", "heart"):
        if structure in attention:
            values[f"attention_{structure}"] = attention[structure]["hit_any"]
            values[f"attention_{structure}_chance"] = attention[structure]["chance_any"]
    return values


def summarise_stage1(paths: list[Path]) -> dict[str, dict[str, float]]:
    """Per benchmark row: the mean over seeds of :func:`stage1_values` (rows with a summary)
    and ``seeds``, how many there were.

    ``paths``: ``results/<run>/eval/metrics.json`` or ``results/<run>/stage1/summary.json``.
    """
    collected: dict[str, list[dict[str, float]]] = {}
    runs = sorted({path.parent.parent for path in paths})
    for run in runs:
        summary_path = run / "stage1" / "summary.json"
        if run.name.startswith("baseline_") or not summary_path.exists():
            continue
        name, _ = row_of(run / "eval" / "metrics.json")
        heldout_path = run / "stage1" / "heldout_retrieval.json"
        heldout = json.loads(heldout_path.read_text()) if heldout_path.exists() else None
        summary = json.loads(summary_path.read_text())
        collected.setdefault(name, []).append(stage1_values(summary, heldout))
    return {
        name: {
            "seeds": len(values),
            **{
                k: statistics.fmean(v[k] for v in values)
                for k in set.intersection(*map(set, values))
            },
        }
        for name, values in sorted(collected.items(), key=lambda item: _row_order(item[0]))
    }


def _value_and_chance(values: dict[str, float], key: str) -> str:
    """``value (chance)``; ranks to one decimal, shares to three; ``n/a`` when absent."""
    if key not in values:
        return "n/a"
    digits = 1 if "rank" in key else 3
    return f"{values[key]:.{digits}f} ({values[key + '_chance']:.{digits}f})"


def stage1_markdown(rows: dict[str, dict[str, float]]) -> str:
    """Stage-1 table: value (chance) per column."""
    titles = [
        *STAGE1_COLUMNS.values(),
        *HELDOUT_COLUMNS.values(),
        "lung attention",
        "heart attention",
    ]
    keys = [
        *STAGE1_COLUMNS,
        *(f"heldout_{k}" for k in HELDOUT_COLUMNS),
        "attention_lung",
        "attention_heart",
    ]
    lines = ["| row | seeds | " + " | ".join(titles) + " |", "|" + "---|" * (len(keys) + 2)]
    for name, values in rows.items():
        cells = [_value_and_chance(values, k) for k in keys]
        lines.append(f"| {name} | {values['seeds']} | " + " | ".join(cells) + " |")
    lines.append("")
    lines.append(
        "Stage 1 (mean over seeds), validation split, last step: value (chance). Held-out:"
        " valid + test together (`ctrg bench stage1-retrieval`), value (mean of 2,000 random re-pairings). Attention:"
        " share of the query's top patches touching its structure's mask."
    )
    return "\n".join(lines) + "\n"


PAIRED_COLUMNS = ("bleu_4", "cider", "ce_gt_micro_f1", "ce_gt_macro_f1")
"""Metrics of the pooled paired-comparison table."""


def paired_markdown(results: list[dict[str, Any]]) -> str:
    """One line per ``ctrg bench paired`` result (its JSON): the pooled A - B of each metric
    [CI] (p)."""
    lines = [
        "| comparison (A - B) | seeds | " + " | ".join(COLUMNS[k] for k in PAIRED_COLUMNS) + " |",
        "|" + "---|" * (len(PAIRED_COLUMNS) + 2),
    ]
    for result in results:
        cells = []
        for key in PAIRED_COLUMNS:
            m = result["pooled"][key]
            star = "*" if m["ci_low"] > 0 or m["ci_high"] < 0 else ""
            cells.append(
                f"{m['delta']:+.3f}{star} [{m['ci_low']:+.3f}, {m['ci_high']:+.3f}]"
                f" p={m['p_value']:.3f}"
            )
        lines.append(f"| {result['title']} | {result['n_pairs']} | " + " | ".join(cells) + " |")
    lines.append("")
    lines.append(
        "Paired bootstrap on the common test cases, each side's metric averaged over seeds on"
        " the same resampled cases (`ctrg bench paired`); `<row>_control`: that row's"
        " shuffled-image control minus the row; `<row>_vs_full`: that row minus the full"
        " row. * = the 95% interval excludes 0."
    )
    return "\n".join(lines) + "\n"


def ceiling_markdown(result: dict[str, Any]) -> str:
    """One paragraph on the supervised label reader (``ctrg bench label-ceiling``)."""
    test = result["test"]
    auc = "n/a" if test["mean_auc"] is None else f"{test['mean_auc']:.3f}"
    return (
        f"Supervised label reader (not a report generator; `ctrg bench label-ceiling`): a 3D CNN"
        f" trained on the labels of the {result['train_cases']} training reports scores"
        f" micro-F1 {test['micro_f1']:.3f}, macro-F1 {test['macro_f1']:.3f} and mean AUC"
        f" {auc} on the {result['test_cases']} test cases (epoch {result['best_epoch']} and"
        f" threshold {result['threshold']:.2f} chosen on validation).\n"
    )


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """The command line of ``ctrg bench quality``."""
    parser = argparse.ArgumentParser(prog="ctrg bench quality", description=__doc__)
    parser.add_argument(
        "metrics",
        nargs="+",
        type=Path,
        help="results/<run>/eval/metrics.json, or results/<run>/stage1/summary.json for a row"
        " run only to stage 1 (stage-1 table only)",
    )
    parser.add_argument(
        "--paired",
        nargs="*",
        type=Path,
        default=[],
        help="results/bench/paired/<comparison>.json of ctrg bench paired (pooled table)",
    )
    parser.add_argument(
        "--ceiling",
        type=Path,
        default=None,
        help="results/bench/label_ceiling.json of ctrg bench label-ceiling (one line below)",
    )
    parser.add_argument(
        "--benchmarks",
        type=Path,
        default=None,
        help="Snakemake's benchmarks/ folder: adds each row's wall time (stage 1, stage 2,"
        " the row alone)",
    )
    parser.add_argument("--out-md", type=Path, required=True)
    parser.add_argument("--out-json", type=Path, required=True)
    return parser.parse_args(argv)


def build(args: argparse.Namespace) -> tuple[str, dict[str, Any]]:
    """The Markdown tables and their JSON record from the parsed command line."""
    rows = summarise([p for p in args.metrics if p.parent.name != "stage1"])
    stage1 = summarise_stage1(args.metrics)
    table = markdown(rows)
    if stage1:
        table += "\n" + stage1_markdown(stage1)
    paired = {str(p): json.loads(p.read_text()) for p in args.paired}
    for path, result in paired.items():  # files of ctrg bench paired carry their title
        result.setdefault("title", Path(path).stem)
    if paired:
        table += "\n" + paired_markdown(list(paired.values()))
    ceiling = json.loads(args.ceiling.read_text()) if args.ceiling else None
    if ceiling:
        table += "\n" + ceiling_markdown(ceiling)
    evals = [p for p in args.metrics if p.parent.name == "eval"]
    times = collect_times(evals, args.benchmarks) if args.benchmarks else {}
    if times:
        table += "\n" + times_markdown(dict(sorted(times.items(), key=lambda i: _row_order(i[0]))))
    record = {
        "rows": rows,
        "stage1": stage1,
        "paired": {path: result["pooled"] for path, result in paired.items()},
        "label_ceiling": ceiling["test"] if ceiling else None,
        "wall_time": times,
        "provenance": provenance(),
    }
    return table, record


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    setup_logging()
    table, record = build(args)
    atomic_write_text(args.out_md, table)
    atomic_write_json(args.out_json, record)
    print(table)
    return 0

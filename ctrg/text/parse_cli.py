"""``ctrg parse-reports``: reports -> sentence/structure table, per-structure texts, summary.

Outputs (all optional except ``--out``):
- ``--out`` sentences.csv: ``id, sentence_index, sentence, structures`` (';'-joined names);
- ``--texts-out``: ``<id column>``, one column per structure (anatomy order), ``defaulted``;
- ``--reports-out``: ``<id column>``, ``split`` (when the input has it), ``report`` (cleaned);
- ``--summary-out``: coverage per structure, share of defaulted structures, sentences left
  in the fallback structure, warnings; ``summary.json`` and ``resolved_config.json`` are
  also written beside ``--out``.
A bad report (empty, markup, not English, too long) is logged and still gets a row.
"""

from __future__ import annotations

import argparse
import logging
import time
from collections import Counter
from pathlib import Path
from typing import Any

import pandas as pd

from ctrg.config import load_stage_config
from ctrg.runtime import atomic_write_csv, atomic_write_json, setup_logging, write_stage_summary
from ctrg.text.report_io import read_table, resolve_texts
from ctrg.text.sentences import clean_report
from ctrg.text.structures import ParsedReport, StructureParser

log = logging.getLogger(__name__)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="ctrg parse-reports", description=__doc__)
    parser.add_argument("manifest", help="CSV (or Parquet) with an id and a report column")
    parser.add_argument("--id-column", default="case_id")
    parser.add_argument("--text-column", default="report", help="report text or a path to it")
    parser.add_argument("--config", default=None, help="resolved text.json (default: defaults)")
    parser.add_argument("--out", required=True, help="sentences CSV")
    parser.add_argument("--texts-out", default=None, help="per-structure texts CSV")
    parser.add_argument("--reports-out", default=None, help="cleaned reports CSV")
    parser.add_argument("--summary-out", default=None, help="parse summary JSON")
    parser.add_argument("--log-level", default="INFO")
    return parser


def sentence_table(ids: list[str], parsed: list[ParsedReport]) -> pd.DataFrame:
    """One row per sentence: id, sentence_index, sentence, structures."""
    rows = [
        {"id": case, "sentence_index": i, "sentence": text, "structures": ";".join(names)}
        for case, report in zip(ids, parsed)
        for i, (text, names) in enumerate(report.sentences)
    ]
    return pd.DataFrame(rows, columns=["id", "sentence_index", "sentence", "structures"])


def texts_table(
    ids: list[str], parsed: list[ParsedReport], names: tuple[str, ...], id_column: str
) -> pd.DataFrame:
    """One row per case: id, one text column per structure, defaulted (';'-joined)."""
    rows = []
    for case, report in zip(ids, parsed):
        row = {id_column: case, **{name: report.texts[name] for name in names}}
        row["defaulted"] = ";".join(report.defaulted)
        rows.append(row)
    return pd.DataFrame(rows, columns=[id_column, *names, "defaulted"])


def summarise(parsed: list[ParsedReport], names: tuple[str, ...], fallback: str) -> dict[str, Any]:
    """Coverage per structure, defaulted share, fallback sentences, warning counts."""
    n_cases = len(parsed)
    n_sentences = sum(len(p.sentences) for p in parsed)
    mentioned = Counter(name for p in parsed for name in names if name not in p.defaulted)
    in_fallback = sum(1 for p in parsed for _, s in p.sentences if s == (fallback,))
    defaulted = sum(len(p.defaulted) for p in parsed)
    warnings = Counter(w for p in parsed for w in p.warnings)
    return {
        "n_cases": n_cases,
        "n_sentences": n_sentences,
        "coverage": {name: mentioned[name] / n_cases if n_cases else 0.0 for name in names},
        "defaulted_share": defaulted / (n_cases * len(names)) if n_cases else 0.0,
        "fallback_structure": fallback,
        "sentences_only_in_fallback": in_fallback,
        "fallback_share": in_fallback / n_sentences if n_sentences else 0.0,
        "multi_structure_sentences": sum(1 for p in parsed for _, s in p.sentences if len(s) > 1),
        "warnings": dict(sorted(warnings.items())),
    }


def main(argv: list[str]) -> int:
    args = build_parser().parse_args(argv)
    setup_logging(args.log_level)
    payload = load_stage_config(args.config, "text")
    cfg = payload["text"]
    started = time.perf_counter()
    frame = read_table(args.manifest, args.id_column, args.text_column)
    texts, problems = resolve_texts(frame, args.text_column, Path(args.manifest).parent)
    parser = StructureParser(
        cfg["structure_set"], cfg["default_sentence"], cfg["spacy_model"], cfg["max_chars"]
    )
    ids = frame[args.id_column].tolist()
    parsed = parser.parse_many(texts)
    for case, report, problem in zip(ids, parsed, problems):
        if problem:
            report.warnings.insert(0, problem)
        if report.warnings:
            log.warning("report %s: %s", case, ", ".join(report.warnings))
    atomic_write_csv(args.out, sentence_table(ids, parsed))
    if args.texts_out:
        atomic_write_csv(args.texts_out, texts_table(ids, parsed, parser.names, args.id_column))
    if args.reports_out:
        reports = pd.DataFrame({args.id_column: ids})
        if "split" in frame.columns:
            reports["split"] = frame["split"].tolist()
        reports["report"] = [clean_report(t, cfg["max_chars"]).text for t in texts]
        atomic_write_csv(args.reports_out, reports)
    summary = summarise(parsed, parser.names, parser.lexicon.fallback)
    summary["seconds"] = round(time.perf_counter() - started, 3)
    if args.summary_out:
        atomic_write_json(args.summary_out, summary)
    write_stage_summary(Path(args.out).parent, "parse-reports", payload, summary)
    log.info(
        "parsed %d reports, %d sentences in %.2fs; defaulted share %.3f, warnings %s",
        summary["n_cases"],
        summary["n_sentences"],
        summary["seconds"],
        summary["defaulted_share"],
        summary["warnings"],
    )
    return 0

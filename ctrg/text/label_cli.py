"""``ctrg label-reports``: the 18 CT-RATE abnormality labels (0/1) for each report.

Writes ``--out`` with the id column and one column per label, named exactly as
:data:`ctrg.anatomy.CTRATE_LABELS`, plus ``<out stem>.summary.json`` beside it (label
counts, warnings, provenance; not ``summary.json``, which belongs to ``parse-reports`` in
the same folder). A bad report (empty, markup, not English) is logged and labelled all-0.
"""

from __future__ import annotations

import argparse
import logging
import time
from pathlib import Path

import pandas as pd

from ctrg.anatomy import CTRATE_LABELS
from ctrg.runtime import atomic_write_csv, atomic_write_json, provenance, setup_logging
from ctrg.text.labeller import load_labeller
from ctrg.text.report_io import read_table, resolve_texts
from ctrg.text.sentences import clean_report

log = logging.getLogger(__name__)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="ctrg label-reports", description=__doc__)
    parser.add_argument("manifest", help="CSV (or Parquet) with an id and a report column")
    parser.add_argument("--id-column", default="case_id")
    parser.add_argument("--text-column", default="report", help="report text or a path to it")
    parser.add_argument("--out", required=True, help="labels CSV")
    parser.add_argument(
        "--labeller",
        default="rules",
        help="'rules' (default) or 'module:factory' returning an object with label_many()",
    )
    parser.add_argument("--log-level", default="INFO")
    return parser


def main(argv: list[str]) -> int:
    args = build_parser().parse_args(argv)
    setup_logging(args.log_level)
    started = time.perf_counter()
    frame = read_table(args.manifest, args.id_column, args.text_column)
    texts, problems = resolve_texts(frame, args.text_column, Path(args.manifest).parent)
    ids = frame[args.id_column].tolist()
    warnings: dict[str, int] = {}
    for case, text, problem in zip(ids, texts, problems):
        found = ([problem] if problem else []) + clean_report(text).warnings
        for warning in found:
            warnings[warning] = warnings.get(warning, 0) + 1
        if found:
            log.warning("report %s: %s", case, ", ".join(found))
    labeller = load_labeller(args.labeller)
    labels = labeller.label_many(texts)
    table = pd.DataFrame(labels, columns=list(CTRATE_LABELS)).fillna(0).astype(int)
    table.insert(0, args.id_column, ids)
    atomic_write_csv(args.out, table)
    out = Path(args.out)
    summary = {
        "stage": "label-reports",
        "labeller": args.labeller,
        "n_cases": len(ids),
        "positives": {label: int(table[label].sum()) for label in CTRATE_LABELS},
        "warnings": dict(sorted(warnings.items())),
        "seconds": round(time.perf_counter() - started, 3),
        "provenance": provenance(),
    }
    atomic_write_json(out.with_name(out.stem + ".summary.json"), summary)
    log.info("labelled %d reports in %.2fs", len(ids), summary["seconds"])
    return 0

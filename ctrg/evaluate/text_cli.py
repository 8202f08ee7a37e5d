"""``ctrg evaluate-text IN.csv --reference-column R --prediction-column P --out metrics.json``.

Scores any CSV of reference/prediction pairs with the same code as ``ctrg evaluate``. The JSON
has top-level ``bleu_1``..``bleu_4``, ``meteor``, ``rouge_l``, ``cider`` (corpus level, 0-1)
and, when the labeller runs, ``ce_micro_f1``, ``ce_macro_f1``, ``ce_weighted_f1``; the
per-sample means, the protocol, clinical and collapse details sit beside them.
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

import pandas as pd

from ctrg.evaluate.core import evaluate_pairs
from ctrg.evaluate.nlg import NORMALISATIONS, NLGScorer
from ctrg.evaluate.report import metrics_document
from ctrg.runtime import atomic_write_json, setup_logging

log = logging.getLogger(__name__)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="ctrg evaluate-text", description=__doc__)
    parser.add_argument("csv", type=Path, help="CSV with one reference and one prediction column")
    parser.add_argument("--reference-column", required=True)
    parser.add_argument("--prediction-column", required=True)
    parser.add_argument("--id-column", default=None, help="case id column (default: row number)")
    parser.add_argument(
        "--normalise",
        choices=NORMALISATIONS,
        default="raw",
        help="text normalisation before scoring (default: raw)",
    )
    parser.add_argument(
        "--labeller",
        choices=("auto", "on", "off"),
        default="auto",
        help="clinical efficacy with ctrg's labeller: auto runs it when installed",
    )
    parser.add_argument(
        "--ground-truth",
        action="append",
        default=[],
        type=Path,
        help="label CSV (case_id + 18 CT-RATE labels); needs --id-column",
    )
    parser.add_argument(
        "--bootstrap",
        type=int,
        default=0,
        metavar="N",
        help="bootstrap resamples for 95%% CIs (default 0: none)",
    )
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--rare-prevalence", type=float, default=0.1)
    parser.add_argument("--out", type=Path, required=True, help="metrics.json to write")
    return parser


def read_pairs(path: Path, ref_col: str, pred_col: str, id_col: str | None) -> pd.DataFrame:
    """Read the CSV; errors name the file and the missing columns."""
    try:
        frame = pd.read_csv(path, dtype=str, keep_default_na=False)
    except (OSError, pd.errors.ParserError, UnicodeDecodeError) as err:
        raise ValueError(f"{path}: cannot read CSV: {err}") from err
    wanted = [c for c in (ref_col, pred_col, id_col) if c]
    missing = [c for c in wanted if c not in frame.columns]
    if missing:
        raise ValueError(f"{path}: missing columns {missing}; has {list(frame.columns)}")
    if frame.empty:
        raise ValueError(f"{path}: no rows")
    frame["_id"] = frame[id_col] if id_col else [str(i) for i in range(len(frame))]
    return frame


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    setup_logging()
    if args.ground_truth and not args.id_column:
        raise SystemExit("--ground-truth needs --id-column to match cases")
    frame = read_pairs(args.csv, args.reference_column, args.prediction_column, args.id_column)
    with NLGScorer() as scorer:
        ev = evaluate_pairs(
            frame["_id"],
            frame[args.reference_column],
            frame[args.prediction_column],
            scorer,
            normalise=args.normalise,
            labeller=args.labeller,
            ground_truth=args.ground_truth,
        )
        metrics = metrics_document(
            ev, args.csv, args.bootstrap, args.seed, 0.95, args.rare_prevalence
        )
    atomic_write_json(args.out, metrics)
    head = " ".join(f"{k}={metrics[k]:.4f}" for k in metrics["headline"])
    log.info("%d cases (%s): %s -> %s", ev.n, args.normalise, head, args.out)
    return 0

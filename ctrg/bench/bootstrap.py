"""``ctrg bench bootstrap PREDICTIONS.csv``: bootstrap resamples of METEOR, jar against numpy.

Every bootstrap resample needs the corpus METEOR of the resampled cases. The baseline asks the
METEOR 1.5 jar (``EVAL`` over the resampled statistics lines, one JVM round trip per resample);
:mod:`ctrg.evaluate.meteor` sums the same statistics in numpy. Both run here on the same cases
and the same resampled indices; the table gives time per resample, the speed-up, and the largest
difference between the two (it should be at float rounding). Prints numbers; asserts nothing.
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

import numpy as np
import torch

from ctrg.bench.timing import machine_info, median_seconds
from ctrg.evaluate import meteor
from ctrg.evaluate.bootstrap import resample_indices
from ctrg.evaluate.nlg import NLGScorer, normalise_texts
from ctrg.evaluate.run import read_predictions
from ctrg.runtime import atomic_write_json, setup_logging

log = logging.getLogger(__name__)


def run(path: Path, splits: list[str], normalise: str, resamples: int, seed: int) -> dict:
    """Time ``resamples`` METEOR resamples both ways on the cases of ``path``."""
    frame = read_predictions(path, splits)
    refs = normalise_texts(frame["reference"].tolist(), normalise)
    preds = normalise_texts(frame["prediction"].tolist(), normalise)
    idx = resample_indices(len(refs), resamples, seed)
    cpu = torch.device("cpu")
    with NLGScorer() as scorer:
        lines = scorer.meteor_case_stats(refs, preds)
        stats = meteor.parse_stats(lines)
        jar: list[float] = []
        jar_s = median_seconds(
            lambda: jar.extend(scorer.meteor_from_stats([lines[i] for i in row])[0] for row in idx),
            1,
            cpu,
        )
    numpy_s = median_seconds(lambda: meteor.aggregate(stats, idx), 5, cpu)
    ours = meteor.aggregate(stats, idx)
    return {
        "cases": len(refs),
        "resamples": resamples,
        "jar_ms_per_resample": 1000 * jar_s / resamples,
        "numpy_ms_per_resample": 1000 * numpy_s / resamples,
        "speedup": jar_s / numpy_s,
        "max_abs_difference": float(np.max(np.abs(np.asarray(jar) - ours))),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="ctrg bench bootstrap", description=__doc__)
    parser.add_argument("predictions", type=Path, help="a predictions.csv of ctrg generate")
    parser.add_argument("--splits", nargs="+", default=["test"])
    parser.add_argument("--normalise", default="raw")
    parser.add_argument("--resamples", type=int, default=200)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out-json", type=Path, help="also write the numbers here")
    args = parser.parse_args(argv)
    setup_logging()
    result = run(args.predictions, args.splits, args.normalise, args.resamples, args.seed)
    print(f"METEOR bootstrap, {result['cases']} cases, {result['resamples']} resamples")
    print("| method | ms per resample |")
    print("|---|---|")
    print(f"| jar EVAL (baseline) | {result['jar_ms_per_resample']:.3f} |")
    print(f"| numpy sums | {result['numpy_ms_per_resample']:.4f} |")
    print(
        f"speed-up {result['speedup']:.0f}x; largest |jar - numpy| {result['max_abs_difference']:.1e}"
    )
    if args.out_json:
        atomic_write_json(args.out_json, {**result, "machine": machine_info(torch.device("cpu"))})
    return 0

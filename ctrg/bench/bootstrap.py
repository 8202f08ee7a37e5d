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
import time
from pathlib import Path

import numpy as np
import torch

from ctrg.bench.timing import machine_info
from ctrg.evaluate import meteor
from ctrg.evaluate.bootstrap import resample_indices
from ctrg.evaluate.nlg import NLGScorer, normalise_texts
from ctrg.evaluate.run import read_predictions
from ctrg.runtime import atomic_write_json, setup_logging

log = logging.getLogger(__name__)


def _timed(fn, repeats: int = 1) -> tuple[float, object]:
    start = time.perf_counter()
    for _ in range(repeats):
        out = fn()
    return (time.perf_counter() - start) / repeats, out


def run(path: Path, splits: list[str], normalise: str, resamples: int, seed: int) -> dict:
    """Time ``resamples`` METEOR resamples both ways on the cases of ``path``."""
    frame = read_predictions(path, splits)
    refs = normalise_texts(frame["reference"].tolist(), normalise)
    preds = normalise_texts(frame["prediction"].tolist(), normalise)
    idx = resample_indices(len(refs), resamples, seed)
    with NLGScorer() as scorer:
        lines = scorer.meteor_case_stats(refs, preds)
        stats = meteor.parse_stats(lines)
        jar_s, jar = _timed(
            lambda: [scorer.meteor_from_stats([lines[i] for i in row])[0] for row in idx]
        )
    numpy_s, ours = _timed(lambda: meteor.aggregate(stats, idx), repeats=5)
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
    if args.out_json:
        atomic_write_json(args.out_json, {**result, "machine": machine_info(torch.device("cpu"))})
    print(
        f"speed-up {result['speedup']:.0f}x; largest |jar - numpy| {result['max_abs_difference']:.1e}"
    )
    return 0

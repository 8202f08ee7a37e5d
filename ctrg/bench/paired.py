"""``ctrg bench paired --a A.csv... --b B.csv...``: A minus B, per pair and pooled over seeds.

Each pair (``--a`` i, ``--b`` i) is two predictions.csv files of one seed, e.g. a row's
shuffled-image control and the row itself, or one ablation row and the full method. All files
are scored on the cases they all hold (the configured splits), and one set of resampled case
indices (``evaluate.bootstrap_resamples``, seeded by the config's seed) is applied to every
file. Per pair the result is the paired bootstrap ``ctrg evaluate --compare`` reports. Pooled,
each side's statistic is the mean over the pairs of the corpus metric on the resampled cases,
so the interval covers test-case sampling with the seed-to-seed variation averaged out: the
question it answers is "on these test cases, does A score differently from B, averaged over
training seeds?". It does not make the cases more numerous: a test set of 60 cases still
bounds how small a difference can be resolved.
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from ctrg.bench.quality import COLUMNS
from ctrg.config import load_stage_config
from ctrg.evaluate.bootstrap import draws, paired_from_draws, resample_indices
from ctrg.evaluate.core import evaluate_pairs, statistic
from ctrg.evaluate.nlg import NLGScorer
from ctrg.evaluate.run import read_predictions
from ctrg.runtime import atomic_write_json, atomic_write_text, provenance, setup_logging

log = logging.getLogger(__name__)

Scores = tuple[dict[str, float], dict[str, np.ndarray]]
"""(point estimates on all cases, draws on every resample) of one predictions file."""


def read_all(paths: list[Path], splits: list[str]) -> dict[Path, pd.DataFrame]:
    """Each distinct predictions file, read once (the configured splits), by path."""
    return {path: read_predictions(path, splits) for path in dict.fromkeys(paths)}


def common_cases(frames: dict[Path, pd.DataFrame]) -> list[str]:
    """Case ids every file holds, sorted."""
    sets = {path: set(frame["case_id"]) for path, frame in frames.items()}
    common = sorted(set.intersection(*sets.values()))
    if not common:
        raise ValueError(f"no case is in all of {[str(p) for p in frames]}")
    for path, ids in sets.items():
        if len(ids) != len(common):
            log.warning("%s: %d of its %d cases are in every file", path, len(common), len(ids))
    return common


def score_frame(
    frame: pd.DataFrame,
    cases: list[str],
    settings: dict[str, Any],
    ground_truth: list[Path],
    scorer: NLGScorer,
    indices: np.ndarray,
) -> Scores:
    """Point estimates and bootstrap draws of one predictions file on ``cases`` (in order)."""
    frame = frame.set_index("case_id").loc[cases]
    ev = evaluate_pairs(
        cases,
        frame["reference"].tolist(),
        frame["prediction"].tolist(),
        scorer,
        settings["normalise"],
        settings["labeller"],
        ground_truth,
    )
    stat = statistic(ev)
    return stat(np.arange(len(cases))), draws(stat, indices)


def pooled(scores: list[Scores]) -> Scores:
    """Mean over files of the point estimates and of the draws (keys all files hold)."""
    keys = set.intersection(*(set(point) for point, _ in scores))
    point = {k: float(np.mean([p[k] for p, _ in scores])) for k in keys}
    samples = {k: np.mean([d[k] for _, d in scores], axis=0) for k in keys}
    return point, samples


def _paired(a: Scores, b: Scores, confidence: float) -> dict[str, dict[str, float]]:
    return paired_from_draws(a[0], b[0], a[1], b[1], confidence)


def compare(
    a_paths: list[Path],
    b_paths: list[Path],
    config: Path,
    ground_truth: list[Path],
) -> dict[str, Any]:
    """Score every file once on shared resamples; per-pair and pooled A - B comparisons."""
    if len(a_paths) != len(b_paths) or not a_paths:
        raise ValueError(
            f"need as many --a as --b files (>= 1), got {len(a_paths)} and {len(b_paths)}"
        )
    payload = load_stage_config(config, "evaluate")
    settings, seed = payload["evaluate"], int(payload["seed"])
    frames = read_all([*a_paths, *b_paths], settings["splits"])
    cases = common_cases(frames)
    indices = resample_indices(len(cases), settings["bootstrap_resamples"], seed)
    log.info("%d pairs on %d common cases, %d resamples", len(a_paths), len(cases), len(indices))
    with NLGScorer() as scorer:  # a file listed more than once (a baseline) is scored once
        scores = {
            path: score_frame(frame, cases, settings, ground_truth, scorer, indices)
            for path, frame in frames.items()
        }
    a, b = [scores[p] for p in a_paths], [scores[p] for p in b_paths]
    confidence = settings["confidence"]
    pairs = [
        {"a": str(pa), "b": str(pb), "metrics": _paired(sa, sb, confidence)}
        for pa, pb, sa, sb in zip(a_paths, b_paths, a, b)
    ]
    return {
        "n_cases": len(cases),
        "n_pairs": len(pairs),
        "resamples": int(len(indices)),
        "confidence": confidence,
        "pairs": pairs,
        "pooled": _paired(pooled(a), pooled(b), confidence),
    }


def markdown(result: dict[str, Any], title: str) -> str:
    """One line per metric: each pair's delta (p) and the pooled delta [CI] (p)."""
    n = result["n_pairs"]
    header = "| metric | " + " | ".join(f"pair {i + 1}" for i in range(n)) + " | pooled |"
    lines = [f"### {title}", "", header, "|" + "---|" * (n + 2)]
    for key, name in COLUMNS.items():
        if key not in result["pooled"]:
            continue
        cells = [
            f"{p['metrics'][key]['delta']:+.3f} (p={p['metrics'][key]['p_value']:.2f})"
            for p in result["pairs"]
        ]
        m = result["pooled"][key]
        cells.append(
            f"{m['delta']:+.3f} [{m['ci_low']:+.3f}, {m['ci_high']:+.3f}] (p={m['p_value']:.3f})"
        )
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    lines += [
        "",
        f"A minus B on {result['n_cases']} common test cases, {result['resamples']} paired"
        f" resamples ({result['confidence']:.0%} intervals). Pairs: "
        + "; ".join(f"{i + 1}: `{p['a']}` - `{p['b']}`" for i, p in enumerate(result["pairs"]))
        + ". Pooled: the mean over pairs of each side's metric on the same resampled cases.",
    ]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="ctrg bench paired", description=__doc__)
    parser.add_argument("--a", nargs="+", type=Path, required=True, help="predictions.csv, A side")
    parser.add_argument("--b", nargs="+", type=Path, required=True, help="predictions.csv, B side")
    parser.add_argument("--config", type=Path, required=True, help="a resolved evaluate.json")
    parser.add_argument("--ground-truth", action="append", default=[], type=Path)
    parser.add_argument("--title", default="A minus B")
    parser.add_argument("--out-md", type=Path, required=True)
    parser.add_argument("--out-json", type=Path, required=True)
    args = parser.parse_args(argv)
    setup_logging()
    result = compare(args.a, args.b, args.config, args.ground_truth)
    result["title"] = args.title
    table = markdown(result, args.title)
    atomic_write_text(args.out_md, table)
    atomic_write_json(args.out_json, {**result, "provenance": provenance()})
    log.info("\n%s", table)
    return 0

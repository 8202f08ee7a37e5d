"""Seeded bootstrap confidence intervals and paired bootstrap comparison of two runs.

A *statistic* is a function ``idx (N,) int -> dict[str, float]`` that recomputes every headline
number on the cases ``idx`` (a resample with replacement, or ``arange(N)`` for the point
estimate). Corpus-level numbers are recomputed from per-case sufficient statistics (BLEU
n-gram counts, METEOR's per-segment statistics through the jar's ``EVAL``, clinical
confusion counts), so each resample is the corpus metric of the resampled corpus, not a mean
of sentence scores. ROUGE-L and CIDEr are means of per-case scores (as pycocoevalcap defines
them); CIDEr's document frequencies stay those of the full evaluated corpus.

Intervals are percentile intervals. The paired comparison applies the same resampled case
indices to both runs and reports the interval of the difference and a two-sided p-value
``2 * min(P(delta <= 0), P(delta >= 0))`` over resamples.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

import numpy as np
from tqdm import tqdm

log = logging.getLogger(__name__)

Statistic = Callable[[np.ndarray], dict[str, float]]


def resample_indices(n: int, resamples: int, seed: int) -> np.ndarray:
    """(resamples, n) case indices drawn with replacement by ``numpy.random.default_rng(seed)``."""
    if n < 1 or resamples < 1:
        raise ValueError(f"need n >= 1 and resamples >= 1, got n={n}, resamples={resamples}")
    return np.random.default_rng(seed).integers(0, n, size=(resamples, n))


def draws(statistic: Statistic, indices: np.ndarray) -> dict[str, np.ndarray]:
    """The statistic on every row of ``indices`` (R, N): ``{name: (R,) values}``."""
    rows = [statistic(idx) for idx in tqdm(indices, desc="bootstrap", leave=False, mininterval=5)]
    return {key: np.asarray([row[key] for row in rows], dtype=float) for key in rows[0]}


def _interval(samples: np.ndarray, confidence: float) -> tuple[float, float]:
    tail = 100 * (1 - confidence) / 2
    if np.all(np.isnan(samples)):
        return float("nan"), float("nan")
    low, high = np.nanpercentile(samples, [tail, 100 - tail])
    return float(low), float(high)


def bootstrap(
    statistic: Statistic, n: int, resamples: int, seed: int, confidence: float = 0.95
) -> dict[str, dict[str, float]]:
    """Point estimates with percentile confidence intervals.

    Returns:
        ``{name: {"value", "ci_low", "ci_high"}}`` for every key the statistic returns.
    """
    point = statistic(np.arange(n))
    samples = draws(statistic, resample_indices(n, resamples, seed))
    out = {}
    for key, value in point.items():
        low, high = _interval(samples[key], confidence)
        out[key] = {"value": float(value), "ci_low": low, "ci_high": high}
    return out


def paired_bootstrap(
    statistic_a: Statistic,
    statistic_b: Statistic,
    n: int,
    resamples: int,
    seed: int,
    confidence: float = 0.95,
) -> dict[str, dict[str, float]]:
    """Compare run A with run B on the same N cases (same order in both statistics).

    Returns:
        ``{name: {"a", "b", "delta", "ci_low", "ci_high", "p_value"}}`` with delta = A - B,
        for the keys both statistics return.
    """
    point_a, point_b = statistic_a(np.arange(n)), statistic_b(np.arange(n))
    indices = resample_indices(n, resamples, seed)
    draws_a, draws_b = draws(statistic_a, indices), draws(statistic_b, indices)
    return paired_from_draws(point_a, point_b, draws_a, draws_b, confidence)


def paired_from_draws(
    point_a: dict[str, float],
    point_b: dict[str, float],
    draws_a: dict[str, np.ndarray],
    draws_b: dict[str, np.ndarray],
    confidence: float = 0.95,
) -> dict[str, dict[str, float]]:
    """Paired comparison from point estimates and draws made on the *same* resampled indices.

    Returns:
        ``{name: {"a", "b", "delta", "ci_low", "ci_high", "p_value"}}`` with delta = A - B,
        for the keys both sides hold; p is ``2 * min(P(delta <= 0), P(delta >= 0))``.
    """
    out = {}
    for key in point_a.keys() & point_b.keys():
        delta = draws_a[key] - draws_b[key]
        low, high = _interval(delta, confidence)
        valid = delta[~np.isnan(delta)]
        p = 2 * min((valid <= 0).mean(), (valid >= 0).mean()) if valid.size else float("nan")
        out[key] = {
            "a": float(point_a[key]),
            "b": float(point_b[key]),
            "delta": float(point_a[key] - point_b[key]),
            "ci_low": low,
            "ci_high": high,
            "p_value": float(min(1.0, p)),
        }
    return dict(sorted(out.items()))

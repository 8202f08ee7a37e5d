"""METEOR 1.5 from its sufficient statistics, in numpy: corpus scores of many resamples at once.

The jar (pycocoevalcap's ``meteor-1.5.jar -l en -norm``) prints one statistics line per segment
(``SCORE`` requests) and aggregates lines with ``EVAL``. A bootstrap needs the aggregate of
every resample; asking the JVM for each costs about 50 ms per resample of 200 cases, most of
the time of ``ctrg evaluate`` and ``ctrg bench paired``. The aggregate is a closed formula of
summed statistics (``MeteorStats.addStats`` and ``MeteorScorer.computeMetrics`` in the METEOR
1.5 sources), so this module computes it here. It is never trusted blindly:
:func:`check_against_jar` compares it with the jar's own per-segment and corpus scores on every
evaluation and raises if they differ.

A statistics line holds 23 numbers: test length, reference length, test and reference function
words, then per matcher module (exact, stem, synonym, paraphrase) test/reference content and
function matches, then chunks and test/reference word matches.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

N_STATS = 23
N_MODULES = 4
ALPHA, BETA, GAMMA, DELTA = 0.85, 0.20, 0.60, 0.75
"""The jar's parameters for English (``-l en``, task ``default``)."""
MODULE_WEIGHTS = np.array([1.0, 0.6, 0.8, 0.6])
"""Weights of the exact, stem, synonym and paraphrase matchers."""
_CHUNKS = 4 + 4 * N_MODULES
_TOLERANCE = 1e-9


def parse_stats(lines: Sequence[str]) -> np.ndarray:
    """The jar's statistics lines as an (N, 23) float array."""
    rows = [np.array(line.split(), dtype=np.float64) for line in lines]
    bad = [i for i, row in enumerate(rows) if row.shape != (N_STATS,)]
    if bad:
        raise ValueError(
            f"METEOR statistics line {bad[0]} has {rows[bad[0]].size} fields, expected {N_STATS}:"
            f" {lines[bad[0]]!r}"
        )
    return np.stack(rows) if rows else np.zeros((0, N_STATS))


def _matches(stats: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Per module (..., 4): test content, reference content, test function, reference function."""
    per_module = stats[..., 4:_CHUNKS].reshape(*stats.shape[:-1], N_MODULES, 4)
    return per_module[..., 0], per_module[..., 1], per_module[..., 2], per_module[..., 3]


def _perfect(stats: np.ndarray) -> np.ndarray:
    """(...,) whether a segment matches its reference exactly in one chunk (``addStats``)."""
    tc, rc, tf, rf = _matches(stats)
    return (
        ((tc + tf).sum(-1) == stats[..., 0])
        & ((rc + rf).sum(-1) == stats[..., 1])
        & (stats[..., _CHUNKS] == 1.0)
    )


def score(stats: np.ndarray) -> np.ndarray:
    """METEOR of (already summed) statistics, ``computeMetrics``.

    Args:
        stats: (..., 23) statistics, one segment's or a sum (see :func:`aggregate`).

    Returns:
        (...,) scores in [0, 1]; 0 where the formula divides by zero, as in the jar.
    """
    tc, rc, tf, rf = _matches(stats)
    test_len, ref_len, test_func, ref_func = (stats[..., k] for k in range(4))
    with np.errstate(divide="ignore", invalid="ignore"):
        test_weighted = DELTA * (test_len - test_func) + (1 - DELTA) * test_func
        ref_weighted = DELTA * (ref_len - ref_func) + (1 - DELTA) * ref_func
        precision = ((tc * DELTA + tf * (1 - DELTA)) * MODULE_WEIGHTS).sum(-1) / test_weighted
        recall = ((rc * DELTA + rf * (1 - DELTA)) * MODULE_WEIGHTS).sum(-1) / ref_weighted
        f_mean = 1.0 / ((1 - ALPHA) / precision + ALPHA / recall)
        matched = (tc + tf).sum(-1) + (rc + rf).sum(-1)
        frag = np.where(_perfect(stats), 0.0, stats[..., _CHUNKS] / (matched / 2))
        value = f_mean * (1.0 - GAMMA * frag**BETA)
    return np.where(np.isnan(value), 0.0, np.maximum(value, 0.0))


def aggregable(stats: np.ndarray) -> np.ndarray:
    """(N, 23) per-segment statistics ready to sum: a perfect segment's chunk is not counted."""
    out = np.array(stats, dtype=np.float64, copy=True)
    out[_perfect(out), _CHUNKS] = 0.0
    return out


def aggregate(stats: np.ndarray, idx: np.ndarray | None = None) -> np.ndarray:
    """Corpus METEOR (``EVAL``) of the segments ``idx`` (default all), or of many resamples.

    Args:
        stats: (N, 23) per-segment statistics (:func:`parse_stats`).
        idx: (N',) segment indices, or (R, N') for R resamples at once; repeats count again.

    Returns:
        () or (R,) corpus scores.
    """
    summable = aggregable(stats)
    if idx is None:
        return score(summable.sum(0))
    return score(summable[np.asarray(idx)].sum(-2))


def check_against_jar(stats: np.ndarray, jar_cases: Sequence[float], jar_corpus: float) -> None:
    """Raise if these formulas do not reproduce the jar's segment and corpus scores.

    Raises:
        RuntimeError: naming the first segment (or the corpus) where they differ.
    """
    ours = score(stats)
    diff = np.abs(ours - np.asarray(jar_cases, dtype=np.float64))
    if diff.size and diff.max() > _TOLERANCE:
        i = int(diff.argmax())
        raise RuntimeError(
            f"METEOR from statistics ({ours[i]:.12f}) differs from the jar ({jar_cases[i]:.12f})"
            f" on segment {i}; the jar is not the METEOR 1.5 this module implements"
        )
    corpus = float(aggregate(stats))
    if abs(corpus - jar_corpus) > _TOLERANCE:
        raise RuntimeError(
            f"corpus METEOR from statistics ({corpus:.12f}) differs from the jar's EVAL"
            f" ({jar_corpus:.12f}); the jar is not the METEOR 1.5 this module implements"
        )

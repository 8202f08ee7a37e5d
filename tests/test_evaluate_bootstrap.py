"""Bootstrap: seeded determinism, interval sanity, paired comparison."""

from __future__ import annotations

import numpy as np
import pytest

from ctrg.evaluate.bootstrap import bootstrap, paired_bootstrap, resample_indices

VALUES = np.arange(20, dtype=float)


def mean_of(values):
    return lambda idx: {"mean": float(values[idx].mean())}


def test_seeded_resamples_are_deterministic():
    a, b = resample_indices(10, 5, seed=3), resample_indices(10, 5, seed=3)
    assert np.array_equal(a, b) and a.shape == (5, 10)
    assert not np.array_equal(a, resample_indices(10, 5, seed=4))
    assert bootstrap(mean_of(VALUES), 20, 200, 7) == bootstrap(mean_of(VALUES), 20, 200, 7)


def test_interval_brackets_the_mean_and_matches_percentiles():
    out = bootstrap(mean_of(VALUES), 20, 500, 0)["mean"]
    assert out["value"] == pytest.approx(9.5)
    assert out["ci_low"] < 9.5 < out["ci_high"]
    idx = resample_indices(20, 500, 0)
    low, high = np.percentile(VALUES[idx].mean(1), [2.5, 97.5])
    assert (out["ci_low"], out["ci_high"]) == pytest.approx((low, high))


def test_constant_statistic_has_degenerate_interval():
    out = bootstrap(lambda idx: {"k": 1.0}, 5, 50, 0)["k"]
    assert out == {"value": 1.0, "ci_low": 1.0, "ci_high": 1.0}


def test_paired_identical_runs_and_clear_difference():
    same = paired_bootstrap(mean_of(VALUES), mean_of(VALUES), 20, 200, 0)["mean"]
    assert same["delta"] == 0 and same["ci_low"] == 0 and same["ci_high"] == 0
    assert same["p_value"] == 1.0
    better = paired_bootstrap(mean_of(VALUES + 5), mean_of(VALUES), 20, 200, 0)["mean"]
    assert better["delta"] == pytest.approx(5) and better["ci_low"] == pytest.approx(5)
    assert better["p_value"] == 0.0
    noisy = np.random.default_rng(0).normal(0, 1, 20)
    mixed = paired_bootstrap(mean_of(VALUES + noisy), mean_of(VALUES), 20, 300, 0)["mean"]
    assert mixed["ci_low"] < mixed["delta"] < mixed["ci_high"]


def test_bad_sizes_rejected():
    with pytest.raises(ValueError, match="n >= 1"):
        resample_indices(0, 5, 0)

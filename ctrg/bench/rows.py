"""Quality-benchmark rows: named config overrides, each run as its own ``results/<run>/`` tree."""

from __future__ import annotations

import copy
import re
from functools import cache
from importlib import resources
from typing import Any

import yaml

_RUN = re.compile(r"^bench_(?P<row>[a-z_]+?)_s(?P<seed>\d+)$")
# Config sections read only after stage 1: rows that change nothing else share stage 1.
DOWNSTREAM_OF_STAGE1 = frozenset({"features", "stage2", "generate", "evaluate"})


@cache
def load_rows() -> dict[str, Any]:
    """The benchmark definition from ``ctrg/bench/rows.yaml``."""
    return yaml.safe_load(resources.files("ctrg.bench").joinpath("rows.yaml").read_text())


def deep_merge(base: dict[str, Any], overrides: dict[str, Any]) -> dict[str, Any]:
    """Return ``base`` with ``overrides`` merged in recursively (neither is modified)."""
    merged = copy.deepcopy(base)
    for key, value in overrides.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = deep_merge(merged[key], value)
        else:
            merged[key] = copy.deepcopy(value)
    return merged


def run_name(row: str, seed: int) -> str:
    """The run name of one benchmark cell, e.g. ``bench_full_s0``."""
    return f"bench_{row}_s{seed}"


def config_for_run(config: dict[str, Any], run: str) -> dict[str, Any]:
    """The workflow config of ``run``: itself, or a benchmark row's overrides and seed.

    Raises:
        ValueError: for a ``bench_*`` name whose row is not in ``rows.yaml``.
    """
    match = _RUN.match(run)
    if run == config.get("run") or match is None:
        return {**config, "run": run}
    rows = load_rows()["rows"]
    if match["row"] not in rows:
        raise ValueError(
            f"benchmark run {run!r}: unknown row {match['row']!r}; known: {sorted(rows)}"
        )
    merged = deep_merge(config, rows[match["row"]]["overrides"])
    merged["run"] = run
    merged["seed"] = int(match["seed"])
    return merged


def _upstream(config: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in config.items() if k not in DOWNSTREAM_OF_STAGE1 | {"run"}}


def stage1_run(config: dict[str, Any], run: str) -> str:
    """The run whose stage-1 model ``run`` freezes.

    A benchmark row whose config equals the ``full`` row's (same seed) in every section
    read up to stage 1 (e.g. ``all_patches``, which changes only features and stage 2)
    reuses that row's stage-1 model instead of training an identical one. Every other run
    uses its own.
    """
    match = _RUN.match(run)
    if match is None or run == config.get("run") or "full" not in load_rows()["rows"]:
        return run
    full = run_name("full", int(match["seed"]))
    if _upstream(config_for_run(config, run)) == _upstream(config_for_run(config, full)):
        return full
    return run

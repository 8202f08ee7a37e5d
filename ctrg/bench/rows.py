"""Quality-benchmark rows: named config overrides, each run as its own ``results/<run>/`` tree."""

from __future__ import annotations

import re
from functools import cache
from importlib import resources
from typing import Any

import yaml

from ctrg.config import deep_merge

_ROW_NAME = r"[a-z][a-z0-9_]*"
_ROW = re.compile(rf"^{_ROW_NAME}$")
_RUN = re.compile(rf"^bench_(?P<row>{_ROW_NAME}?)_s(?P<seed>\d+)$")
# Config sections read only after stage 1: rows that change nothing else share stage 1.
DOWNSTREAM_OF_STAGE1 = frozenset({"features", "stage2", "generate", "evaluate"})


@cache
def load_rows() -> dict[str, Any]:
    """The benchmark definition from ``ctrg/bench/rows.yaml``.

    Raises:
        ValueError: naming rows.yaml and the row when a row name is not lower-case letters,
            digits and underscores starting with a letter (``bench_<row>_s<seed>`` would
            not parse back to it).
    """
    definitions = yaml.safe_load(resources.files("ctrg.bench").joinpath("rows.yaml").read_text())
    check_row_names(definitions["rows"])
    check_tables(definitions.get("tables", {}), definitions["rows"])
    return definitions


def check_tables(tables: dict[str, list[str]], rows: dict[str, Any]) -> None:
    """Raise ValueError for a named table with an unknown row, or without the full row
    (every ``<row>_vs_full`` comparison needs it), or with a name that is not a row name."""
    for name, members in tables.items():
        unknown = [row for row in members if row not in rows]
        if not _ROW.match(name) or unknown or "full" not in members:
            raise ValueError(
                f"ctrg/bench/rows.yaml: table {name!r} must be named like a row and list"
                f" known rows including 'full' (unknown: {unknown})"
            )


def table_rows(table: str | None = None) -> list[str]:
    """The rows of a named table of rows.yaml, or every row for None.

    Raises:
        ValueError: for a name that is not a table.
    """
    definitions = load_rows()
    if table is None:
        return list(definitions["rows"])
    tables = definitions.get("tables", {})
    if table not in tables:
        raise ValueError(f"unknown benchmark table {table!r}; known: {sorted(tables)}")
    return list(tables[table])


def check_row_names(rows: dict[str, Any]) -> None:
    """Raise ValueError for a row name that :func:`parse_run` could not read back."""
    bad = [name for name in rows if not _ROW.match(name)]
    if bad:
        raise ValueError(
            f"ctrg/bench/rows.yaml: row names {bad} must be lower-case letters, digits and"
            " underscores, starting with a letter"
        )


def run_name(row: str, seed: int) -> str:
    """The run name of one benchmark cell, e.g. ``bench_full_s0``."""
    return f"bench_{row}_s{seed}"


def parse_run(run: str) -> tuple[str, int] | None:
    """(row, seed) of a benchmark run name ``bench_<row>_s<seed>``, else None."""
    match = _RUN.match(run)
    return (match["row"], int(match["seed"])) if match else None


def paired_comparisons(table: str | None = None) -> list[str]:
    """Names of the pooled paired comparisons of the benchmark (``ctrg bench paired``):
    ``<row>_control`` for every row (its shuffled-image control minus the row itself) and
    ``<row>_vs_full`` for every other row and baseline (that row minus the full row); only
    the rows of ``table`` when given (:func:`table_rows`)."""
    rows = table_rows(table)
    others = [r for r in rows if r != "full"]
    others += [f"baseline_{name}" for name in load_rows()["baselines"]]
    controls = [f"{row}_control" for row in rows]
    return [*controls, *(f"{name}_vs_full" for name in others)]


def paired_predictions(comparison: str) -> dict[str, list[str]]:
    """The A and B predictions files of one paired comparison, one pair per seed.

    Raises:
        ValueError: for a name :func:`paired_comparisons` does not list.
    """
    if comparison not in paired_comparisons():
        raise ValueError(f"unknown comparison {comparison!r}; known: {paired_comparisons()}")
    seeds = load_rows()["seeds"]

    def files(row: str, folder: str) -> list[str]:
        return [f"results/{run_name(row, s)}/{folder}/predictions.csv" for s in seeds]

    if comparison.endswith("_control"):
        row = comparison.removesuffix("_control")
        return {"a": files(row, "control"), "b": files(row, "eval")}
    row = comparison.removesuffix("_vs_full")
    if row.startswith("baseline_"):  # method-free: one prediction set, paired with every seed
        return {
            "a": [f"results/{row}/eval/predictions.csv"] * len(seeds),
            "b": files("full", "eval"),
        }
    return {"a": files(row, "eval"), "b": files("full", "eval")}


def config_for_run(config: dict[str, Any], run: str) -> dict[str, Any]:
    """The workflow config of ``run``: itself, or a benchmark row's overrides and seed.

    Raises:
        ValueError: for a ``bench_*`` name whose row is not in ``rows.yaml``.
    """
    parsed = parse_run(run)
    if run == config.get("run") or (parsed is None and not run.startswith("bench_")):
        return {**config, "run": run}
    if parsed is None:
        raise ValueError(f"benchmark run {run!r} is not bench_<row>_s<seed>")
    row, seed = parsed
    rows = load_rows()["rows"]
    if row not in rows:
        raise ValueError(f"benchmark run {run!r}: unknown row {row!r}; known: {sorted(rows)}")
    merged = deep_merge(config, rows[row]["overrides"])
    merged["run"] = run
    merged["seed"] = seed
    return merged


def _upstream(config: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in config.items() if k not in DOWNSTREAM_OF_STAGE1 | {"run"}}


def stage1_run(config: dict[str, Any], run: str) -> str:
    """The run whose stage-1 model ``run`` freezes.

    A benchmark row reuses the stage-1 model of the first row (``full`` first, then the
    order of ``rows.yaml``) whose config equals its own, same seed, in every section read up
    to stage 1: ``all_patches`` (which changes only features and stage 2) freezes the
    ``full`` row's model, ``finding_tokens`` the ``finding_head`` row's. Every other run
    uses its own.
    """
    parsed = parse_run(run)
    if parsed is None or run == config.get("run"):
        return run
    names = list(load_rows()["rows"])
    own = _upstream(config_for_run(config, run))
    for row in sorted(names, key=lambda name: name != "full"):  # full first, stable order
        candidate = run_name(row, parsed[1])
        if _upstream(config_for_run(config, candidate)) == own:
            return candidate
    return run

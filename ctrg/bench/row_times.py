"""Wall time of each quality-benchmark row, from Snakemake's ``benchmark:`` files.

Every model job of a row's run writes ``benchmarks/<run>/<job>.tsv`` (column ``s``: the job's
wall time; see :mod:`ctrg.bench.snakemake_times`). A row that reuses another row's stage-1
model (``rows.stage1_run``) has no ``stage1.tsv`` of its own: its stage 1 is counted from
the run it shares, so that "row alone" is what running that row from nothing but the shared
data stages (phantom, volumes, reports) costs, shuffled-image control included.
"""

from __future__ import annotations

import json
import statistics
from pathlib import Path
from typing import Any

from ctrg.bench.rows import parse_run
from ctrg.bench.snakemake_times import tsv_seconds

STAGE1_JOBS = ("stage1", "stage1_heldout_retrieval")
"""Jobs that belong to the run that trains a stage-1 model."""


def run_seconds(folder: Path) -> dict[str, float]:
    """``{job: seconds}`` of every benchmark file under ``benchmarks/<run>`` (sharded jobs
    such as ``extract_features/000`` each count); empty when the folder does not exist."""
    if not folder.is_dir():
        return {}
    return {
        str(path.relative_to(folder).with_suffix("")): tsv_seconds(path)
        for path in sorted(folder.rglob("*.tsv"))
    }


def row_seconds(benchmarks: Path, run: str, stage1_run: str | None = None) -> dict[str, Any]:
    """Stage 1, stage 2 and the whole row alone, in seconds, for one run.

    Args:
        benchmarks: the ``benchmarks/`` folder.
        run: ``bench_<row>_s<seed>``.
        stage1_run: the run whose stage-1 model ``run`` freezes when it is not ``run``
            itself; its ``stage1`` jobs are added to ``row_s``.

    Returns:
        ``{}`` when ``benchmarks/<run>`` holds no stage-2 file; else ``stage1_s``,
        ``stage2_s``, ``row_s``, ``jobs`` and ``stage1_from`` (the run that trained stage 1).
    """
    own = run_seconds(benchmarks / run)
    if "stage2" not in own:
        return {}
    source = run if "stage1" in own or stage1_run in (None, run) else stage1_run
    shared = {}
    if source != run:
        other = run_seconds(benchmarks / source)
        shared = {k: v for k, v in other.items() if k in STAGE1_JOBS}
    jobs = {**own, **shared}
    if "stage1" not in jobs:
        return {}
    return {
        "stage1_s": jobs["stage1"],
        "stage2_s": jobs["stage2"],
        "row_s": sum(jobs.values()),
        "jobs": len(jobs),
        "stage1_from": source,
    }


def stage1_source(run_dir: Path) -> str | None:
    """The run whose stage-1 checkpoint ``results/<run>`` froze, read from its
    ``frozen/frozen.json`` (``checkpoint``: ``results/<source>/stage1/model.pt``); None
    when the run was not frozen."""
    meta = run_dir / "frozen" / "frozen.json"
    if not meta.exists():
        return None
    return Path(json.loads(meta.read_text())["checkpoint"]).parent.parent.name


def collect_times(metrics: list[Path], benchmarks: Path) -> dict[str, dict[str, Any]]:
    """:func:`summarise_times` of the benchmark rows among ``results/<run>/eval/metrics.json``
    files (baselines and other runs are left out)."""
    per_run = {}
    for path in metrics:
        run_dir = path.parent.parent
        parsed = parse_run(run_dir.name)
        if parsed is not None:
            times = row_seconds(benchmarks, run_dir.name, stage1_source(run_dir))
            per_run[run_dir.name] = (parsed[0], times)
    return summarise_times(per_run)


def summarise_times(per_run: dict[str, tuple[str, dict[str, Any]]]) -> dict[str, dict[str, Any]]:
    """Per row: mean of stage1_s, stage2_s and row_s over the runs that have them, the
    slowest run's row_s and whether stage 1 came from another row.

    Args:
        per_run: ``{run: (row, row_seconds(...))}``.
    """
    collected: dict[str, list[tuple[str, dict[str, Any]]]] = {}
    for run, (row, times) in per_run.items():
        if times:
            collected.setdefault(row, []).append((run, times))
    summary = {}
    for row, runs in collected.items():
        values = [times for _, times in runs]
        summary[row] = {
            "seeds": len(values),
            **{
                k: statistics.fmean(v[k] for v in values) for k in ("stage1_s", "stage2_s", "row_s")
            },
            "row_max_s": max(v["row_s"] for v in values),
            "stage1_shared": any(times["stage1_from"] != run for run, times in runs),
        }
    return summary


def times_markdown(rows: dict[str, dict[str, Any]]) -> str:
    """Wall-time table: stage 1, stage 2 and the row alone (min), mean over seeds."""
    lines = [
        "| row | seeds | stage 1 (min) | stage 2 (min) | row alone (min) | slowest seed (min) |",
        "|---|---|---|---|---|---|",
    ]
    for name, t in rows.items():
        stage1 = f"{t['stage1_s'] / 60:.1f}" + (" (shared)" if t["stage1_shared"] else "")
        lines.append(
            f"| {name} | {t['seeds']} | {stage1} | {t['stage2_s'] / 60:.1f} |"
            f" {t['row_s'] / 60:.1f} | {t['row_max_s'] / 60:.1f} |"
        )
    lines.append("")
    lines.append(
        "Wall time from Snakemake's benchmark files (`benchmarks/<run>/`), mean over seeds;"
        " row alone = every model job of the row (stage 1, features, stage 2, generation,"
        " evaluation, the shuffled control), the shared data stages left out; (shared) = the"
        " stage-1 model of another row with the same stage-1 config, counted in full."
    )
    return "\n".join(lines) + "\n"

"""Job wall times of the last pipeline run, from Snakemake's ``benchmark:`` files.

Every rule writes ``benchmarks/<rule>/...tsv`` (shared data stages) or
``benchmarks/<run>/...tsv`` (model stages of one run); column ``s`` is the job's wall time.
Each file holds the latest execution of its job, so the files of the shared stages plus one
run's folder describe the pipeline as it last ran. ``benchmarks/bench/`` (the quality
benchmark's own jobs) is left out.
"""

from __future__ import annotations

import csv
import statistics
from pathlib import Path
from typing import Any

RUN_JOB_NAMES = ("stage1.tsv", "freeze.tsv", "extract_features", "stage2.tsv", "evaluate.tsv")
"""Entries only a run's folder holds (a shared stage's folder is named after its rule)."""


def is_run_folder(folder: Path) -> bool:
    """Whether ``benchmarks/<name>`` holds a model run's jobs (not a shared data stage)."""
    return any((folder / name).exists() for name in RUN_JOB_NAMES)


def tsv_seconds(path: Path) -> float:
    """Mean of column ``s`` of a Snakemake benchmark file (one row per ``repeat``)."""
    with open(path, newline="") as handle:
        values = [float(row["s"]) for row in csv.DictReader(handle, delimiter="\t")]
    if not values:
        raise ValueError(f"{path}: no rows under the header")
    return statistics.fmean(values)


def newest_run(folder: Path) -> str | None:
    """The run folder under ``folder`` whose latest benchmark file is the newest."""
    runs = [p for p in folder.iterdir() if p.is_dir() and is_run_folder(p)]
    stamps = {p.name: max((f.stat().st_mtime for f in p.rglob("*.tsv")), default=0) for p in runs}
    return max(stamps, key=stamps.__getitem__) if stamps else None


def read_pipeline_benchmarks(folder: Path, run: str | None, largest: int = 3) -> dict[str, Any]:
    """Sum, span and largest jobs of the shared stages and of ``run`` (None: the newest run).

    Returns:
        ``{"status": "not run", ...}`` without benchmark files; else ``run`` (None when only
        data stages ran), ``jobs``, ``sum_s`` (sum of job wall times), ``span_s`` (first job
        start, i.e. file time - s, to last job end: the wall time when the jobs ran in one
        invocation) and ``largest`` (``[{"job", "s"}]``, longest first).
    """
    if not folder.is_dir():
        return {"status": "not run", "folder": str(folder), "run": run}
    run = run or newest_run(folder)
    shared = [p for p in folder.iterdir() if p.is_dir() and not is_run_folder(p)]
    files = [f for p in shared if p.name != "bench" for f in p.rglob("*.tsv")]
    if run and (folder / run).is_dir():
        files += (folder / run).rglob("*.tsv")
    else:
        run = None
    if not files:
        return {"status": "not run", "folder": str(folder), "run": run}
    jobs = {f: tsv_seconds(f) for f in sorted(files)}
    top = sorted(jobs.items(), key=lambda item: -item[1])[:largest]
    return {
        "status": "measured",
        "folder": str(folder),
        "run": run,
        "jobs": len(jobs),
        "sum_s": sum(jobs.values()),
        "span_s": max(f.stat().st_mtime for f in jobs)
        - min(f.stat().st_mtime - s for f, s in jobs.items()),
        "largest": [{"job": str(f.relative_to(folder).with_suffix("")), "s": s} for f, s in top],
    }

"""The built-in phantom data set: generate cases in parallel and write the contract's layout.

Output folder (paths in CSVs are relative to it)::

    manifest.csv             case_id, image, report, split, structure_map, finding_map
    labels.csv               case_id + the 18 CT-RATE labels (0/1)
    findings.csv             one row per finding: label, structure, side, lobe, size_mm, ...
    structure_sentences.csv  case_id, structure, sentence (report order)
    cases.csv                per-case geometry: shape, spacing, slice order, noise, sex
    volumes/<case>.nii.gz    int16 HU  (or volumes/<case>/slice_*.dcm with format=dicom)
    structures/<case>.nii.gz uint8 structure map (CHEST_STRUCTURES index + 1)
    findings/<case>.nii.gz   uint8 finding map (CTRATE_LABELS index + 1; v2 structure
                             findings 19.., phantom_v2_findings.FINDING_VALUES)
    preview/<case>.png       optional three-plane view with the report
    resolved_config.json, summary.json
"""

from __future__ import annotations

import logging
import multiprocessing
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from tqdm import tqdm

from ctrg.anatomy import CTRATE_LABELS
from ctrg.data.phantom_case import PhantomCase, generate_case
from ctrg.data.phantom_io import stored_affine, to_stored, write_dicom_series, write_nifti
from ctrg.runtime import atomic_write_csv, setup_logging, write_stage_summary

log = logging.getLogger(__name__)

MANIFEST_COLUMNS = ("case_id", "image", "report", "split", "structure_map", "finding_map")


def assign_splits(n_cases: int, fractions: dict[str, float], seed: int) -> list[str]:
    """Exact-count random split per case index (train/valid by rounding, test the rest)."""
    n_train = int(round(fractions["train"] * n_cases))
    n_valid = min(int(round(fractions["valid"] * n_cases)), n_cases - n_train)
    order = np.random.default_rng([seed, 7_919]).permutation(n_cases)
    splits = np.array(["test"] * n_cases, dtype=object)
    splits[order[:n_train]] = "train"
    splits[order[n_train : n_train + n_valid]] = "valid"
    return [str(s) for s in splits]


def write_case(case: PhantomCase, out: Path, synth: dict[str, Any], seed: int) -> dict[str, str]:
    """Write a case's image, structure map and finding map; return their relative paths."""
    affine = stored_affine(case.grid, case.descending)
    level = synth["compress_level"]
    if synth["format"] == "dicom":
        write_dicom_series(out / "volumes" / case.case_id, case.hu, case.grid, case.case_id, seed)
        image = f"volumes/{case.case_id}"
    else:
        image = f"volumes/{case.case_id}.nii.gz"
        write_nifti(out / image, to_stored(case.hu, case.descending), affine, level)
    structure_map = f"structures/{case.case_id}.nii.gz"
    finding_map = f"findings/{case.case_id}.nii.gz"
    write_nifti(out / structure_map, to_stored(case.structures, case.descending), affine, level)
    write_nifti(out / finding_map, to_stored(case.finding_map, case.descending), affine, level)
    return {"image": image, "structure_map": structure_map, "finding_map": finding_map}


def _case_record(case: PhantomCase, paths: dict[str, str]) -> dict[str, Any]:
    """Everything the parent process needs to write the tables (small, picklable)."""
    return {
        "case_id": case.case_id,
        "paths": paths,
        "report": case.report,
        "labels": case.labels,
        "findings": [f.row(case.case_id) for f in case.findings],
        "sentences": case.sentences,
        "dropped": case.dropped,
        "geometry": {
            "case_id": case.case_id,
            "shape": "x".join(map(str, case.grid.shape)),
            "spacing": "x".join(f"{v:.4f}" for v in case.grid.spacing),
            "slice_order": "descending" if case.descending else "ascending",
            "noise_hu": round(case.noise_hu, 2),
            "female": int(case.female),
        },
    }


def _work(job: tuple[dict[str, Any], int, int, str, bool]) -> dict[str, Any]:
    """Worker: generate, write and (optionally) preview one case."""
    synth, seed, index, out, preview = job
    try:
        case = generate_case(synth, seed, index)
        paths = write_case(case, Path(out), synth, seed)
        if preview:
            from ctrg.data.phantom_preview import write_preview

            write_preview(case, Path(out) / "preview" / f"{case.case_id}.png")
    except Exception as error:  # one broken case is reported, the others are still written
        log.exception("case %d (seed %d) failed", index, seed)
        return {"case_id": f"phantom_{index:04d}", "error": f"{type(error).__name__}: {error}"}
    return _case_record(case, paths)


def generate_dataset(payload: dict[str, Any], out: Path, threads: int) -> dict[str, Any]:
    """Generate all cases with ``threads`` worker processes and write every table.

    Args:
        payload: resolved stage file content (``seed`` and the ``synth`` section).
        out: output folder.
        threads: worker processes (1 = in this process).

    Returns:
        the summary dict (also written to ``summary.json``).
    """
    synth, seed = payload["synth"], int(payload["seed"])
    n = synth["n_cases"]
    out.mkdir(parents=True, exist_ok=True)
    jobs = [(synth, seed, i, str(out), i < synth["preview"]) for i in range(n)]
    start = time.perf_counter()
    if threads <= 1:
        records = [_work(job) for job in tqdm(jobs, desc="synth", unit="case")]
    else:
        level = logging.getLogger().getEffectiveLevel()
        with multiprocessing.get_context("spawn").Pool(threads, setup_logging, (level,)) as pool:
            records = list(tqdm(pool.imap(_work, jobs), total=n, desc="synth", unit="case"))
    elapsed = time.perf_counter() - start
    splits = assign_splits(n, synth["splits"], seed)
    failed = {r["case_id"]: r["error"] for r in records if "error" in r}
    for case_id, error in failed.items():
        log.error("%s was not written: %s", case_id, error)
    kept = [(r, s) for r, s in zip(records, splits) if "error" not in r]
    summary = write_tables([r for r, _ in kept], [s for _, s in kept], out)
    summary.update(
        {
            "failed": failed,
            "n_cases": len(kept),
            "seconds": round(elapsed, 2),
            "threads": threads,
            "format": synth["format"],
            "seed": seed,
        }
    )
    write_stage_summary(out, "synth", payload, summary)
    log.info("wrote %d cases to %s in %.1f s (%d workers)", len(kept), out, elapsed, threads)
    return summary


FINDING_COLUMNS: tuple[str, ...] = (
    "case_id",
    "label",
    "structure",
    "side",
    "lobe",
    "size_mm",
    "amount",
    "location",
    "count",
    "n_voxels",
    "ctrate",
)
"""Columns of ``findings.csv``: one row per drawn finding."""


def _tables(records: list[dict[str, Any]], splits: list[str]) -> dict[str, pd.DataFrame]:
    """The five tables of the phantom, by CSV name (``manifest``, ``labels``, ...)."""
    manifest = pd.DataFrame(
        [
            {
                "case_id": r["case_id"],
                "image": r["paths"]["image"],
                "report": r["report"],
                "split": split,
                "structure_map": r["paths"]["structure_map"],
                "finding_map": r["paths"]["finding_map"],
            }
            for r, split in zip(records, splits)
        ],
        columns=list(MANIFEST_COLUMNS),
    )
    labels = pd.DataFrame(
        [{"case_id": r["case_id"], **r["labels"]} for r in records],
        columns=["case_id", *CTRATE_LABELS],
    )
    findings = pd.DataFrame(
        [row for r in records for row in r["findings"]], columns=list(FINDING_COLUMNS)
    )
    sentences = pd.DataFrame(
        [
            {"case_id": r["case_id"], "structure": s, "sentence": t}
            for r in records
            for s, t in r["sentences"]
        ],
        columns=["case_id", "structure", "sentence"],
    )
    geometry = pd.DataFrame([r["geometry"] for r in records])
    return {
        "manifest": manifest,
        "labels": labels,
        "findings": findings,
        "structure_sentences": sentences,
        "cases": geometry,
    }


def write_tables(records: list[dict[str, Any]], splits: list[str], out: Path) -> dict[str, Any]:
    """Write manifest, labels, findings, structure sentences and case geometry CSVs.

    Returns:
        label prevalence overall and per split, and the fraction of normal cases.
    """
    tables = _tables(records, splits)
    for name, frame in tables.items():
        atomic_write_csv(out / f"{name}.csv", frame)
    manifest, labels = tables["manifest"], tables["labels"]
    present = labels[list(CTRATE_LABELS)]
    per_split = {
        split: present[manifest["split"] == split].mean().round(3).to_dict()
        for split in ("train", "valid", "test")
    }
    return {
        "prevalence": present.mean().round(3).to_dict(),
        "prevalence_per_split": per_split,
        "split_counts": manifest["split"].value_counts().to_dict(),
        "normal_fraction": float((present.sum(axis=1) == 0).mean()),
        "mean_labels_per_case": float(present.sum(axis=1).mean()),
        "dropped_invisible_findings": sum(len(r["dropped"]) for r in records),
    }

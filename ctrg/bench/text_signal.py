"""``ctrg bench text-signal``: how much of each structure's text embedding its findings explain.

Stage 1 contrasts each structure's observation token with that structure's text embedding;
if the texts of cases with the same findings are no closer than those of cases with other
findings, the contrast carries wording, not findings. For every structure this fits, by
least squares, the cached (frozen-encoder) text embeddings ``(N, E)`` on indicators of the
structure's own ground-truth findings (``findings.csv`` of a phantom set: one indicator per
finding, and one per finding and side), and prints the share of the embeddings' total
variance that the fit explains (R², pooled over the E dimensions) on the cases of the
training split, with the number of cases whose structure has any finding::

    ctrg bench text-signal --cache results/default/text_cache/texts.safetensors \\
        --findings results/phantom/findings.csv --out-json results/bench/text_signal.json

Prints a table; asserts nothing.
"""

from __future__ import annotations

import argparse
import logging
from typing import Any

import numpy as np
import pandas as pd

from ctrg.anatomy import CHEST_STRUCTURES
from ctrg.models.text_cache import load_text_cache
from ctrg.runtime import atomic_write_json, setup_logging

log = logging.getLogger(__name__)


def explained_variance(embeddings: np.ndarray, design: np.ndarray) -> float:
    """Pooled R² of the least-squares fit of ``embeddings`` (N, E) on ``design`` (N, P).

    An intercept is always included; 0.0 when the design has no column or no variance.
    """
    centred = embeddings - embeddings.mean(0, keepdims=True)
    total = float((centred**2).sum())
    if design.shape[1] == 0 or total == 0.0:
        return 0.0
    x = np.hstack([np.ones((len(design), 1)), design])
    coef, *_ = np.linalg.lstsq(x, embeddings, rcond=None)
    residual = embeddings - x @ coef
    return 1.0 - float((residual**2).sum()) / total


def indicators(findings: pd.DataFrame, case_ids: list[str], structure: str, with_side: bool):
    """0/1 design ``(N, P)``: one column per finding (and side) of ``structure`` seen."""
    rows = findings[findings["structure"] == structure]
    keys = rows["label"] + (("|" + rows["side"].fillna("")) if with_side else "")
    table = pd.crosstab(rows["case_id"], keys).clip(upper=1)
    return table.reindex(case_ids, fill_value=0).to_numpy(dtype=float)


def structure_signal(cache_path: str, findings_path: str, cases: list[str] | None) -> list[dict]:
    """Per-structure R² of the text embeddings on findings, and on findings and sides."""
    cache = load_text_cache(cache_path)
    findings = pd.read_csv(findings_path, keep_default_na=False)
    ids = list(cache.case_ids)
    keep = [i for i, c in enumerate(ids) if cases is None or c in set(cases)]
    embeddings = cache.embeddings.float().numpy()[keep]  # (N, S, E)
    ids = [ids[i] for i in keep]
    out = []
    for s, structure in enumerate(CHEST_STRUCTURES):
        design = indicators(findings, ids, structure, with_side=False)
        sided = indicators(findings, ids, structure, with_side=True)
        out.append(
            {
                "structure": structure,
                "cases": len(ids),
                "cases_with_findings": int((design.sum(1) > 0).sum()),
                "r2_findings": explained_variance(embeddings[:, s], design),
                "r2_findings_and_side": explained_variance(embeddings[:, s], sided),
                "distinct_texts_share": float(
                    len(np.unique(embeddings[:, s].round(5), axis=0)) / max(len(ids), 1)
                ),
            }
        )
    return out


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="ctrg bench text-signal", description=__doc__)
    parser.add_argument("--cache", required=True, help="text cache .safetensors (encode-texts)")
    parser.add_argument("--findings", required=True, help="phantom findings.csv")
    parser.add_argument("--manifest", default=None, help="manifest.csv with a split column")
    parser.add_argument("--split", default="train", help="split to fit on (with --manifest)")
    parser.add_argument("--out-json", default=None)
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    setup_logging()
    cases = None
    if args.manifest:
        manifest = pd.read_csv(args.manifest)
        cases = list(manifest.loc[manifest["split"] == args.split, "case_id"])
    rows = structure_signal(args.cache, args.findings, cases)
    table = pd.DataFrame(rows)
    print(table.to_string(index=False, float_format=lambda v: f"{v:.3f}"))
    result: dict[str, Any] = {"cache": args.cache, "split": args.split, "structures": rows}
    if args.out_json:
        atomic_write_json(args.out_json, result)
    return 0

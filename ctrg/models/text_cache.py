"""``ctrg encode-texts``: encode every case's structure texts once with the frozen encoder.

Output (safetensors): ``embeddings`` (N, S, H) float32, the pooled encoder output of each
case's S structure texts (anatomy order); ``report_embeddings`` (N, H) when
``text_encoder.encode_reports`` (the S texts joined, for the global-query ablation), cut at
``text_encoder.report_max_length`` tokens (0 = the longest joined report, up to the
encoder's own limit), not at the per-structure ``max_length``.
Metadata (JSON strings): ``case_ids``, ``structures``, ``encoder_path``, ``texts_sha256``
(hash of case ids + texts, checked by stage 1), ``pooling``, ``max_length``,
``truncation`` (the share of structure texts and of report texts cut, the longest of each
and the limits; also in summary.json, and logged, a warning above 1%).
Identical texts (e.g. the default "No abnormality found in lung.") are encoded once.
"""

from __future__ import annotations

import argparse
import json
import logging
import math
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import torch
from safetensors import safe_open
from safetensors.torch import save_file

from ctrg.anatomy import CHEST_STRUCTURES
from ctrg.config import load_stage_config
from ctrg.runtime import atomic_path, select_device, setup_logging, sha256_json, write_stage_summary

log = logging.getLogger(__name__)

TRUNCATION_WARNING_SHARE = 0.01
"""A share of truncated texts above this is logged as a warning."""


@dataclass
class StructureTexts:
    """Per-case structure texts read from structure_texts.csv."""

    case_ids: list[str]
    texts: list[list[str]]  # (N, S)
    structures: tuple[str, ...]

    @property
    def sha256(self) -> str:
        return texts_sha256(self.case_ids, self.texts)


def texts_sha256(case_ids: list[str], texts: list[list[str]]) -> str:
    """Content hash of (case id, structure texts) pairs, order-sensitive."""
    return sha256_json({"case_ids": case_ids, "texts": texts})


def read_structure_texts(
    path: str | Path, structures: tuple[str, ...] = CHEST_STRUCTURES
) -> StructureTexts:
    """Read ``case_id`` + one column per structure; cases with empty texts are skipped.

    Raises:
        ValueError: naming the file when a required column is missing.
    """
    frame = pd.read_csv(path, dtype=str, keep_default_na=False)
    missing = [c for c in ("case_id", *structures) if c not in frame.columns]
    if missing:
        raise ValueError(f"{path}: missing columns {missing}; has {list(frame.columns)}")
    case_ids, texts = [], []
    for case_id, *values in frame[["case_id", *structures]].itertuples(index=False, name=None):
        values = [str(v).strip() for v in values]
        if not all(values) or not case_id:
            empty = [s for s, v in zip(structures, values) if not v]
            log.warning("%s: case %r has empty texts for %s: skipped", path, case_id, empty)
            continue
        case_ids.append(str(case_id))
        texts.append(values)
    if len(set(case_ids)) != len(case_ids):
        raise ValueError(f"{path}: duplicate case_id values")
    return StructureTexts(case_ids, texts, tuple(structures))


def encode_unique(  # type: ignore[no-untyped-def]
    encoder, texts: list[str], batch_size: int, max_length: int | None = None
) -> torch.Tensor:
    """Encode each distinct text once; returns (len(texts), H) in input order.

    ``max_length``: token limit of these texts (None = the encoder's ``max_length``).
    """
    unique = sorted(set(texts), key=lambda t: (len(t), t))  # similar lengths batch together
    index = {text: i for i, text in enumerate(unique)}
    vectors = encoder.encode(unique, batch_size=batch_size, max_length=max_length)
    return vectors[torch.tensor([index[t] for t in texts], dtype=torch.long)]


def report_token_limit(counts: list[int], setting: int, position_limit: int) -> int:
    """The token limit of the whole-report texts (``text_encoder.report_max_length``).

    Args:
        counts: untruncated tokens per report text (special tokens included).
        setting: ``report_max_length``; 0 = the longest report, at most ``position_limit``.
        position_limit: the most tokens the encoder takes.

    Raises:
        ValueError: for a setting above ``position_limit`` or no reports.
    """
    if setting > position_limit:
        raise ValueError(
            f"text_encoder.report_max_length {setting} exceeds the encoder's limit of "
            f"{position_limit} tokens (0 = the longest report, up to that limit)"
        )
    if not counts:
        raise ValueError("no report texts to encode")
    return setting if setting > 0 else min(max(counts), position_limit)


def truncation_stats(counts: list[int], limit: int, what: str) -> dict[str, float | int]:
    """Share of texts longer than ``limit`` tokens, logged (a warning above 1%).

    Returns:
        ``{"<what>_truncated": share, "<what>_tokens_max": longest, "<what>_max_length": limit}``.
    """
    share = sum(n > limit for n in counts) / len(counts) if counts else 0.0
    level = logging.WARNING if share > TRUNCATION_WARNING_SHARE else logging.INFO
    longest = max(counts, default=0)
    name = what.replace("_", " ")
    message = "%.1f%% of %d %s truncated at %d tokens (longest: %d)"
    log.log(level, message, 100 * share, len(counts), name, limit, longest)
    return {f"{what}_truncated": share, f"{what}_tokens_max": longest, f"{what}_max_length": limit}


def _encode_reports(  # type: ignore[no-untyped-def]
    encoder, data: StructureTexts, section: dict
) -> tuple[torch.Tensor, dict]:
    """(N, H) embeddings of the joined structure texts and their truncation statistics."""
    reports = [" ".join(row) for row in data.texts]
    counts = encoder.token_counts(reports)
    limit = report_token_limit(counts, section["report_max_length"], encoder.position_limit)
    stats = truncation_stats(counts, limit, "report_texts")
    return encode_unique(encoder, reports, section["batch_size"], limit), stats


def build_cache(data: StructureTexts, section: dict, device: str = "cpu") -> dict:
    """Encode ``data`` -> {"tensors": {...}, "metadata": {...}, "truncation": {...}}.

    ``truncation``: the share of structure texts cut at ``max_length`` and, with
    ``encode_reports``, of whole-report texts cut at the report limit (module doc).
    """
    from ctrg.models.text_encoder import FrozenTextEncoder, resolve_encoder_path

    path = resolve_encoder_path(section["path"])
    encoder = FrozenTextEncoder(path, section["pooling"], section["max_length"], device)
    flat = [text for row in data.texts for text in row]
    n, s = len(data.texts), len(data.structures)
    embeddings = encode_unique(encoder, flat, section["batch_size"]).reshape(n, s, encoder.dim)
    tensors = {"embeddings": embeddings.contiguous()}
    stats = truncation_stats(encoder.token_counts(flat), encoder.max_length, "structure_texts")
    if section["encode_reports"]:
        tensors["report_embeddings"], report_stats = _encode_reports(encoder, data, section)
        stats.update(report_stats)
    metadata = {
        "case_ids": json.dumps(data.case_ids),
        "structures": json.dumps(list(data.structures)),
        "encoder_path": str(path),
        "texts_sha256": data.sha256,
        "pooling": section["pooling"],
        "max_length": str(section["max_length"]),
        "truncation": json.dumps(stats),
    }
    return {"tensors": tensors, "metadata": metadata, "truncation": stats}


@dataclass
class TextCache:
    """A loaded text cache."""

    embeddings: torch.Tensor  # (N, S, H)
    report_embeddings: torch.Tensor | None  # (N, H)
    case_ids: list[str]
    metadata: dict[str, str]

    @property
    def index(self) -> dict[str, int]:
        return {case: i for i, case in enumerate(self.case_ids)}


def load_text_cache(path: str | Path) -> TextCache:
    """Read a cache written by ``ctrg encode-texts``."""
    with safe_open(str(path), framework="pt") as handle:
        metadata = handle.metadata() or {}
        if "case_ids" not in metadata or "embeddings" not in handle.keys():
            raise ValueError(f"{path}: not a ctrg text cache (no embeddings/case_ids)")
        embeddings = handle.get_tensor("embeddings")
        reports = (
            handle.get_tensor("report_embeddings") if "report_embeddings" in handle.keys() else None
        )
    case_ids = json.loads(metadata["case_ids"])
    if embeddings.shape[0] != len(case_ids):
        raise ValueError(f"{path}: {embeddings.shape[0]} rows but {len(case_ids)} case ids")
    return TextCache(embeddings, reports, case_ids, metadata)


def main(argv: list[str] | None = None) -> int:
    """CLI entry point of ``ctrg encode-texts``."""
    parser = argparse.ArgumentParser(prog="ctrg encode-texts", description=__doc__.split("\n")[0])
    parser.add_argument("texts", help="structure_texts.csv (case_id + one column per structure)")
    parser.add_argument("--config", default=None, help="resolved text_encoder.json")
    parser.add_argument("--out", required=True, help="output .safetensors path")
    args = parser.parse_args(argv)
    setup_logging()
    payload = load_stage_config(args.config, "text_encoder")
    section = payload["text_encoder"]
    device = select_device(payload.get("device", "auto"))
    data = read_structure_texts(args.texts)
    if not data.case_ids:
        raise ValueError(f"{args.texts}: no usable cases")
    cache = build_cache(data, section, str(device))
    with atomic_path(args.out) as tmp:
        save_file(cache["tensors"], str(tmp), metadata=cache["metadata"])
    shape = list(cache["tensors"]["embeddings"].shape)
    unique = len({t for row in data.texts for t in row})
    log.info(
        "encoded %d cases x %d structures (%d distinct texts) -> %s",
        shape[0],
        shape[1],
        unique,
        args.out,
    )
    summary = {
        "cases": shape[0],
        "shape": shape,
        "distinct_texts": unique,
        "texts_sha256": data.sha256,
        "encoder_path": cache["metadata"]["encoder_path"],
        "mean_norm": float(cache["tensors"]["embeddings"].norm(dim=-1).mean()),
        **cache["truncation"],
    }
    if math.isnan(summary["mean_norm"]):
        raise FloatingPointError("text encoder produced NaN embeddings")
    out_dir = Path(args.out).parent
    write_stage_summary(out_dir, "text_encoder", payload, summary)
    return 0

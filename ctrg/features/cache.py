"""The feature cache: frozen-model files, per-case feature files and the features index.

Frozen model: ``model.safetensors`` (the stage-1 observer's tensors; metadata ``observer``
config JSON and ``frozen_hash``) + ``frozen.json`` beside it. ``frozen_hash`` is the SHA-256
of the observer config and of every tensor (name, dtype, shape, bytes): the identity of the
frozen model, independent of how the checkpoint file was written.

Per-case feature file ``<case_id>.safetensors`` (metadata ``frozen_hash``, ``case_id``,
``top_k``, ``patch_grid``):

- ``observation_tokens`` (S, C) float32;
- ``selected_patch_tokens`` (S, k, C) float32: top-k patches per structure;
- ``selected_patch_index`` (S, k) int64: their patch indices (best first);
- ``selected_patch_score`` (S, k) float32: their max-over-heads attention;
- ``attention`` (S, N) float16: the max-over-heads query-to-patch attention row;
- ``patch_tokens`` (N, C) float32: only with ``features.store_all_patches``;
- ``finding_logits`` (L,) float32: only when the stage-1 model has a finding head
  (``stage1.findings``), its logit for each CT-RATE label.

Index CSV columns: ``case_id, split, path, frozen_hash`` (path relative to the CSV's folder).
"""

from __future__ import annotations

import hashlib
import json
import logging
from pathlib import Path
from typing import Any

import pandas as pd
import torch
from safetensors import safe_open
from safetensors.torch import save_file

from ctrg.features.select import VisualTokens, assemble_visual_tokens
from ctrg.models.finding_head import finding_states
from ctrg.runtime import atomic_path, sha256_json

log = logging.getLogger(__name__)

INDEX_COLUMNS: tuple[str, ...] = ("case_id", "split", "path", "frozen_hash")
FEATURE_KEYS: tuple[str, ...] = (
    "observation_tokens",
    "selected_patch_tokens",
    "selected_patch_index",
    "selected_patch_score",
    "attention",
)


class FrozenHashMismatch(ValueError):
    """Features (or a decoder) made with another frozen stage-1 model than expected."""


class MissingFeatures(ValueError):
    """A feature file lacks tensors the requested visual-token mode needs."""


def frozen_hash(observer_config: dict[str, Any], tensors: dict[str, torch.Tensor]) -> str:
    """Content hash of a frozen model: its config and every tensor's name, dtype, shape, bytes."""
    digest = hashlib.sha256(sha256_json(observer_config).encode())
    for name in sorted(tensors):
        tensor = tensors[name].detach().cpu().contiguous()
        digest.update(f"{name}|{tensor.dtype}|{tuple(tensor.shape)}".encode())
        digest.update(tensor.view(torch.uint8).numpy().tobytes() if tensor.numel() else b"")
    return digest.hexdigest()


def save_frozen(
    path: str | Path, tensors: dict[str, torch.Tensor], observer_config: dict[str, Any]
) -> str:
    """Write the frozen model as safetensors (atomic); returns its ``frozen_hash``."""
    tensors = {k: v.detach().cpu().contiguous() for k, v in tensors.items()}
    content = frozen_hash(observer_config, tensors)
    metadata = {"observer": json.dumps(observer_config, sort_keys=True), "frozen_hash": content}
    with atomic_path(path) as tmp:
        save_file(tensors, str(tmp), metadata=metadata)
    return content


def load_frozen(path: str | Path) -> tuple[dict[str, torch.Tensor], dict[str, Any], str]:
    """Read a frozen model and verify its hash.

    Returns:
        (tensors, observer config dict, frozen_hash).

    Raises:
        ValueError: naming the file when metadata is missing or the content hash differs.
    """
    with safe_open(str(path), framework="pt") as handle:
        metadata = handle.metadata() or {}
        tensors = {name: handle.get_tensor(name) for name in handle.keys()}  # noqa: SIM118
    if "observer" not in metadata or "frozen_hash" not in metadata:
        raise ValueError(f"{path}: not a frozen model (metadata needs observer and frozen_hash)")
    observer_config = json.loads(metadata["observer"])
    content = frozen_hash(observer_config, tensors)
    if content != metadata["frozen_hash"]:
        raise ValueError(
            f"{path}: content hash {content[:12]} differs from the recorded "
            f"{metadata['frozen_hash'][:12]} (file modified or corrupt)"
        )
    return tensors, observer_config, content


def save_case_features(
    path: str | Path, tensors: dict[str, torch.Tensor], metadata: dict[str, str]
) -> None:
    """Write one case's feature file atomically (see module doc for the keys)."""
    missing = [key for key in FEATURE_KEYS if key not in tensors]
    if missing or "frozen_hash" not in metadata:
        raise ValueError(f"{path}: feature tensors missing {missing} or metadata frozen_hash")
    tensors = {k: v.detach().cpu().contiguous() for k, v in tensors.items()}
    with atomic_path(path) as tmp:
        save_file(tensors, str(tmp), metadata={k: str(v) for k, v in metadata.items()})


def load_case_features(
    path: str | Path, expected_hash: str | None = None, keys: tuple[str, ...] | None = None
) -> dict[str, Any]:
    """Read one case's feature file.

    Args:
        path: the ``.safetensors`` file.
        expected_hash: when given, the file's ``frozen_hash`` must equal it.
        keys: tensors to read (default: all).

    Returns:
        Dict of tensors plus ``"metadata"`` (dict of str).

    Raises:
        FrozenHashMismatch: naming the file when its frozen_hash differs.
        MissingFeatures: naming the file when a tensor is missing.
    """
    with safe_open(str(path), framework="pt") as handle:
        metadata = handle.metadata() or {}
        available = set(handle.keys())
        wanted = keys if keys is not None else tuple(sorted(available))
        missing = [key for key in wanted if key not in available]
        if missing:
            hint = (
                " (extract with features.store_all_patches: true)"
                if ("patch_tokens" in missing)
                else f" {FINDING_HINT}"
                if "finding_logits" in missing
                else ""
            )
            raise MissingFeatures(f"{path}: feature file lacks {missing}{hint}")
        out: dict[str, Any] = {key: handle.get_tensor(key) for key in wanted}
    if expected_hash is not None and metadata.get("frozen_hash") != expected_hash:
        raise FrozenHashMismatch(
            f"{path}: made by frozen model {str(metadata.get('frozen_hash'))[:12]}, "
            f"expected {expected_hash[:12]}: features from a different stage-1 model"
        )
    out["metadata"] = metadata
    return out


def read_index(path: str | Path) -> pd.DataFrame:
    """Read a features index; ``path`` becomes absolute. Refuses mixed frozen models.

    Raises:
        ValueError: naming the file on missing columns, duplicate cases or several hashes.
    """
    frame = pd.read_csv(path, dtype=str, keep_default_na=False)
    missing = set(INDEX_COLUMNS) - set(frame.columns)
    if missing:
        raise ValueError(f"{path}: features index lacks columns {sorted(missing)}")
    if frame.empty:
        raise ValueError(f"{path}: features index has no rows")
    duplicated = frame["case_id"][frame["case_id"].duplicated()].tolist()
    if duplicated:
        raise ValueError(f"{path}: duplicate case ids {duplicated[:5]}")
    hashes = sorted(set(frame["frozen_hash"]))
    if len(hashes) != 1:
        raise ValueError(
            f"{path}: features from {len(hashes)} different frozen models "
            f"{[h[:12] for h in hashes]}; re-extract all shards with one model"
        )
    root = Path(path).parent
    frame["path"] = [str(root / p) for p in frame["path"]]
    return frame.reset_index(drop=True)


def index_hash(frame: pd.DataFrame) -> str:
    """The single frozen_hash of an index read by :func:`read_index`."""
    return str(frame["frozen_hash"].iloc[0])


def visual_tokens_from_features(
    features: list[dict[str, Any]], mode: str, findings: bool = False
) -> VisualTokens:
    """Assemble a batch's decoder input from loaded feature dicts.

    Args:
        features: per-case dicts from :func:`load_case_features`.
        mode: ``selected`` (observation + top-k patches) or ``all`` (every patch token).
        findings: also attach the finding head's decisions as finding states (B, L) in
            {-1, +1} (``stage2.finding_tokens``; ``ctrg.models.finding_head.finding_states``).
    """
    observation = torch.stack([f["observation_tokens"].float() for f in features])
    key = "selected_patch_tokens" if mode == "selected" else "patch_tokens"
    if any(key not in f for f in features):
        raise ValueError(
            f"visual_tokens={mode!r} needs {key!r} in the feature cache"
            + (" (extract with features.store_all_patches: true)" if mode == "all" else "")
        )
    patches = torch.stack([f[key].float() for f in features])
    visual = assemble_visual_tokens(observation, patches, mode)
    if findings:
        if any("finding_logits" not in f for f in features):
            raise ValueError(f"stage2.finding_tokens needs 'finding_logits' {FINDING_HINT}")
        logits = torch.stack([f["finding_logits"].float() for f in features])  # (B, L)
        visual.findings = finding_states(logits)
    return visual


FINDING_HINT = "(features of a stage-1 model with a finding head: stage1.findings.weight > 0)"


def feature_keys_for(mode: str, findings: bool = False) -> tuple[str, ...]:
    """Tensors a decoder in ``mode`` (with finding tokens or not) reads from each file."""
    keys = ("observation_tokens", "selected_patch_tokens" if mode == "selected" else "patch_tokens")
    return (*keys, "finding_logits") if findings else keys

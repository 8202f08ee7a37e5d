"""``ctrg freeze CHECKPOINT --out model.safetensors``: export the frozen stage-1 model.

Writes the observer's tensors (3D ViT, structure queries and co-attention, projections) as
safetensors with the observer config in the metadata, and ``frozen.json`` beside it:
``frozen_hash`` (SHA-256 of config + tensors, see ``ctrg.features.cache.frozen_hash``), the
checkpoint path and SHA-256, its training step and stage-1 config, and provenance. Feature
caches carry ``frozen_hash``; stage 2 and generation refuse caches made by another model.
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path
from typing import Any

import torch

from ctrg.features.cache import load_frozen, save_frozen
from ctrg.runtime import atomic_write_json, provenance, setup_logging, sha256_file

log = logging.getLogger(__name__)


def read_stage1_checkpoint(path: Path) -> dict[str, Any]:
    """Load a stage-1 ``model.pt`` (weights_only) and check its keys."""
    if not path.is_file():
        raise FileNotFoundError(f"stage-1 checkpoint not found: {path}")
    state = torch.load(path, map_location="cpu", weights_only=True)
    if not isinstance(state, dict) or "model" not in state or "observer" not in state:
        raise ValueError(f"{path}: not a stage-1 checkpoint (needs 'model' and 'observer' keys)")
    return state


def build_observer(tensors: dict[str, torch.Tensor], observer_config: dict[str, Any]) -> Any:
    """A StructureObserver with the frozen weights, in eval mode, gradients off."""
    from ctrg.models.observer import ObserverConfig, StructureObserver

    observer = StructureObserver(ObserverConfig.from_dict(observer_config))
    observer.load_state_dict(tensors)
    observer.requires_grad_(False)
    return observer.eval()


def freeze(checkpoint: Path, out: Path) -> dict[str, Any]:
    """Export ``checkpoint`` to ``out`` (+ ``frozen.json``); returns the frozen.json content."""
    state = read_stage1_checkpoint(checkpoint)
    observer_config = dict(state["observer"])
    tensors = dict(state["model"])
    build_observer(tensors, observer_config)  # refuses tensors that do not fit the config
    content = save_frozen(out, tensors, observer_config)
    _, _, reread = load_frozen(out)
    if reread != content:
        raise RuntimeError(f"{out}: hash changed on re-reading ({reread} != {content})")
    meta = {
        "frozen_hash": content,
        "frozen_model": out.name,
        "checkpoint": str(checkpoint),
        "checkpoint_sha256": sha256_file(checkpoint),
        "stage1_step": int(state.get("step", -1)),
        "observer": observer_config,
        "stage1_config": state.get("config", {}),
        "num_tensors": len(tensors),
        "num_parameters": int(sum(t.numel() for t in tensors.values())),
        "provenance": provenance(),
    }
    atomic_write_json(out.parent / "frozen.json", meta)
    log.info("froze %s -> %s (hash %s, %d tensors)", checkpoint, out, content[:12], len(tensors))
    return meta


def main(argv: list[str]) -> int:
    """Run ``ctrg freeze``."""
    parser = argparse.ArgumentParser(prog="ctrg freeze", description=__doc__.splitlines()[0])
    parser.add_argument("checkpoint", type=Path, help="stage-1 model.pt")
    parser.add_argument("--out", required=True, type=Path, help="output model.safetensors")
    parser.add_argument("--log-level", default="INFO")
    args = parser.parse_args(argv)
    setup_logging(args.log_level)
    freeze(args.checkpoint, args.out)
    return 0

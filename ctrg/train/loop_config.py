"""Settings and small helpers of the shared training loop (``ctrg.train.loop``): the
``LoopConfig`` dataclass, the order of validation results that picks the best checkpoint,
the warm-up/decay learning-rate factor, batch device moves and the start every training
stage shares (``begin_stage``)."""

from __future__ import annotations

import argparse
import math
from collections.abc import Callable
from dataclasses import dataclass, field, fields
from typing import Any

import torch

from ctrg.config import load_stage_config
from ctrg.runtime import seed_everything, select_device


@dataclass
class LoopConfig:
    """Optimisation and bookkeeping settings of a training run."""

    max_steps: int = 100  # optimizer steps
    lr: float = 1e-4
    betas: tuple[float, float] = (0.9, 0.98)
    eps: float = 1e-8
    weight_decay: float = 0.01
    warmup_fraction: float = 0.1  # of max_steps, linear from 0 to lr
    grad_clip: float = 1.0  # max global grad norm; 0 disables
    grad_accum: int = 1  # micro-batches per optimizer step
    amp: str = "auto"  # auto (bf16 on CUDA) | bf16 | off
    checkpoint_every: int = 50
    eval_every: int = 50
    log_every: int = 10
    best_metric: str | None = None  # key returned by evaluate_fn
    best_mode: str = "max"
    best_tiebreak: str | None = None  # second key, same direction, for equal best_metric
    tensorboard: bool = True
    bucket_pool: int = 0  # sort runs of this many global batches by item length (0 = off)
    extra: dict[str, Any] = field(default_factory=dict)  # ignored keys, kept for provenance

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> LoopConfig:
        """Build from a config dict; unknown keys go to ``extra``."""
        known = {f.name for f in fields(cls)} - {"extra"}
        kwargs = {k: v for k, v in values.items() if k in known}
        if "betas" in kwargs:
            kwargs["betas"] = tuple(kwargs["betas"])
        return cls(**kwargs, extra={k: v for k, v in values.items() if k not in known})


def best_order(config: LoopConfig, metrics: dict[str, float]) -> tuple[float, ...]:
    """(best_metric, best_tiebreak) of ``metrics``, negated when ``best_mode`` is min, so that
    a larger tuple is a better checkpoint (compared lexicographically).

    Raises:
        KeyError: when ``metrics`` lacks one of them.
        FloatingPointError: when one of them is not finite.
    """
    keys = [k for k in (config.best_metric, config.best_tiebreak) if k]
    missing = [k for k in keys if k not in metrics]
    if missing:
        raise KeyError(f"best metrics {missing} not among validation metrics {sorted(metrics)}")
    if not all(math.isfinite(float(metrics[k])) for k in keys):
        raise FloatingPointError(f"non-finite best metric among {metrics}")
    sign = 1.0 if config.best_mode == "max" else -1.0
    return tuple(sign * float(metrics[k]) for k in keys)


def move_to_device(batch: Any, device: torch.device) -> Any:
    """Move tensors inside dicts/lists/tuples to ``device``; float16 ones arrive as float32.

    float16 in a batch is storage (volumes as ingested, ``VolumeTextDataset(stored_dtype=
    True)``): it crosses to the device at half the bytes and is widened there, exactly.
    """
    if isinstance(batch, torch.Tensor):
        moved = batch.to(device, non_blocking=True)
        return moved.float() if moved.dtype == torch.float16 else moved
    if isinstance(batch, dict):
        return {k: move_to_device(v, device) for k, v in batch.items()}
    if isinstance(batch, list | tuple):
        return type(batch)(move_to_device(v, device) for v in batch)
    return batch


def lr_lambda(max_steps: int, warmup_fraction: float) -> Callable[[int], float]:
    """Linear warm-up over ``ceil(warmup_fraction*max_steps)`` steps, then linear to 0."""
    warmup = math.ceil(warmup_fraction * max_steps)

    def factor(step: int) -> float:
        if warmup > 0 and step < warmup:
            return (step + 1) / warmup
        return max(0.0, (max_steps - step) / max(1, max_steps - warmup))

    return factor


def begin_stage(
    args: argparse.Namespace, stage: str
) -> tuple[dict[str, Any], dict[str, Any], int, torch.device]:
    """Start of a training stage: its resolved config file (``args.config``) with
    ``args.max_steps`` applied, every RNG seeded, the device chosen.

    Returns:
        (payload, its ``stage`` section, seed, device).
    """
    payload = load_stage_config(args.config, stage)
    section, seed = payload[stage], payload["seed"]
    if args.max_steps:
        section["loop"]["max_steps"] = args.max_steps
    seed_everything(seed)
    return payload, section, seed, select_device(payload.get("device", "auto"))

"""Generic training machinery shared by stage 1 and stage 2.

Public API (stable; stage 2 builds on it):

``LoopConfig``
    Dataclass of optimisation and bookkeeping settings (build it with
    ``LoopConfig.from_dict(section["optim"] | section["loop"])`` or by keywords).
    AdamW (``lr``, ``betas``, ``eps``, ``weight_decay``), linear warm-up over
    ``warmup_fraction * max_steps`` then linear decay to 0, ``grad_clip`` (max global norm,
    0 = off), ``grad_accum`` micro-batches per optimizer step, ``amp`` ("auto" = bf16
    autocast on CUDA only, "bf16", "off"), ``checkpoint_every`` / ``eval_every`` /
    ``log_every`` optimizer steps, ``best_metric`` + ``best_mode`` ("max"|"min") to keep
    ``work/best.pt`` (``best_tiebreak``: a second metric, same direction, that decides
    between equal ``best_metric`` values; still equal = the earlier step stays),
    ``tensorboard`` (used when ``torch.utils.tensorboard`` imports).

``Trainer(module, config, out_dir, train_dataset, step_fn, *, collate_fn=None,
evaluate_fn=None, batch_size=1, seed=0, device=cpu, num_workers=0, signature=None,
ddp_kwargs=None, lengths=None)``
    ``step_fn(model, batch) -> (loss, metrics)`` runs one micro-batch forward (inside
    autocast; ``model`` may be the DDP wrapper, ``unwrap(model)`` gives the module) and
    returns a scalar loss tensor and a dict of floats/0-d tensors to log. It may update
    buffers (e.g. a negative queue) under ``torch.no_grad``: buffers live in
    ``module.state_dict()`` and so are checkpointed. ``batch`` arrives already moved to
    ``device`` (tensors inside dicts/lists/tuples).
    ``evaluate_fn(module, step) -> dict[str, float]`` runs on rank 0 only (others wait).
    ``lengths``: one size per training item (e.g. report tokens), needed by
    ``config.bucket_pool`` > 0 (length-bucketed batches, ``EpochBatchSampler``).
    ``signature``: a JSON-able object (e.g. the stage config); a checkpoint written under
    another signature is not resumed (a warning says so and training starts fresh).
    ``Trainer.fit(resume="auto"|"never"|PATH, stop_at_step=None) -> dict`` trains to
    ``max_steps`` and returns ``{"step", "history", "best", "last_checkpoint",
    "best_checkpoint", "samples_per_second", "peak_memory_mb", "elapsed_s"}``;
    ``stop_at_step`` returns early (simulates a killed job, used by tests).

Files under ``out_dir``: ``train_log.jsonl`` (one JSON record per log/eval event, with
``kind`` "train", "valid" or "best": the step, metric and values of each new best),
``tensorboard/`` (optional), ``work/checkpoint.pt`` (latest, atomic: model + optimizer +
scheduler + step + epoch + batch position + per-rank RNG states + best so far) and
``work/best.pt`` (``{"model", "step", "metrics"}``).
Checkpoints load with ``torch.load(..., weights_only=True)``.

Distributed: ``init_distributed()`` reads torchrun (``RANK``/``WORLD_SIZE``/``LOCAL_RANK``)
or srun (``SLURM_PROCID``/``SLURM_NTASKS``/``SLURM_LOCALID``) variables; NCCL on CUDA, gloo
on CPU. With ``world_size > 1`` the module is wrapped in DDP and each rank reads a disjoint
slice of the same global batch (``EpochBatchSampler``), so a 2-rank run with batch b sees
the same global batches as a 1-rank run with batch 2b. Only rank 0 writes files.

Exact resume: the data order is a pure function of (seed, epoch), the sampler restarts at
the saved batch position, and RNG states are restored per rank.
"""

from __future__ import annotations

import json
import logging
import os
import time
from collections.abc import Callable, Sequence
from contextlib import nullcontext
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.distributed as dist
from torch import nn
from torch.utils.data import DataLoader, Dataset

from ctrg.runtime import atomic_path, atomic_write_text, sha256_json
from ctrg.train.distributed import (  # re-exported: part of this module's API
    DistInfo,
    EpochBatchSampler,
    init_distributed,
    peak_memory_mb,
    rng_state,
    set_rng_state,
    unwrap,
)
from ctrg.train.loop_config import (  # LoopConfig, lr_lambda, move_to_device: re-exported
    LoopConfig,
    best_order,
    lr_lambda,
    move_to_device,
)

log = logging.getLogger(__name__)

__all__ = [
    "DistInfo",
    "EpochBatchSampler",
    "LoopConfig",
    "Trainer",
    "init_distributed",
    "lr_lambda",
    "move_to_device",
    "peak_memory_mb",
    "unwrap",
]

StepFn = Callable[[nn.Module, Any], tuple[torch.Tensor, dict[str, Any]]]
EvalFn = Callable[[nn.Module, int], dict[str, float]]


def _scalar(value: Any) -> float:
    return float(value.detach().float().item()) if isinstance(value, torch.Tensor) else float(value)


class Trainer:
    """Runs the optimisation loop, validation, logging, checkpoints and resume (see module doc)."""

    def __init__(
        self,
        module: nn.Module,
        config: LoopConfig,
        out_dir: str | os.PathLike,
        train_dataset: Dataset,
        step_fn: StepFn,
        *,
        collate_fn: Callable | None = None,
        evaluate_fn: EvalFn | None = None,
        batch_size: int = 1,
        seed: int = 0,
        device: torch.device | None = None,
        num_workers: int = 0,
        signature: Any = None,
        ddp_kwargs: dict[str, Any] | None = None,
        lengths: Sequence[int] | None = None,
    ) -> None:
        self.config, self.out_dir = config, Path(out_dir)
        self.device = device or torch.device("cpu")
        self.dist = init_distributed(self.device.type)
        self.module = module.to(self.device)
        self.step_fn, self.evaluate_fn, self.seed = step_fn, evaluate_fn, seed
        self.signature = sha256_json({"signature": signature, "loop": asdict(config)})
        self.model: nn.Module = self.module
        if self.dist.world_size > 1:
            kwargs = {"broadcast_buffers": False, **(ddp_kwargs or {})}
            ids = [self.device.index] if self.device.type == "cuda" else None
            self.model = nn.parallel.DistributedDataParallel(self.module, device_ids=ids, **kwargs)
        self.sampler = EpochBatchSampler(
            len(train_dataset), batch_size, seed, self.dist, lengths, config.bucket_pool
        )
        self.loader = DataLoader(
            train_dataset,
            batch_sampler=self.sampler,
            collate_fn=collate_fn,
            num_workers=num_workers,
            pin_memory=self.device.type == "cuda",
        )
        params = [p for p in self.module.parameters() if p.requires_grad]
        decay = [p for p in params if p.ndim >= 2]
        no_decay = [p for p in params if p.ndim < 2]
        self.optimizer = torch.optim.AdamW(
            [
                {"params": decay, "weight_decay": config.weight_decay},
                {"params": no_decay, "weight_decay": 0.0},
            ],
            lr=config.lr,
            betas=config.betas,
            eps=config.eps,
        )
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(
            self.optimizer, lr_lambda(config.max_steps, config.warmup_fraction)
        )
        self.step = self.epoch = self.batch_in_epoch = 0
        self.best: dict[str, Any] = {}
        self.history: list[dict[str, Any]] = []
        self.work = self.out_dir / "work"
        self.log_path = self.out_dir / "train_log.jsonl"
        self._tb = None
        self._grad_norm = 0.0  # of the last optimizer step (logged)

    # ----------------------------------------------------------------- checkpoints
    def _autocast(self):  # type: ignore[no-untyped-def]
        use = self.config.amp == "bf16" or (
            self.config.amp == "auto" and self.device.type == "cuda"
        )
        if not use:
            return nullcontext()
        return torch.autocast(self.device.type, dtype=torch.bfloat16)

    def _gather_rng(self) -> list[dict[str, Any]]:
        state = rng_state()
        if self.dist.world_size == 1:
            return [state]
        states: list[Any] = [None] * self.dist.world_size
        dist.all_gather_object(states, state)
        return states

    def save_checkpoint(self) -> Path:
        """Write ``work/checkpoint.pt`` atomically (rank 0); all ranks must call it."""
        rngs = self._gather_rng()
        path = self.work / "checkpoint.pt"
        if self.dist.is_main:
            payload = {
                "model": self.module.state_dict(),
                "optimizer": self.optimizer.state_dict(),
                "scheduler": self.scheduler.state_dict(),
                "step": self.step,
                "epoch": self.epoch,
                "batch_in_epoch": self.batch_in_epoch,
                "rng": rngs,
                "best": self.best,
                "history": self.history,
                "signature": self.signature,
                "world_size": self.dist.world_size,
            }
            with atomic_path(path) as tmp:
                torch.save(payload, tmp)
        return path

    def _resume_path(self, resume: str | None) -> Path | None:
        if resume in (None, "never"):
            return None
        path = self.work / "checkpoint.pt" if resume == "auto" else Path(resume)
        if not path.exists():
            if resume != "auto":
                raise FileNotFoundError(f"--resume {resume}: no checkpoint at {path}")
            return None
        return path

    def load_checkpoint(self, path: Path) -> bool:
        """Restore everything from ``path``; False (with a warning) on a signature mismatch."""
        state = torch.load(path, map_location=self.device, weights_only=True)
        if state.get("signature") != self.signature:
            log.warning("%s was written under another configuration: starting fresh", path)
            return False
        self.module.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        self.step, self.epoch = state["step"], state["epoch"]
        self.batch_in_epoch = state["batch_in_epoch"]
        self.best, self.history = state["best"], state["history"]
        rngs = state["rng"]
        if len(rngs) != self.dist.world_size:
            log.warning(
                "checkpoint from %d ranks, now %d: RNG states reseeded",
                len(rngs),
                self.dist.world_size,
            )
            torch.manual_seed(self.seed + 7919 * self.step + self.dist.rank)
        else:
            set_rng_state(rngs[self.dist.rank])
        log.info(
            "resumed from %s at step %d (epoch %d, batch %d)",
            path,
            self.step,
            self.epoch,
            self.batch_in_epoch,
        )
        return True

    # ----------------------------------------------------------------- logging
    def _open_log(self, resumed: bool) -> None:
        if not self.dist.is_main:
            return
        kept = []
        if resumed and self.log_path.exists():
            for line in self.log_path.read_text().splitlines():
                if line.strip() and json.loads(line).get("step", 0) <= self.step:
                    kept.append(line)
        atomic_write_text(self.log_path, "".join(f"{line}\n" for line in kept))
        if self.config.tensorboard:
            try:
                from torch.utils.tensorboard import SummaryWriter
            except ImportError:
                log.info("tensorboard not installed: JSONL log only")
            else:
                self._tb = SummaryWriter(str(self.out_dir / "tensorboard"), purge_step=self.step)

    def _record(self, kind: str, values: dict[str, Any]) -> None:
        if not self.dist.is_main:
            return
        record = {"kind": kind, "step": self.step, "epoch": self.epoch, **values}
        with open(self.log_path, "a", encoding="utf-8") as handle:
            handle.write(json.dumps(record, sort_keys=True) + "\n")
        if kind == "valid":
            self.history.append(record)
        if self._tb is not None:
            for key, value in values.items():
                if isinstance(value, int | float):
                    self._tb.add_scalar(f"{kind}/{key}", value, self.step)

    # ----------------------------------------------------------------- evaluation
    def _evaluate(self) -> None:
        if self.evaluate_fn is not None and self.dist.is_main:
            self.module.eval()
            with torch.no_grad(), self._autocast():
                metrics = self.evaluate_fn(self.module, self.step)
            self.module.train()
            self._record("valid", metrics)
            self._maybe_save_best(metrics)
        if self.dist.world_size > 1:
            dist.barrier()

    def _maybe_save_best(self, metrics: dict[str, float]) -> None:
        """Keep ``work/best.pt`` (and log a "best" record) when ``metrics`` beat the best so far.

        Compared lexicographically on (best_metric, best_tiebreak) in the direction of
        ``best_mode``; on a full tie the earlier step stays best.
        """
        key, tiebreak = self.config.best_metric, self.config.best_tiebreak
        if key is None:
            return
        ordered = best_order(self.config, metrics)
        if self.best:
            previous = {key: self.best["value"]}
            if tiebreak:
                previous[tiebreak] = self.best["tiebreak_value"]
            if ordered <= best_order(self.config, previous):
                return
        values = {k: float(metrics[k]) for k in (key, tiebreak) if k}
        self.best = {"metric": key, "value": values[key], "step": self.step}
        if tiebreak:
            self.best.update(tiebreak=tiebreak, tiebreak_value=values[tiebreak])
        with atomic_path(self.work / "best.pt") as tmp:
            state = {"model": self.module.state_dict(), "step": self.step}
            torch.save({**state, "metrics": dict(metrics)}, tmp)
        names = {"metric": key, **({"tiebreak": tiebreak} if tiebreak else {})}
        self._record("best", {**names, **values})

    # ----------------------------------------------------------------- training
    def _micro_batch(self, batch: Any, sync: bool) -> dict[str, float]:
        context = nullcontext()
        if not sync and isinstance(self.model, nn.parallel.DistributedDataParallel):
            context = self.model.no_sync()
        with context:
            with self._autocast():
                loss, metrics = self.step_fn(self.model, move_to_device(batch, self.device))
            if not torch.isfinite(loss):
                raise FloatingPointError(f"non-finite loss {loss.item()} at step {self.step}")
            (loss / self.config.grad_accum).backward()
        return {"loss": _scalar(loss), **{k: _scalar(v) for k, v in metrics.items()}}

    def _optimizer_step(self) -> float:
        grad_norm = 0.0
        if self.config.grad_clip > 0:
            grad_norm = float(
                nn.utils.clip_grad_norm_(self.module.parameters(), self.config.grad_clip)
            )
        self.optimizer.step()
        self.scheduler.step()
        self.optimizer.zero_grad(set_to_none=True)
        self.step += 1
        return grad_norm

    def _log_train(self, window: list[dict[str, float]], samples: int, since: float) -> None:
        """One "train" record: the window's mean metrics, lr, last grad norm, throughput."""
        mean = {k: float(np.mean([w[k] for w in window])) for k in window[0]}
        rate = samples / max(time.perf_counter() - since, 1e-9)
        lr, norm = self.scheduler.get_last_lr()[0], self._grad_norm
        self._record("train", {**mean, "lr": lr, "grad_norm": norm, "samples_per_second": rate})

    def _evaluate_and_save(self) -> None:
        """Validate and checkpoint when the step is due (always at the last step)."""
        last = self.step == self.config.max_steps
        if self.step % self.config.eval_every == 0 or last:
            self._evaluate()
        if self.step % self.config.checkpoint_every == 0 or last:
            self.save_checkpoint()

    def _result(self, trained: int, elapsed: float) -> dict[str, Any]:
        """The dict ``fit`` returns (module doc)."""
        per_step = self.sampler.global_batch * self.config.grad_accum
        return {
            "step": self.step,
            "history": self.history,
            "best": self.best,
            "last_checkpoint": str(self.work / "checkpoint.pt"),
            "best_checkpoint": str(self.work / "best.pt") if self.best else None,
            "samples_per_second": trained * per_step / elapsed if trained > 0 else None,
            "peak_memory_mb": peak_memory_mb(self.device),
            "elapsed_s": elapsed,
        }

    def fit(self, resume: str | None = "auto", stop_at_step: int | None = None) -> dict[str, Any]:
        """Train to ``config.max_steps`` (see module doc for the returned dict)."""
        path = self._resume_path(resume)
        resumed = path is not None and self.load_checkpoint(path)
        if not resumed:
            torch.manual_seed(self.seed + self.dist.rank)
        self._open_log(resumed)
        self.module.train()
        start_step, started = self.step, time.perf_counter()
        window: list[dict[str, float]] = []
        window_start, samples = time.perf_counter(), 0
        micro, done = 0, self.step >= self.config.max_steps
        while not done:
            self.sampler.set_position(self.epoch, self.batch_in_epoch)
            if hasattr(self.loader.dataset, "set_epoch"):
                self.loader.dataset.set_epoch(self.epoch)
            for batch in self.loader:
                micro += 1
                sync = micro % self.config.grad_accum == 0
                window.append(self._micro_batch(batch, sync))
                samples += self.sampler.global_batch
                self.batch_in_epoch += 1
                if not sync:
                    continue
                self._grad_norm = self._optimizer_step()
                if self.step % self.config.log_every == 0 or self.step == self.config.max_steps:
                    self._log_train(window, samples, window_start)
                    window, window_start, samples = [], time.perf_counter(), 0
                self._evaluate_and_save()
                if self.step >= self.config.max_steps or self.step == stop_at_step:
                    done = True
                    break
            else:
                self.epoch, self.batch_in_epoch = self.epoch + 1, 0
        if self._tb is not None:
            self._tb.close()
        return self._result(self.step - start_step, time.perf_counter() - started)

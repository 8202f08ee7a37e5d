"""Distributed setup, the resumable batch sampler and RNG snapshots (used by ``loop``)."""

from __future__ import annotations

import os
import random
import resource
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import numpy as np
import torch
import torch.distributed as dist
from torch import nn
from torch.utils.data import Sampler


@dataclass
class DistInfo:
    """Process-group facts: rank, world size, local rank."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def init_distributed(device_kind: str = "cpu") -> DistInfo:
    """Initialise torch.distributed from torchrun or srun variables when world size > 1."""
    env = os.environ
    if "WORLD_SIZE" in env:
        world, rank = int(env["WORLD_SIZE"]), int(env.get("RANK", 0))
        local = int(env.get("LOCAL_RANK", 0))
    elif int(env.get("SLURM_NTASKS", "1")) > 1 and "SLURM_PROCID" in env:
        world, rank = int(env["SLURM_NTASKS"]), int(env["SLURM_PROCID"])
        local = int(env.get("SLURM_LOCALID", 0))
        env.setdefault("MASTER_ADDR", env.get("SLURM_LAUNCH_NODE_IPADDR", "127.0.0.1"))
        env.setdefault("MASTER_PORT", str(20000 + int(env.get("SLURM_JOB_ID", "0")) % 20000))
    else:
        return DistInfo()
    if world > 1 and not dist.is_initialized():
        backend = "nccl" if device_kind == "cuda" else "gloo"
        # long timeout: rank 0 validates alone while the others wait at a barrier
        dist.init_process_group(
            backend=backend, rank=rank, world_size=world, timeout=timedelta(hours=2)
        )
    return DistInfo(rank=rank, world_size=world, local_rank=local)


def unwrap(model: nn.Module) -> nn.Module:
    """The module inside a DDP wrapper (or the module itself)."""
    return model.module if isinstance(model, nn.parallel.DistributedDataParallel) else model


class EpochBatchSampler(Sampler[list[int]]):
    """Batches of indices from a per-epoch permutation, sliced per rank, resumable.

    Global batch t of epoch e is ``perm_e[t*W*b : (t+1)*W*b]``; rank r takes its r-th
    chunk of ``b``. ``perm_e`` depends only on (seed, e). Incomplete global batches are
    dropped.

    With ``bucket_pool`` P > 0 and per-item ``lengths`` (e.g. report tokens), each run of
    P global batches of ``perm_e`` is sorted by length (stable) before it is cut, and the
    epoch's global batches are then shuffled (seeded by (seed, e)), so a batch holds items
    of similar length and pads less; every item is still seen once per epoch. P = 1 keeps
    the batches of the unbucketed order (only their order changes).
    """

    def __init__(
        self,
        size: int,
        batch_size: int,
        seed: int,
        dist_info: DistInfo,
        lengths: Sequence[int] | None = None,
        bucket_pool: int = 0,
    ) -> None:
        self.size, self.batch_size, self.seed, self.dist = size, batch_size, seed, dist_info
        self.global_batch = batch_size * dist_info.world_size
        if size < self.global_batch:
            raise ValueError(
                f"training set has {size} cases, fewer than one global batch "
                f"({batch_size} x {dist_info.world_size} ranks)"
            )
        if bucket_pool < 0:
            raise ValueError(f"bucket_pool must be >= 0, got {bucket_pool}")
        if bucket_pool and (lengths is None or len(lengths) != size):
            raise ValueError(
                f"bucket_pool {bucket_pool} needs one length per training item ({size}), "
                f"got {None if lengths is None else len(lengths)}"
            )
        self.lengths = None if lengths is None else [int(n) for n in lengths]
        self.bucket_pool = bucket_pool
        self.epoch, self.start_batch = 0, 0

    def set_position(self, epoch: int, start_batch: int) -> None:
        self.epoch, self.start_batch = epoch, start_batch

    def __len__(self) -> int:
        return self.size // self.global_batch - self.start_batch

    def global_batches(self) -> list[list[int]]:
        """All global batches of the current epoch, in order (the same on every rank)."""
        generator = torch.Generator().manual_seed(self.seed * 1_000_003 + self.epoch)
        perm = torch.randperm(self.size, generator=generator).tolist()
        count, width = self.size // self.global_batch, self.global_batch
        if not self.bucket_pool:
            return [perm[t * width : (t + 1) * width] for t in range(count)]
        assert self.lengths is not None
        kept, pool = perm[: count * width], self.bucket_pool * width
        batches = []
        for start in range(0, len(kept), pool):
            chunk = sorted(kept[start : start + pool], key=self.lengths.__getitem__)
            batches += [chunk[i : i + width] for i in range(0, len(chunk), width)]
        order = torch.randperm(len(batches), generator=generator).tolist()
        return [batches[t] for t in order]

    def __iter__(self) -> Iterator[list[int]]:
        offset = self.dist.rank * self.batch_size
        for batch in self.global_batches()[self.start_batch :]:
            yield batch[offset : offset + self.batch_size]


def rng_state() -> dict[str, Any]:
    """RNG states of Python, NumPy and torch as weights_only-loadable objects."""
    np_state = np.random.get_state()
    state = {
        "python": list(random.getstate()[1]),
        "python_gauss": random.getstate()[2],
        "numpy": torch.from_numpy(np_state[1].astype(np.int64)),
        "numpy_pos": int(np_state[2]),
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    """Inverse of :func:`rng_state`."""
    random.setstate((3, tuple(state["python"]), state["python_gauss"]))
    np.random.set_state(("MT19937", state["numpy"].numpy().astype(np.uint32), state["numpy_pos"]))
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state(state["cuda"])


def peak_memory_mb(device: torch.device) -> float:
    """Peak GPU memory allocated (CUDA) or peak resident set size of this process (CPU)."""
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024

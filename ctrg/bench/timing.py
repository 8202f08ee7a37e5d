"""Measuring helpers of ``ctrg bench speed``: peak memory, median wall time, autocast, machine.

Kept apart from the stage measurements so that other benchmarks can time and describe the
machine the same way.
"""

from __future__ import annotations

import contextlib
import os
import statistics
import time
from collections.abc import Callable, Iterator
from typing import Any

import torch

from ctrg.bench.preprocess import PeakRSS
from ctrg.runtime import provenance

MB = 2**20


@contextlib.contextmanager
def peak_memory(device: torch.device) -> Iterator[dict[str, Any]]:
    """Peak memory over the block in ``found["bytes"]``: CUDA ``max_memory_allocated``
    (everything allocated), CPU the peak RSS increase (``ctrg.bench.preprocess.PeakRSS``)."""
    found: dict[str, Any] = {"kind": "peak RSS increase", "bytes": 0}
    if device.type != "cuda":
        with PeakRSS() as rss:
            yield found
        found["bytes"] = rss.extra
        return
    found["kind"] = "cuda max_memory_allocated"
    torch.cuda.synchronize(device)
    torch.cuda.reset_peak_memory_stats(device)
    yield found
    torch.cuda.synchronize(device)
    found["bytes"] = torch.cuda.max_memory_allocated(device)


def median_seconds(fn: Callable[[], object], repeats: int, device: torch.device) -> float:
    """Median wall time of ``repeats`` calls (CUDA synchronised around each)."""
    times = []
    for _ in range(repeats):
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        start = time.perf_counter()
        fn()
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def amp_enabled(amp: str, device: torch.device) -> bool:
    """Whether ``ctrg.train.loop.Trainer`` autocasts to bf16 (``auto`` = on CUDA only)."""
    return amp == "bf16" or (amp == "auto" and device.type == "cuda")


def autocast(amp: str, device: torch.device) -> contextlib.AbstractContextManager:
    """bf16 autocast when :func:`amp_enabled`, else a no-op context."""
    if amp_enabled(amp, device):
        return torch.autocast(device.type, dtype=torch.bfloat16)
    return contextlib.nullcontext()


def machine_info(device: torch.device) -> dict[str, Any]:
    """Cores, torch threads and version, device name, git revision and versions."""
    facts = provenance()
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else facts["cpu"]
    return {
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "device": str(device),
        "device_name": name,
        "git_revision": facts["git_revision"],
        "platform": facts["platform"],
        "versions": facts["versions"],
    }


def top_operators(
    fn: Callable[[], object], calls: int, device: torch.device, rows: int = 12
) -> str:
    """torch.profiler table of the operators that took most device (CUDA) or CPU time."""
    from torch.profiler import ProfilerActivity, profile

    activities = [ProfilerActivity.CPU]
    if device.type == "cuda":
        activities.append(ProfilerActivity.CUDA)
    with profile(activities=activities) as prof:
        for _ in range(calls):
            fn()
        if device.type == "cuda":
            torch.cuda.synchronize(device)
    key = "self_cuda_time_total" if device.type == "cuda" else "self_cpu_time_total"
    return prof.key_averages().table(sort_by=key, row_limit=rows, max_name_column_width=60)

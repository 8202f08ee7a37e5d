"""Provenance: what every summary and checkpoint records about the code and the host."""

from __future__ import annotations

import platform

import torch

from ctrg.runtime import cpu_facts, provenance


def test_provenance_records_cpu_and_kernel_level() -> None:
    facts = provenance()
    assert facts["versions"]["torch"] == torch.__version__
    assert facts["versions"]["numpy"]
    assert facts["cpu_count"] >= 1
    assert facts["cpu"]
    # torch is imported here, so its CPU kernel level is recorded, and it is one torch knows.
    assert facts["torch_cpu_capability"] == torch.backends.cpu.get_cpu_capability()
    assert facts["torch_cpu_capability"] in {
        "NO AVX",
        "DEFAULT",
        "AVX2",
        "AVX512",
        "ZVECTOR",
        "VSX",
    }


def test_cpu_facts_match_cpuinfo() -> None:
    lines = open("/proc/cpuinfo").read().splitlines()
    names = [line.split(":", 1)[1].strip() for line in lines if line.startswith("model name")]
    if names:  # x86 Linux; other platforms fall back to platform.processor()
        assert cpu_facts()["cpu"] == names[0]
    else:
        assert cpu_facts()["cpu"] == (platform.processor() or "unknown")

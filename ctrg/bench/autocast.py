"""``ctrg bench autocast``: the stage-1 training step in fp32 and in bf16 autocast, same process.

Three settings of one configuration (``--configfile``; the paper scale is
``config.yaml presets/ctrate.yaml``), each a fresh model and AdamW timed over ``--steps``
steps (median) by ``ctrg.bench.speed.bench_stage1``:

- ``fp32``: no autocast (what ``amp: off`` trains);
- ``bf16``: autocast as ``amp: auto`` trains on CUDA, with the PEG depthwise convolutions in
  fp32 (``ctrg.models.vision.PositionGenerator``, the default);
- ``bf16, PEG autocast``: the same with the depthwise convolutions left to autocast (bf16),
  the slow path that ctrg took before 2026-12-04.

Ratios are against ``fp32``. ``--profile N`` prints the costliest operators of N steps of each
bf16 setting. Numbers are printed and written, never asserted.
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path
from typing import Any

from ctrg.bench.speed import Setup, bench_stage1
from ctrg.bench.timing import machine_info
from ctrg.config import load_config_files
from ctrg.models.vision import PositionGenerator
from ctrg.runtime import atomic_write_json, select_device, setup_logging

log = logging.getLogger(__name__)

SETTINGS: tuple[tuple[str, str, bool], ...] = (  # (name, amp, PEG conv in fp32)
    ("fp32", "off", True),
    ("bf16", "bf16", True),
    ("bf16, PEG autocast", "bf16", False),
)


def measure(setup: Setup, profile: int) -> list[dict[str, Any]]:
    """One row per ``SETTINGS`` entry: step seconds, volumes/s, peak memory (, profile)."""
    rows = []
    for name, amp, peg_fp32 in SETTINGS:
        PositionGenerator.conv_in_weight_dtype = peg_fp32
        try:
            result = bench_stage1(setup, amp=amp, profile=profile if amp != "off" else 0)
        finally:
            PositionGenerator.conv_in_weight_dtype = True
        rows.append({"setting": name, **result})
        log.info("%s: %.4f s per step", name, result["step_s"])
    return rows


def table(rows: list[dict[str, Any]]) -> str:
    """Markdown table with step-time and memory ratios to the first (fp32) row."""
    base = rows[0]
    lines = [
        "| setting | step (median) | volumes/s | peak memory | time / fp32 | memory / fp32 |",
        "|---|---|---|---|---|---|",
    ]
    for row in rows:  # a CPU peak is an RSS increase, which can be 0 (memory reused)
        memory = f"{row['peak_mb'] / base['peak_mb']:.2f}x" if base["peak_mb"] > 0 else "n/a"
        lines.append(
            f"| {row['setting']} | {row['step_s']:.4f} s | {row['volumes_per_s']:.2f} | "
            f"{row['peak_mb']:.0f} MB | {row['step_s'] / base['step_s']:.2f}x | {memory} |"
        )
    return "\n".join(lines) + "\n"


def main(argv: list[str]) -> int:
    """Measure the three settings, print the table (and profiles), write ``--out-json``."""
    parser = argparse.ArgumentParser(
        prog="ctrg bench autocast", description=__doc__.splitlines()[0]
    )
    parser.add_argument("--configfile", type=Path, nargs="+", default=[Path("config.yaml")])
    parser.add_argument("--device", default="auto", help="auto | cpu | cuda[:N]")
    parser.add_argument("--batch-size", type=int, default=None, help="default: stage1 config")
    parser.add_argument("--steps", type=int, default=20, help="timed steps per setting")
    parser.add_argument("--profile", type=int, default=0, help="profiled steps per bf16 setting")
    parser.add_argument("--out-json", type=Path, default=Path("results/bench/autocast.json"))
    parser.add_argument("--log-level", default="INFO")
    args = parser.parse_args(argv)
    if args.steps < 1 or args.profile < 0:
        parser.error("--steps must be >= 1 and --profile >= 0")
    setup_logging(args.log_level)
    setup = Setup.from_sections(
        load_config_files(args.configfile),
        select_device(args.device),
        batch_size=args.batch_size,
        repeats=1,
        train_steps=args.steps,
    )
    rows = measure(setup, args.profile)
    for row in rows:
        if "profile" in row:
            print(f"\n{row['setting']}: costliest operators over {args.profile} steps\n")
            print(row["profile"])
    text = table(rows)
    print(text, end="")
    out = {"machine": machine_info(setup.device), "configfile": args.configfile, "rows": rows}
    atomic_write_json(args.out_json, out)
    return 0

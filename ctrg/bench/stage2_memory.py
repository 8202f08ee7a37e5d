"""``ctrg bench stage2-memory``: one stage-2 training step, selected patches vs all patches.

Same decoder (the ``stage2`` config's sizes), same batch, same report length, same process;
only the number of visual tokens changes: ``S + S*(1+k)`` (patch selection, 110 for S=10,
k=9) against ``S + N`` (every patch token: the default model's N and the paper's 4,096).
Visual tokens and report ids are synthetic (random), which does not change the cost.

Measured per setting: the median wall time of a full training step (forward, backward,
AdamW update) over ``--repeats`` steps after one warm-up step, and the peak memory allocated
during one step above what was allocated before it (CUDA: ``torch.cuda.max_memory_allocated``;
CPU: the running sum of the profiler's allocation/free events, i.e. tensors only, without
allocator caching). Printed as a table with ratios to the selected setting.

``--attention math`` forces PyTorch's unfused attention (the L x T probability matrices are
materialised, as in eager Hugging Face attention or with attention dropout); the default
``auto`` lets PyTorch pick its fused kernel, as the decoder does in training.
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path
from typing import Any

import torch

from ctrg.config import load_stage_config
from ctrg.features.select import assemble_visual_tokens
from ctrg.models.decoder import DecoderConfig, ReportDecoder, teacher_forced_loss
from ctrg.runtime import atomic_write_json, select_device, setup_logging


def _inputs(mode: str, args: argparse.Namespace, patches: int, device: torch.device):
    generator = torch.Generator().manual_seed(0)
    observation = torch.randn(
        args.batch_size, args.structures, args.visual_dim, generator=generator
    )
    shape = (
        (args.batch_size, args.structures, args.top_k, args.visual_dim)
        if mode == "selected"
        else (args.batch_size, patches, args.visual_dim)
    )
    visual = assemble_visual_tokens(observation, torch.randn(*shape, generator=generator), mode)
    ids = torch.randint(
        4, args.vocab_size, (args.batch_size, args.report_tokens), generator=generator
    )
    ids[:, 0] = 2
    return visual.to(device), ids.to(device)


def _step(
    model: ReportDecoder, optimizer: torch.optim.Optimizer, visual: Any, ids: torch.Tensor
) -> None:
    loss = teacher_forced_loss(model, visual, ids, pad_id=0)
    loss.backward()
    optimizer.step()
    optimizer.zero_grad(set_to_none=True)


def _cpu_peak_bytes(run: Any) -> int:
    """Peak of allocated-minus-freed tensor bytes during ``run()`` (profiler memory events)."""
    from torch.profiler import ProfilerActivity, profile

    with profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
        run()
    events = [e for e in prof.profiler.kineto_results.events() if e.name() == "[memory]"]
    events.sort(key=lambda e: e.start_ns())
    current = peak = 0
    for event in events:
        if str(event.device_type()).endswith("CPU"):
            current += event.nbytes()
            peak = max(peak, current)
    return peak


def measure(
    mode: str, patches: int, args: argparse.Namespace, cfg: DecoderConfig, device: torch.device
) -> dict[str, Any]:
    """Step time and peak step memory for one visual-token setting."""
    torch.manual_seed(0)
    model = ReportDecoder(cfg).to(device).train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4)
    visual, ids = _inputs(mode, args, patches, device)
    _step(model, optimizer, visual, ids)  # warm-up: optimizer state exists from here on
    times = []
    for _ in range(args.repeats):
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        started = time.perf_counter()
        _step(model, optimizer, visual, ids)
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        times.append(time.perf_counter() - started)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
        before = torch.cuda.memory_allocated(device)
        _step(model, optimizer, visual, ids)
        peak = torch.cuda.max_memory_allocated(device) - before
    else:
        peak = _cpu_peak_bytes(lambda: _step(model, optimizer, visual, ids))
    return {
        "setting": mode if mode == "selected" else f"all ({patches} patches)",
        "visual_tokens": int(visual.tokens.shape[1]),
        "step_s": statistics.median(times),
        "peak_mb": peak / 2**20,
    }


def _attention_backend(kind: str) -> Any:
    """Context that forces the unfused attention for ``math`` (no-op for ``auto``)."""
    from contextlib import nullcontext

    from torch.nn.attention import SDPBackend, sdpa_kernel

    return sdpa_kernel(SDPBackend.MATH) if kind == "math" else nullcontext()


def print_table(rows: list[dict[str, Any]], header: str) -> None:
    """The benchmark's printed output (ratios against the first row)."""
    base = rows[0]
    print(header)
    print(
        f"{'setting':<22}{'visual tokens':>14}{'step s':>10}{'peak MB':>10}"
        f"{'time x':>9}{'memory x':>10}"
    )
    for row in rows:
        print(
            f"{row['setting']:<22}{row['visual_tokens']:>14}{row['step_s']:>10.3f}"
            f"{row['peak_mb']:>10.1f}{row['step_s'] / base['step_s']:>9.2f}"
            f"{row['peak_mb'] / base['peak_mb']:>10.2f}"
        )


def parse_args(argv: list[str]) -> argparse.Namespace:
    """The command line of ``ctrg bench stage2-memory``."""
    parser = argparse.ArgumentParser(
        prog="ctrg bench stage2-memory", description=__doc__.splitlines()[0]
    )
    parser.add_argument("--config", type=Path, default=None, help="resolved stage2.json")
    parser.add_argument(
        "--patches",
        type=int,
        nargs="+",
        default=[216, 4096],
        help="patch counts N of the all-patches settings",
    )
    parser.add_argument("--structures", type=int, default=10)
    parser.add_argument("--top-k", type=int, default=9)
    parser.add_argument("--visual-dim", type=int, default=128, help="C of the visual tokens")
    parser.add_argument("--batch-size", type=int, default=None, help="default: stage2 config")
    parser.add_argument("--report-tokens", type=int, default=256)
    parser.add_argument("--vocab-size", type=int, default=2000)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--device", default="cpu", help="cpu | cuda | auto")
    parser.add_argument(
        "--attention",
        choices=["auto", "math"],
        default="auto",
        help="attention kernel: PyTorch's choice (fused) or unfused math",
    )
    parser.add_argument("--threads", type=int, default=0, help="torch CPU threads (0 = default)")
    parser.add_argument("--json", type=Path, default=None, help="also write the rows as JSON")
    return parser.parse_args(argv)


def main(argv: list[str]) -> int:
    """Run the benchmark and print the table."""
    args = parse_args(argv)
    setup_logging("WARNING")
    if args.threads:
        torch.set_num_threads(args.threads)
    section = load_stage_config(args.config, "stage2")["stage2"]
    args.batch_size = args.batch_size or section["batch_size"]
    device = select_device(args.device)
    cfg = DecoderConfig(
        vocab_size=args.vocab_size,
        visual_dim=args.visual_dim,
        num_structures=args.structures,
        max_length=args.report_tokens,
        **section["decoder"],
    )
    with _attention_backend(args.attention):
        rows = [measure("selected", 0, args, cfg, device)]
        rows += [measure("all", n, args, cfg, device) for n in args.patches]
    header = (
        f"stage-2 step, decoder {cfg.num_layers}x{cfg.d_model} (heads {cfg.num_heads}, "
        f"ff {cfg.ff_dim}), batch {args.batch_size}, {args.report_tokens} report tokens, "
        f"C={args.visual_dim}, device {device}, torch threads {torch.get_num_threads()}"
    )
    print_table(rows, header)
    if args.json:
        atomic_write_json(args.json, {"header": header, "rows": rows})
    return 0

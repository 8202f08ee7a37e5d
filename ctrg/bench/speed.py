"""``ctrg bench speed``: throughput, latency and peak memory of every stage, in one table.

One process, random inputs of the configured sizes (schema defaults, or a run's resolved
``results/<run>/configs/<stage>.json`` via ``--stage1-config`` and friends). ``machine``:
cores, threads, torch, device, git revision. ``preprocess``: ctrg vs MONAI volumes/s
(``ctrg.bench.preprocess.bench_target``). ``stage1``: median AdamW step with the real loss
and a full negative queue, and the peak memory of model build + first step (CUDA
``max_memory_allocated``; CPU peak RSS increase, after a throwaway step has paid torch's
one-time costs). ``stage2``: a selected-patch decoder step (``ctrg.bench.stage2_memory``).
``extract``: frozen ``encode_volume`` + top-k (``ctrg.features.extract.extract_batch``).
``inference``: an *untrained* decoder with EOS banned decodes one report to the length cap
(the worst case), plus the encode time. ``llm`` (``--llm``): the authors' LoRA LLaMA decoder
at its real shape with random weights (``ctrg.bench.llm_speed``). ``pipeline``: Snakemake's
``benchmarks/**/*.tsv`` of the last run (``ctrg.bench.snakemake_times``). On CUDA training
steps use bf16 autocast (as ``amp: auto``); ``--amp-baseline`` times them in fp32 too, in the
same process. ``--configfile config.yaml presets/ctrate.yaml`` measures the paper scale.
Numbers are printed and written, never asserted.
"""

from __future__ import annotations

import argparse
import logging
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ctrg.bench import preprocess, stage2_memory
from ctrg.bench.llm_speed import LLM_CHOICES, bench_llm
from ctrg.bench.setup import (  # Setup and the constants: re-exported
    BOS_ID,
    CONFIG_STAGES,
    EOS_ID,
    NUM_STRUCTURES,
    PAD_ID,
    TEXT_DIM,
    Setup,
    build_stage1,
    prime_torch,
)
from ctrg.bench.snakemake_times import read_pipeline_benchmarks
from ctrg.bench.speed_table import SECTIONS, markdown_table, table_rows
from ctrg.bench.timing import (
    MB,
    amp_enabled,
    autocast,
    machine_info,
    median_seconds,
    peak_memory,
    top_operators,
)
from ctrg.config import load_config_files, load_stage_config
from ctrg.features.extract import extract_batch
from ctrg.features.select import assemble_visual_tokens
from ctrg.models.decoder import DecoderConfig, ReportDecoder
from ctrg.models.generation import GenerationConfig, generate_ids
from ctrg.runtime import (
    atomic_write_json,
    atomic_write_text,
    select_device,
    setup_logging,
)

log = logging.getLogger(__name__)


def bench_stage1(setup: Setup, amp: str | None = None, profile: int = 0) -> dict[str, Any]:
    """Median AdamW step (forward + real loss, backward, clip, step) and peak memory.

    ``amp`` overrides ``stage1.loop.amp`` (``"off"``: the fp32 baseline). ``profile`` > 0:
    also profile that many steps; ``result["profile"]`` lists the costliest operators.
    """
    torch.manual_seed(0)
    section, device, batch = setup.stage1, setup.device, setup.batch_size
    shape = tuple(section["model"]["volume_shape"])
    volume = torch.randn(batch, 1, *shape, device=device)  # (B, 1, D, H, W)
    text_features = torch.randn(batch, NUM_STRUCTURES, TEXT_DIM, device=device)  # (B, S, H)
    report_features = torch.randn(batch, TEXT_DIM, device=device)  # (B, H)
    optim, amp = section["optim"], amp or section["loop"]["amp"]

    def step() -> None:
        with autocast(amp, device):
            loss, _ = model(volume, text_features, report_features)
        if not torch.isfinite(loss):
            raise FloatingPointError(f"stage-1 loss is {loss.item()}")
        loss.backward()
        if optim["grad_clip"] > 0:
            torch.nn.utils.clip_grad_norm_(model.parameters(), optim["grad_clip"])
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    prime_torch(section, device)
    with peak_memory(device) as memory:
        model = build_stage1(section, device).train()
        hyper = {key: optim[key] for key in ("lr", "eps", "weight_decay")}
        optimizer = torch.optim.AdamW(model.parameters(), betas=tuple(optim["betas"]), **hyper)
        step()  # warm-up: optimizer state exists from here on
    seconds = median_seconds(step, setup.train_steps, device)
    extra = {"profile": top_operators(step, profile, device)} if profile else {}
    return {
        **extra,
        "volume_shape": list(shape),
        "batch_size": batch,
        "parameters": sum(p.numel() for p in model.parameters()),
        "step_s": seconds,
        "volumes_per_s": batch / seconds,
        "peak_mb": memory["bytes"] / MB,
        "memory_kind": memory["kind"],
        "amp": "bf16" if amp_enabled(amp, device) else "off",
        "steps": setup.train_steps,
    }


def _decoder_config(stage2: dict[str, Any], visual_dim: int) -> DecoderConfig:
    """The default transformer decoder's sizes, as ``ctrg stage2`` builds them."""
    return DecoderConfig(
        vocab_size=stage2["tokenizer"]["vocab_size"],
        visual_dim=visual_dim,
        num_structures=NUM_STRUCTURES,
        max_length=stage2["max_report_tokens"],
        pad_id=PAD_ID,
        **stage2["decoder"],
    )


def bench_stage2(setup: Setup, amp: str | None = None) -> dict[str, Any]:
    """One selected-patch decoder training step (``ctrg.bench.stage2_memory.measure``).

    ``amp`` overrides ``stage2.optim.amp`` (``"off"``: the fp32 baseline).
    """
    stage2, device = setup.stage2, setup.device
    amp = amp or stage2["optim"]["amp"]
    cfg = _decoder_config(stage2, setup.visual_dim)
    options = argparse.Namespace(
        batch_size=stage2["batch_size"],
        structures=NUM_STRUCTURES,
        top_k=setup.top_k,
        visual_dim=setup.visual_dim,
        report_tokens=stage2["max_report_tokens"],
        vocab_size=cfg.vocab_size,
        repeats=setup.train_steps,
    )
    with autocast(amp, device):
        row = stage2_memory.measure("selected", 0, options, cfg, device)
    return {
        "batch_size": options.batch_size,
        "report_tokens": options.report_tokens,
        "visual_tokens": row["visual_tokens"],
        "step_s": row["step_s"],
        "reports_per_s": options.batch_size / row["step_s"],
        "peak_mb": row["peak_mb"],
        "memory_kind": "cuda allocated" if device.type == "cuda" else "profiler tensor bytes",
        "amp": "bf16" if amp_enabled(amp, device) else "off",
        "steps": setup.train_steps,
    }


def bench_extract(setup: Setup) -> dict[str, Any]:
    """Frozen ``encode_volume`` + top-k selection of a batch of random volumes."""
    torch.manual_seed(0)
    observer = build_stage1(setup.stage1, setup.device).observer.eval().requires_grad_(False)
    batch, shape = setup.features["batch_size"], setup.stage1["model"]["volume_shape"]
    rng = np.random.default_rng(0)
    volumes = rng.uniform(-1, 1, (batch, *shape)).astype(np.float32)  # (B, D, H, W)
    run = lambda: extract_batch(observer, volumes, setup.top_k, False, setup.device)  # noqa: E731
    run()  # warm-up
    seconds = median_seconds(run, setup.repeats, setup.device)
    return {
        "batch_size": batch,
        "top_k": setup.top_k,
        "batch_s": seconds,
        "volumes_per_s": batch / seconds,
        "encode_s_per_volume": seconds / batch,
    }


def bench_inference(setup: Setup) -> dict[str, Any]:
    """Seconds to decode one report to the length cap (untrained decoder, EOS banned)."""
    torch.manual_seed(0)
    decoder = ReportDecoder(_decoder_config(setup.stage2, setup.visual_dim))
    decoder = decoder.to(setup.device).eval()
    observation = torch.randn(1, NUM_STRUCTURES, setup.visual_dim)  # (1, S, C)
    patches = torch.randn(1, NUM_STRUCTURES, setup.top_k, setup.visual_dim)  # (1, S, k, C)
    visual = assemble_visual_tokens(observation, patches, "selected").to(setup.device)
    decoding = setup.generate["decoding"]
    cfg = GenerationConfig(**{**decoding, "min_length": decoding["max_length"]})
    warm = GenerationConfig(**{**decoding, "min_length": 0, "max_length": 2})
    generate_ids(decoder, visual, BOS_ID, EOS_ID, PAD_ID, warm)
    ids: list[list[int]] = []
    run = lambda: ids.append(generate_ids(decoder, visual, BOS_ID, EOS_ID, PAD_ID, cfg)[0])  # noqa: E731
    seconds = median_seconds(run, setup.repeats, setup.device)
    return {
        "strategy": cfg.strategy,
        "generated_tokens": len(ids[-1]),
        "decode_s": seconds,
        "s_per_token": seconds / max(len(ids[-1]), 1),
    }


def add_amp_baselines(results: dict[str, Any], setup: Setup) -> None:
    """Time stage 1 and stage 2 again without autocast, in this process: the bf16 speed-up.

    Only where the measured row autocast (``amp`` bf16); ``speedup`` = fp32 step / bf16 step.
    """
    for name, measure in (("stage1", bench_stage1), ("stage2", bench_stage2)):
        row = results[name]
        if row.get("skipped") or row["amp"] == "off":
            continue
        baseline = measure(setup, amp="off")
        row["fp32_baseline"] = {key: baseline[key] for key in ("step_s", "peak_mb")}
        row["bf16_speedup"] = baseline["step_s"] / row["step_s"]
        row["bf16_memory_ratio"] = baseline["peak_mb"] / row["peak_mb"]


def run_sections(args: argparse.Namespace, setup: Setup) -> dict[str, Any]:
    """Every measurement not skipped; stage 1 first, so its RSS baseline is a fresh process."""
    measures: dict[str, Callable[[], dict[str, Any]]] = {
        "stage1": lambda: bench_stage1(setup),
        "extract": lambda: bench_extract(setup),
        "stage2": lambda: bench_stage2(setup),
        "inference": lambda: bench_inference(setup),
        "llm": lambda: bench_llm(
            args.llm, setup, args.llm_batch_size or setup.stage2["batch_size"]
        ),
        "preprocess": lambda: preprocess.speed_row(
            tuple(args.preprocess_size), args.preprocess_target, args.repeats
        ),
        "pipeline": lambda: read_pipeline_benchmarks(args.benchmarks, args.run),
    }
    results: dict[str, Any] = {}
    for name, measure in measures.items():
        if name in args.skip:
            results[name] = {"skipped": True}
            continue
        started = time.perf_counter()
        results[name] = measure()
        log.info("%s measured in %.1f s", name, time.perf_counter() - started)
    if setup.amp_baseline:
        add_amp_baselines(results, setup)
    inference, extract = results["inference"], results["extract"]
    if not inference.get("skipped"):
        encode = None if extract.get("skipped") else extract["encode_s_per_volume"]
        inference["encode_s"] = encode
        inference["total_s"] = None if encode is None else encode + inference["decode_s"]
    return results


def parse_args(argv: list[str]) -> argparse.Namespace:
    """Command-line options (see ``ctrg bench speed --help``)."""
    parser = argparse.ArgumentParser(prog="ctrg bench speed", description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="auto", help="auto | cpu | cuda[:N]")
    parser.add_argument("--threads", type=int, default=0, help="torch CPU threads (0 = default)")
    parser.add_argument("--repeats", type=int, default=5, help="timed runs per measurement")
    parser.add_argument(
        "--skip", nargs="+", action="extend", default=[], choices=SECTIONS, metavar="SECTION",
        help=f"measurements to leave out: {', '.join(SECTIONS)}",
    )  # fmt: skip
    for stage in CONFIG_STAGES:
        parser.add_argument(
            f"--{stage}-config", type=Path, default=None, metavar="JSON",
            help=f"resolved {stage}.json (results/<run>/configs/); default: schema defaults",
        )  # fmt: skip
    parser.add_argument(
        "--configfile", type=Path, nargs="+", default=None, metavar="YAML",
        help="workflow configs merged in order, as `snakemake --configfile` merges them "
        "(e.g. config.yaml presets/ctrate.yaml: the paper scale); replaces --<stage>-config",
    )  # fmt: skip
    parser.add_argument("--batch-size", type=int, default=None, help="stage 1 (default: config)")
    parser.add_argument(
        "--train-steps", type=int, default=None,
        help="timed training steps of stage 1, stage 2 and the LLM (default: --repeats)",
    )  # fmt: skip
    parser.add_argument(
        "--amp-baseline", action="store_true",
        help="where training autocasts to bf16, also time it without (fp32) in this process",
    )  # fmt: skip
    parser.add_argument(
        "--llm", choices=LLM_CHOICES, default="none",
        help="the authors' LoRA LLM decoder at this shape with random weights (none = skip)",
    )  # fmt: skip
    parser.add_argument("--llm-batch-size", type=int, default=None, help="default: stage2")
    parser.add_argument(
        "--preprocess-size", type=int, nargs=3, default=[200, 384, 384], metavar=("D", "H", "W"),
        help="synthetic int16 input volume of the preprocessing measurement",
    )  # fmt: skip
    parser.add_argument(
        "--preprocess-target", choices=sorted(preprocess.TARGETS), default="cpu default",
        help="target spacing (its shape scaled with --preprocess-size)",
    )  # fmt: skip
    parser.add_argument("--benchmarks", type=Path, default=Path("benchmarks"), metavar="DIR",
                        help="Snakemake benchmark folder of the pipeline")  # fmt: skip
    parser.add_argument("--run", default=None, help="run of the pipeline (default: newest)")
    parser.add_argument("--out-json", type=Path, default=Path("results/bench/speed.json"))
    parser.add_argument("--out-md", type=Path, default=None, help="default: --out-json as .md")
    parser.add_argument("--log-level", default="INFO")
    args = parser.parse_args(argv)
    for name in ("repeats", "train_steps", "batch_size", "llm_batch_size"):
        value = getattr(args, name)
        if value is not None and value < 1:
            parser.error(f"--{name.replace('_', '-')} must be >= 1, got {value}")
    if args.llm == "none" and "llm" not in args.skip:
        args.skip.append("llm")
    staged = [stage for stage in CONFIG_STAGES if getattr(args, f"{stage}_config")]
    if args.configfile and staged:
        parser.error(f"--configfile replaces --{staged[0]}-config: give one or the other")
    return args


def stage_sections(args: argparse.Namespace) -> dict[str, dict[str, Any]]:
    """The resolved ``CONFIG_STAGES`` sections: from ``--configfile`` or per-stage files."""
    if not args.configfile:
        return {
            stage: load_stage_config(getattr(args, f"{stage}_config"), stage)[stage]
            for stage in CONFIG_STAGES
        }
    resolved = load_config_files(args.configfile)
    return {stage: resolved[stage] for stage in CONFIG_STAGES}


def main(argv: list[str]) -> int:
    """Measure, print one Markdown table, write it (``--out-md``) and the JSON (``--out-json``)."""
    args = parse_args(argv)
    setup_logging(args.log_level)
    if args.threads:
        torch.set_num_threads(args.threads)
    sections = stage_sections(args)
    setup = Setup.from_sections(
        sections,
        select_device(args.device),
        batch_size=args.batch_size,
        repeats=args.repeats,
        train_steps=args.train_steps or args.repeats,
        amp_baseline=args.amp_baseline,
    )
    started = time.perf_counter()
    results: dict[str, Any] = {"machine": machine_info(setup.device)}
    results.update(run_sections(args, setup))
    results["settings"] = {
        "repeats": args.repeats,
        "train_steps": setup.train_steps,
        "skip": args.skip,
        "configfile": args.configfile,
        "configs": {stage: getattr(args, f"{stage}_config") for stage in CONFIG_STAGES},
        "wall_s": time.perf_counter() - started,
    }
    text = markdown_table(table_rows(results))
    print(text, end="")
    atomic_write_json(args.out_json, results)
    atomic_write_text(args.out_md or args.out_json.with_suffix(".md"), text)
    log.info("wrote %s (%.1f s)", args.out_json, results["settings"]["wall_s"])
    return 0

"""The Markdown table of ``ctrg bench speed``: one row per number, notes on each section.

``table_rows(results)`` turns the JSON written by :mod:`ctrg.bench.speed` into
``(section, measurement, value, notes)`` rows; ``markdown_table(rows)`` renders them.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

SECTIONS: tuple[str, ...] = (
    "preprocess",
    "stage1",
    "stage2",
    "extract",
    "inference",
    "llm",
    "pipeline",
)

ROWS: dict[str, list[tuple[str, str, str]]] = {  # section -> (key, measurement, value format)
    "preprocess": [
        ("ctrg_volumes_per_s", "ctrg preprocessing", "{:.2f} volumes/s"),
        ("monai_volumes_per_s", "MONAI Spacingd + ScaleIntensityRanged", "{:.2f} volumes/s"),
        ("ctrg_vs_monai", "ctrg / MONAI throughput", "{:.1f}x"),
    ],
    "stage1": [
        ("volumes_per_s", "training throughput", "{:.2f} volumes/s"),
        ("step_s", "training step (median)", "{:.3f} s"),
        ("peak_mb", "peak memory", "{:.1f} MB"),
        ("bf16_speedup", "bf16 autocast speed-up (fp32 step / bf16 step)", "{:.2f}x"),
    ],
    "stage2": [
        ("reports_per_s", "training throughput (selected patches)", "{:.2f} reports/s"),
        ("step_s", "training step (median)", "{:.3f} s"),
        ("peak_mb", "peak memory of one step", "{:.1f} MB"),
        ("bf16_speedup", "bf16 autocast speed-up (fp32 step / bf16 step)", "{:.2f}x"),
    ],
    "extract": [("volumes_per_s", "frozen encode + top-k selection", "{:.2f} volumes/s")],
    "inference": [
        ("decode_s", "decode one report", "{:.3f} s/volume"),
        ("encode_s", "encode one volume (from extract)", "{:.3f} s/volume"),
        ("total_s", "latency per volume (encode + decode)", "{:.3f} s/volume"),
    ],
    "llm": [
        ("reports_per_s", "LoRA LLM training throughput", "{:.2f} reports/s"),
        ("step_s", "LoRA LLM training step (median)", "{:.3f} s"),
        ("peak_mb", "LoRA LLM peak memory (weights included)", "{:.0f} MB"),
        ("decode_s", "LLM greedy decode of one report", "{:.2f} s/volume"),
        ("decode_merged_s", "the same, LoRA merged into the weights", "{:.2f} s/volume"),
    ],
    "pipeline": [
        ("sum_s", "sum of job wall times", "{:.0f} s"),
        ("span_s", "first job start to last job end", "{:.0f} s"),
    ],
}

NOTES: dict[str, Callable[[dict[str, Any]], str]] = {
    "preprocess": lambda r: (
        f"{tuple(r['input_shape'])} int16 -> {tuple(r['output_shape'])} ({r['target']}); "
        f"ctrg best of --repeats, MONAI one run; max abs diff {r['max_abs_diff']:.1e}"
    ),
    "stage1": lambda r: (
        f"batch {r['batch_size']} x {tuple(r['volume_shape'])}, {r['parameters'] / 1e6:.2f} M "
        f"params, AdamW + real loss, full queue; amp {r['amp']}; median of {r.get('steps', '?')} "
        f"steps; memory: {r['memory_kind']} over model build + first step" + _baseline(r)
    ),
    "stage2": lambda r: (
        f"batch {r['batch_size']}, {r['visual_tokens']} visual tokens, {r['report_tokens']} "
        f"report tokens; amp {r['amp']}; median of {r.get('steps', '?')} steps; memory: "
        f"{r['memory_kind']}" + _baseline(r)
    ),
    "extract": lambda r: f"batch {r['batch_size']}, top-k {r['top_k']}, torch.no_grad",
    "inference": lambda r: (
        f"untrained decoder, EOS banned: decodes to the length cap (worst case), "
        f"{r['generated_tokens']} tokens, {r['strategy']}, {r['s_per_token'] * 1e3:.1f} ms/token"
    ),
    "llm": lambda r: (
        f"LLaMA shape {r['shape']} (random weights, {r['dtype']}), "
        f"{r['parameters'] / 1e6:,.1f} M params, {r['trainable_parameters'] / 1e6:.1f} M trained "
        f"(LoRA + projector); batch {r['batch_size']} x {r['sequence_tokens']} tokens; amp "
        f"{r['amp']}; memory: {r['memory_kind']} over build + first step; decode "
        f"{r['generated_tokens']} tokens, greedy, EOS banned, {r['ms_per_token']:.1f} ms/token"
    ),
    "pipeline": lambda r: (
        f"{'run ' + repr(r['run']) if r['run'] else 'data stages only'}, {r['jobs']} jobs in "
        f"{r['folder']}/; largest: "
        + ", ".join(f"{job['job']} {job['s']:.0f} s" for job in r["largest"])
    ),
}


def _baseline(r: dict[str, Any]) -> str:
    """Note text of the same-process fp32 baseline, when one was measured."""
    base = r.get("fp32_baseline")
    if not base:
        return ""
    return (
        f"; fp32 baseline (same process): step {base['step_s']:.3f} s, peak "
        f"{base['peak_mb']:.0f} MB ({r['bf16_memory_ratio']:.2f}x the bf16 peak)"
    )


def _format(value: Any, fmt: str) -> str:
    return "n/a" if value is None else fmt.format(value)


def table_rows(results: dict[str, Any]) -> list[tuple[str, str, str, str]]:
    """(section, measurement, value, notes) rows: machine first, then every section."""
    machine = results["machine"]
    rows = [
        (
            "machine",
            "cores",
            f"{machine['cpu_count']} (torch threads {machine['torch_threads']})",
            "",
        ),
        ("machine", "device", machine["device"], machine["device_name"]),
        ("machine", "torch", machine["torch"], f"ctrg {machine['versions'].get('ctrg', '?')}"),
        ("machine", "git revision", machine["git_revision"][:12], ""),
    ]
    for section in SECTIONS:
        result = results[section]
        if result.get("skipped"):
            rows.append((section, "-", "skipped", "--skip"))
        elif result.get("status") == "not run":
            rows.append(
                (section, "end-to-end wall time", "not run", f"no *.tsv in {result['folder']}/")
            )
        else:
            note = NOTES[section](result)
            for i, (key, label, fmt) in enumerate(ROWS[section]):
                if key in result:  # optional keys (bf16_speedup) only where measured
                    rows.append((section, label, _format(result[key], fmt), note if i == 0 else ""))
    return rows


def markdown_table(rows: list[tuple[str, str, str, str]]) -> str:
    """One Markdown table (``|`` in cells escaped)."""
    lines = ["| section | measurement | value | notes |", "|---|---|---|---|"]
    for row in rows:
        lines.append("| " + " | ".join(str(cell).replace("|", "\\|") for cell in row) + " |")
    return "\n".join(lines) + "\n"

"""``ctrg bench speed`` on tiny models: every section measured, JSON and Markdown written.

No Snakemake: the pipeline section reads hand-written benchmark files. Timings are only
checked to be positive; sizes, token counts and the benchmark sums are checked exactly.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import pytest
import torch
from stage1_helpers import tiny_config, write_config

from ctrg.bench import speed
from ctrg.bench.snakemake_times import read_pipeline_benchmarks

HEADER = "s\th:m:s\tmax_rss\tmax_vms\tmax_uss\tmax_pss\tio_in\tio_out\tmean_load\tcpu_time\n"


def _write_tsv(path: Path, seconds: list[float], age_s: float = 0.0) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    rows = "".join(f"{s}\t0:00:00\t1\t1\t1\t1\t0\t0\t0\t{s}\n" for s in seconds)
    path.write_text(HEADER + rows)
    stamp = time.time() - age_s
    os.utime(path, (stamp, stamp))


def _fake_benchmarks(root: Path) -> Path:
    """Shared stages (15 s), run ``new`` (32 s), an older run and the quality bench."""
    folder = root / "benchmarks"
    _write_tsv(folder / "synth" / "synth.tsv", [10.0], age_s=100)
    _write_tsv(folder / "ingest" / "000.tsv", [4.0, 6.0], age_s=90)  # two repeats: mean 5
    _write_tsv(folder / "new" / "stage1.tsv", [30.0], age_s=20)
    _write_tsv(folder / "new" / "extract_features" / "0.tsv", [2.0], age_s=10)
    _write_tsv(folder / "old" / "stage1.tsv", [500.0], age_s=1000)
    _write_tsv(folder / "bench" / "quality.tsv", [999.0], age_s=5)
    return folder


def _tiny_configs(root: Path) -> list[str]:
    """--*-config options for a 16x32x32 stage 1, a 1-layer decoder and 8 decoded tokens."""
    stage1 = write_config(root, tiny_config(batch_size=4))
    payloads = {
        "stage2": {
            "decoder": {"d_model": 32, "num_layers": 1, "num_heads": 2, "ff_dim": 64},
            "batch_size": 2,
            "max_report_tokens": 16,
            "tokenizer": {"vocab_size": 64},
        },
        "features": {"top_k": 3, "batch_size": 2},
        "generate": {"decoding": {"min_length": 0, "max_length": 8}},
    }
    argv = ["--stage1-config", str(stage1)]
    for section, values in payloads.items():
        path = root / f"{section}.json"
        path.write_text(json.dumps({"section": section, "seed": 0, section: values}))
        argv += [f"--{section}-config", str(path)]
    return argv


def _run(argv: list[str]) -> int:
    before = torch.get_num_threads()
    try:
        return speed.main([*argv, "--threads", "1", "--device", "cpu", "--log-level", "WARNING"])
    finally:
        torch.set_num_threads(before)


def test_every_section_measured(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "out" / "speed.json"
    argv = _tiny_configs(tmp_path) + ["--repeats", "1", "--preprocess-size", "20", "48", "48"]
    argv += ["--benchmarks", str(_fake_benchmarks(tmp_path)), "--out-json", str(out)]
    assert _run(argv) == 0
    result = json.loads(out.read_text())
    machine = result["machine"]
    assert machine["cpu_count"] >= 1 and machine["torch_threads"] == 1
    assert machine["torch"] == torch.__version__ and machine["device"] == "cpu"
    assert machine["git_revision"] and machine["device_name"]
    positive = {
        "preprocess": ["ctrg_volumes_per_s", "monai_volumes_per_s", "ctrg_vs_monai"],
        "stage1": ["volumes_per_s", "step_s", "parameters"],
        "stage2": ["reports_per_s", "step_s", "peak_mb"],
        "extract": ["volumes_per_s", "encode_s_per_volume"],
        "inference": ["decode_s", "encode_s", "total_s", "s_per_token"],
        "pipeline": ["sum_s", "span_s"],
    }
    for section, keys in positive.items():
        for key in keys:
            assert result[section][key] > 0, (section, key, result[section][key])
    assert 0 <= result["stage1"]["peak_mb"] < 200  # RSS increase (freed memory may be reused)
    assert result["stage1"]["volume_shape"] == [16, 32, 32]
    assert result["stage1"]["memory_kind"] == "peak RSS increase"
    assert result["stage1"]["amp"] == "off" and result["stage2"]["amp"] == "off"
    assert result["preprocess"]["max_abs_diff"] < 1e-3  # same grid as MONAI
    assert result["stage2"]["visual_tokens"] == 10 + 10 * (1 + 3)
    assert result["inference"]["generated_tokens"] == 8  # untrained: runs to the cap
    inference = result["inference"]
    assert inference["encode_s"] == result["extract"]["encode_s_per_volume"]
    assert inference["total_s"] == pytest.approx(inference["encode_s"] + inference["decode_s"])
    pipeline = result["pipeline"]
    assert pipeline["run"] == "new" and pipeline["jobs"] == 4
    assert pipeline["sum_s"] == pytest.approx(10 + 5 + 30 + 2)
    assert pipeline["largest"][0] == {"job": "new/stage1", "s": 30.0}
    assert pipeline["span_s"] == pytest.approx(110 - 10, abs=2)  # synth start to extract end
    printed = capsys.readouterr().out
    assert printed == out.with_suffix(".md").read_text()
    assert printed.count("| section | measurement |") == 1
    for section in ["machine", *positive]:
        assert f"| {section} |" in printed
    assert "length cap (worst case)" in printed and "not run" not in printed


def test_missing_benchmarks_folder_is_not_run(tmp_path: Path, capsys) -> None:
    out, md = tmp_path / "speed.json", tmp_path / "table.md"
    argv = ["--skip", "preprocess", "stage1", "stage2", "--skip", "extract", "inference"]
    argv += ["--benchmarks", str(tmp_path / "absent"), "--out-json", str(out), "--out-md", str(md)]
    assert _run(argv) == 0
    result = json.loads(out.read_text())
    assert result["pipeline"]["status"] == "not run"
    assert all(result[s] == {"skipped": True} for s in speed.SECTIONS if s != "pipeline")
    row = next(line for line in md.read_text().splitlines() if line.startswith("| pipeline |"))
    assert "| not run |" in row
    assert capsys.readouterr().out == md.read_text()


def test_pipeline_benchmarks_choose_run(tmp_path: Path) -> None:
    folder = _fake_benchmarks(tmp_path)
    old = read_pipeline_benchmarks(folder, "old")
    assert old["run"] == "old" and old["sum_s"] == pytest.approx(515)
    shared_only = read_pipeline_benchmarks(folder, "no-such-run")
    assert shared_only["run"] is None and shared_only["sum_s"] == pytest.approx(15)
    assert read_pipeline_benchmarks(tmp_path / "empty", None)["status"] == "not run"


def test_inference_decodes_to_the_cap_when_the_model_wants_to_stop(monkeypatch) -> None:
    from ctrg.config import load_schema, validate
    from ctrg.models.decoder import ReportDecoder

    class EagerToStop(ReportDecoder):
        def step(self, state, cache, input_ids):  # type: ignore[no-untyped-def]
            logits, cache = super().step(state, cache, input_ids)
            logits[:, speed.EOS_ID] += 100.0  # EOS always wins unless banned
            return logits, cache

    monkeypatch.setattr(speed, "ReportDecoder", EagerToStop)
    decoder = {"d_model": 16, "num_layers": 1, "num_heads": 2, "ff_dim": 32}
    stage2 = validate({"decoder": decoder, "max_report_tokens": 8}, load_schema("stage2"), "s2")
    generate = validate(
        {"decoding": {"min_length": 0, "max_length": 20}}, load_schema("generate"), "g"
    )
    setup = speed.Setup(
        stage1={}, stage2=stage2, features={}, generate=generate,
        repeats=1, device=torch.device("cpu"), batch_size=1, visual_dim=8, top_k=2,
    )  # fmt: skip
    result = speed.bench_inference(setup)
    assert result["generated_tokens"] == 8 - 1  # capped by the decoder's positions (BOS incl.)


def _tiny_workflow_yaml(root: Path) -> Path:
    """A workflow config (as --configfile reads it) with bf16 autocast asked for on the CPU."""
    import yaml

    stage1 = tiny_config(batch_size=2, amp="bf16")["stage1"]
    config = {
        "stage1": stage1,
        "stage2": {
            "decoder": {"d_model": 32, "num_layers": 1, "num_heads": 2, "ff_dim": 64},
            "batch_size": 2,
            "max_report_tokens": 12,
            "tokenizer": {"vocab_size": 64},
            "optim": {"amp": "bf16"},
            "llm": {"projector_hidden": 16, "lora_r": 4, "lora_alpha": 8},
        },
        "features": {"top_k": 3, "batch_size": 2},
        "generate": {"decoding": {"min_length": 0, "max_length": 8}},
    }
    path = root / "tiny.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


def test_configfile_amp_baseline_and_llm_section(tmp_path: Path, capsys) -> None:
    out = tmp_path / "speed.json"
    argv = ["--configfile", str(_tiny_workflow_yaml(tmp_path)), "--amp-baseline"]
    argv += ["--llm", "tiny", "--llm-batch-size", "3", "--repeats", "1", "--train-steps", "2"]
    argv += ["--skip", "preprocess", "extract", "inference", "pipeline", "--out-json", str(out)]
    assert _run(argv) == 0
    result = json.loads(out.read_text())
    stage1, stage2, llm = result["stage1"], result["stage2"], result["llm"]
    assert stage1["volume_shape"] == [16, 32, 32] and stage1["batch_size"] == 2
    assert result["settings"]["train_steps"] == 2 and stage1["steps"] == 2
    for row in (stage1, stage2):  # bf16 measured, fp32 baseline beside it, ratio of the two
        assert row["amp"] == "bf16" and row["fp32_baseline"]["step_s"] > 0
        assert row["bf16_speedup"] == pytest.approx(row["fp32_baseline"]["step_s"] / row["step_s"])
    assert stage2["report_tokens"] == 12 and stage2["visual_tokens"] == 10 + 10 * (1 + 3)
    hidden, layers, r, c = 64, 2, 4, 32  # tiny LLaMA; LoRA on q, k, v, o; C = query_dim
    lora = layers * 4 * (r * hidden + hidden * r)
    projector = (c * 16 + 16) + (16 * hidden + hidden)
    assert llm["trainable_parameters"] == lora + projector
    assert llm["batch_size"] == 3 and llm["sequence_tokens"] == 4 + 50 + 21 + 12
    assert llm["generated_tokens"] == 12 - 1  # capped by the decoder's positions
    assert llm["step_s"] > 0 and llm["decode_s"] > 0 and llm["decode_merged_s"] > 0
    printed = capsys.readouterr().out
    assert printed.count("bf16 autocast speed-up") == 2 and "LoRA merged" in printed


def test_configfile_replaces_stage_config_files(tmp_path: Path) -> None:
    stage1 = write_config(tmp_path, tiny_config())
    argv = ["--configfile", str(_tiny_workflow_yaml(tmp_path)), "--stage1-config", str(stage1)]
    with pytest.raises(SystemExit):
        speed.parse_args(argv)


def test_autocast_bench_times_three_settings(tmp_path: Path, capsys) -> None:
    from ctrg.bench import autocast

    out = tmp_path / "autocast.json"
    argv = ["--configfile", str(_tiny_workflow_yaml(tmp_path)), "--device", "cpu"]
    argv += ["--steps", "1", "--profile", "1", "--out-json", str(out), "--log-level", "WARNING"]
    before = torch.get_num_threads()
    try:
        assert autocast.main(argv) == 0
    finally:
        torch.set_num_threads(before)
    rows = json.loads(out.read_text())["rows"]
    assert [row["setting"] for row in rows] == [name for name, _, _ in autocast.SETTINGS]
    assert [row["amp"] for row in rows] == ["off", "bf16", "bf16"]
    assert "profile" not in rows[0]  # fp32 is the baseline, not profiled
    assert all("Self CPU time total" in row["profile"] for row in rows[1:])  # profiler tables
    printed = capsys.readouterr().out
    fp32_line = next(line for line in printed.splitlines() if line.startswith("| fp32 |"))
    assert "| 1.00x |" in fp32_line
    from ctrg.models.vision import PositionGenerator

    assert PositionGenerator.conv_in_weight_dtype  # the switch is restored


def test_autocast_table_ratios_and_a_zero_cpu_peak() -> None:
    from ctrg.bench.autocast import table

    rows = [
        {"setting": "fp32", "step_s": 0.2, "volumes_per_s": 5.0, "peak_mb": 0.0},
        {"setting": "bf16", "step_s": 0.1, "volumes_per_s": 10.0, "peak_mb": 3.0},
    ]
    lines = table(rows).splitlines()
    assert lines[2] == "| fp32 | 0.2000 s | 5.00 | 0 MB | 1.00x | n/a |"
    assert lines[3] == "| bf16 | 0.1000 s | 10.00 | 3 MB | 0.50x | n/a |"
    rows[0]["peak_mb"] = 6.0
    assert table(rows).splitlines()[3].endswith("| 0.50x | 0.50x |")

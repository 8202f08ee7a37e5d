"""Per-row wall time of the quality benchmark (ctrg.bench.row_times), by hand."""

from __future__ import annotations

import json

import pytest

from ctrg.bench.quality import main
from ctrg.bench.row_times import collect_times, row_seconds, times_markdown

HEADER = "s\th:m:s\tmax_rss\n"


def write_tsv(path, seconds: float) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(HEADER + f"{seconds}\t0:00:00\t1.0\n")


def write_row(root, run: str, stage1_from: str, jobs: dict[str, float]) -> None:
    """benchmarks/<run>/<job>.tsv and results/<run>/{frozen/frozen.json,eval/metrics.json}."""
    for job, seconds in jobs.items():
        write_tsv(root / "benchmarks" / run / f"{job}.tsv", seconds)
    frozen = root / "results" / run / "frozen" / "frozen.json"
    frozen.parent.mkdir(parents=True)
    frozen.write_text(json.dumps({"checkpoint": f"results/{stage1_from}/stage1/model.pt"}))


def test_own_and_shared_stage1(tmp_path):
    own = {"stage1": 600.0, "stage1_heldout_retrieval": 4.0, "stage2": 700.0}
    own |= {"extract_features/000": 6.0, "extract_features/001": 7.0, "evaluate": 20.0}
    write_row(tmp_path, "bench_full_s0", "bench_full_s0", own)
    write_row(tmp_path, "bench_all_patches_s0", "bench_full_s0", {"stage2": 800.0, "evaluate": 30})
    bench = tmp_path / "benchmarks"
    full = row_seconds(bench, "bench_full_s0", "bench_full_s0")
    assert full == {
        "stage1_s": 600.0,
        "stage2_s": 700.0,
        "row_s": 1337.0,  # 600 + 4 + 700 + 6 + 7 + 20
        "jobs": 6,
        "stage1_from": "bench_full_s0",
    }
    shared = row_seconds(bench, "bench_all_patches_s0", "bench_full_s0")
    # its own jobs plus the shared run's stage 1 and held-out retrieval, not its stage 2
    assert shared["row_s"] == 800.0 + 30.0 + 600.0 + 4.0
    assert shared["stage1_s"] == 600.0 and shared["stage1_from"] == "bench_full_s0"
    assert row_seconds(bench, "bench_no_queue_s0") == {}  # never ran


def test_collect_means_over_seeds_and_markdown(tmp_path):
    write_row(tmp_path, "bench_full_s0", "bench_full_s0", {"stage1": 600.0, "stage2": 600.0})
    write_row(tmp_path, "bench_full_s1", "bench_full_s1", {"stage1": 720.0, "stage2": 720.0})
    write_row(tmp_path, "bench_visual_noise_s0", "bench_full_s0", {"stage2": 660.0})
    metrics = [
        tmp_path / "results" / run / "eval" / "metrics.json"
        for run in ("bench_full_s0", "bench_full_s1", "bench_visual_noise_s0")
    ]
    metrics.append(tmp_path / "results" / "baseline_most_frequent" / "eval" / "metrics.json")
    times = collect_times(metrics, tmp_path / "benchmarks")
    assert set(times) == {"full", "visual_noise"}  # the baseline has no model jobs
    assert times["full"]["seeds"] == 2
    assert times["full"]["row_s"] == pytest.approx(1320.0)  # mean of 1200 and 1440
    assert times["full"]["row_max_s"] == 1440.0
    assert not times["full"]["stage1_shared"] and times["visual_noise"]["stage1_shared"]
    table = times_markdown(times)
    assert "| full | 2 | 11.0 | 11.0 | 22.0 | 24.0 |" in table
    assert "| visual_noise | 1 | 10.0 (shared) | 11.0 | 21.0 | 21.0 |" in table


def test_quality_writes_the_wall_time_table(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    write_row(tmp_path, "bench_full_s0", "bench_full_s0", {"stage1": 540.0, "stage2": 300.0})
    path = tmp_path / "results" / "bench_full_s0" / "eval" / "metrics.json"
    path.parent.mkdir(parents=True)
    columns = ("bleu_1", "bleu_4", "meteor", "rouge_l", "cider")
    path.write_text(json.dumps({k: 0.1 for k in (*columns, "ce_gt_micro_f1", "ce_gt_macro_f1")}))
    out_md, out_json = tmp_path / "q.md", tmp_path / "q.json"
    args = [str(path), "--benchmarks", "benchmarks", "--out-md", str(out_md)]
    assert main([*args, "--out-json", str(out_json)]) == 0
    assert "| full | 1 | 9.0 | 5.0 | 14.0 | 14.0 |" in out_md.read_text()
    assert json.loads(out_json.read_text())["wall_time"]["full"]["row_s"] == 840.0

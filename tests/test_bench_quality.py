"""The ablation/baseline quality table (ctrg bench quality), by hand."""

from __future__ import annotations

import json

import pytest

from ctrg.bench.quality import COLUMNS, main, paired_markdown, summarise, summarise_stage1


def write_run(root, run: str, value: float, stage1: dict | None = None):
    path = root / run / "eval" / "metrics.json"
    path.parent.mkdir(parents=True)
    metrics = {key: value for key in COLUMNS}
    # as ctrg evaluate writes it: headline value with its bootstrap CI
    metrics["headline"] = {
        "bleu_4": {"value": value, "ci_low": value - 0.01, "ci_high": value + 0.01}
    }
    path.write_text(json.dumps(metrics))
    if stage1 is not None:
        (root / run / "stage1").mkdir()
        (root / run / "stage1" / "summary.json").write_text(json.dumps(stage1))
    return path


def stage1_summary(top1: float) -> dict:
    final = {
        "retrieval_top1": top1,
        "retrieval_top1_chance": 0.1,
        "retrieval_top5": 0.5,
        "retrieval_top5_chance": 0.5,
        "retrieval_mean_rank": 3.0,
        "retrieval_mean_rank_chance": 5.5,
    }
    attention = {"per_structure": {"lung": {"hit_any": 0.8, "chance_any": 0.3}}}
    return {"final": final, "attention_concentration": attention}


def test_rows_mean_sd_ci_and_stage1_table(tmp_path, capsys):
    paths = [
        write_run(tmp_path, "bench_full_s0", 0.2, stage1_summary(0.3)),
        write_run(tmp_path, "bench_full_s1", 0.4, stage1_summary(0.5)),
        write_run(tmp_path, "baseline_most_frequent", 0.1),
    ]
    rows = summarise(paths)
    assert list(rows) == ["full", "baseline_most_frequent"]  # rows.yaml order, baselines last
    full = rows["full"]
    assert full["seeds"] == [0, 1]
    assert full["mean"]["bleu_4"] == pytest.approx(0.3)
    assert full["sd"]["bleu_4"] == pytest.approx(0.1414, abs=1e-4)  # stdev of 0.2, 0.4
    assert full["ci"]["bleu_4"] == [pytest.approx(0.19), pytest.approx(0.21)]  # first seed
    stage1 = summarise_stage1(paths)
    assert set(stage1) == {"full"}  # baselines have no stage 1
    assert stage1["full"]["retrieval_top1"] == pytest.approx(0.4)
    assert stage1["full"]["attention_lung"] == 0.8 and "attention_heart" not in stage1["full"]
    out_md, out_json = tmp_path / "q.md", tmp_path / "q.json"
    assert main([*map(str, paths), "--out-md", str(out_md), "--out-json", str(out_json)]) == 0
    table = out_md.read_text()
    assert "| full | 2 | 0.300 ± 0.141" in table
    rows_line = next(line for line in table.splitlines() if line.startswith("Rows: "))
    assert "`full`:" in rows_line and "`baseline_most_frequent`:" in rows_line
    assert "`no_queue`" not in rows_line  # only the rows of this table are described
    assert (
        "| full | 2 | 0.400 (0.100) | 0.500 (0.500) | 3.0 (5.5) | n/a | n/a | 0.800 (0.300) | n/a |"
        in table
    )
    assert json.loads(out_json.read_text())["stage1"]["full"]["retrieval_mean_rank"] == 3.0


def test_a_row_run_only_to_stage1_joins_the_stage1_table(tmp_path):
    paths = [write_run(tmp_path, "bench_full_s0", 0.2, stage1_summary(0.3))]
    only = tmp_path / "bench_fifo_queue_s0" / "stage1"
    only.mkdir(parents=True)
    (only / "summary.json").write_text(json.dumps(stage1_summary(0.2)))
    heldout = {"top1": 0.05, "top1_null": 0.011, "mean_rank": 33.3, "mean_rank_null": 45.5}
    (only / "heldout_retrieval.json").write_text(json.dumps(heldout))
    out_md, out_json = tmp_path / "q.md", tmp_path / "q.json"
    args = [str(paths[0]), str(only / "summary.json"), "--out-md", str(out_md)]
    assert main([*args, "--out-json", str(out_json)]) == 0
    result = json.loads(out_json.read_text())
    assert set(result["rows"]) == {"full"}
    table = out_md.read_text()
    assert table.index("| full | 1 | 0.300") < table.index("| fifo_queue |")  # rows.yaml order
    assert result["stage1"]["fifo_queue"]["retrieval_top1"] == pytest.approx(0.2)
    assert result["stage1"]["fifo_queue"]["heldout_mean_rank_chance"] == 45.5
    assert "heldout_top1" not in result["stage1"]["full"]  # no held-out file for that row
    assert (
        "| fifo_queue | 1 | 0.200 (0.100) | 0.500 (0.500) | 3.0 (5.5) | 0.050 (0.011) | 33.3 (45.5) |"
        in out_md.read_text()
    )


def test_unknown_run_name_is_refused(tmp_path):
    path = write_run(tmp_path, "my_run", 0.2)
    with pytest.raises(ValueError, match="my_run"):
        summarise([path])


def test_paired_table_marks_intervals_that_exclude_zero():
    def pooled(delta: float, low: float, high: float) -> dict:
        return {"delta": delta, "ci_low": low, "ci_high": high, "p_value": 0.04}

    result = {
        "title": "full_control",
        "n_pairs": 3,
        "pooled": {
            "bleu_4": pooled(-0.02, -0.03, -0.01),
            "cider": pooled(-0.1, -0.2, 0.05),
            "ce_gt_micro_f1": pooled(0.03, 0.01, 0.05),
            "ce_gt_macro_f1": pooled(0.0, -0.01, 0.01),
        },
    }
    line = paired_markdown([result]).splitlines()[2]
    assert line == (
        "| full_control | 3 | -0.020* [-0.030, -0.010] p=0.040 | -0.100 [-0.200, +0.050] p=0.040"
        " | +0.030* [+0.010, +0.050] p=0.040 | +0.000 [-0.010, +0.010] p=0.040 |"
    )


def test_label_ceiling_line_and_json(tmp_path):
    paths = [write_run(tmp_path, "bench_full_s0", 0.2, stage1_summary(0.3))]
    ceiling = tmp_path / "ceiling.json"
    test = {"micro_f1": 0.5432, "macro_f1": 0.585, "mean_auc": 0.804}
    result = {"test": test, "train_cases": 210, "test_cases": 60, "best_epoch": 33}
    ceiling.write_text(json.dumps({**result, "threshold": 0.35}))
    out_md, out_json = tmp_path / "q.md", tmp_path / "q.json"
    argv = [*map(str, paths), "--ceiling", str(ceiling)]
    assert main([*argv, "--out-md", str(out_md), "--out-json", str(out_json)]) == 0
    assert (
        "labels of the 210 training reports scores micro-F1 0.543, macro-F1 0.585 and mean AUC"
        " 0.804 on the 60 test cases (epoch 33 and threshold 0.35" in out_md.read_text()
    )
    assert json.loads(out_json.read_text())["label_ceiling"]["micro_f1"] == 0.5432

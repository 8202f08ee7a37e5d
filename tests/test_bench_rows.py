"""Benchmark rows (config overrides per run) and the method-free baselines."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch

from ctrg import config as cfg
from ctrg.bench import baseline, rows


def test_config_for_run_applies_row_overrides_and_seed():
    base = cfg.resolve({})
    merged = rows.config_for_run(base, "bench_fifo_queue_s2")
    assert merged["seed"] == 2 and merged["run"] == "bench_fifo_queue_s2"
    assert merged["stage1"]["queue"]["kind"] == "fifo"
    assert base["stage1"].get("queue", {}).get("kind") != "fifo"  # base untouched
    assert rows.config_for_run(base, base["run"]) == base
    with pytest.raises(ValueError, match="unknown row"):
        rows.config_for_run(base, "bench_nonsense_s0")


def test_every_row_parses_back_and_a_bench_name_never_falls_back_to_the_default():
    """A row name with a digit once failed to parse and its run silently trained the default
    config (bench_full_15min_s0 ran 2,000 stage-1 steps instead of 1,000)."""
    base = cfg.resolve({})
    for name in rows.load_rows()["rows"]:
        assert rows.parse_run(rows.run_name(name, 3)) == (name, 3)
    short = rows.config_for_run(base, "bench_full_15min_s1")
    assert short["stage1"]["loop"]["max_steps"] == 1000 and short["seed"] == 1
    assert short["stage2"]["decoder"]["num_layers"] == 2
    assert rows.parse_run("bench_foo_s1_s2") == ("foo_s1", 2)
    with pytest.raises(ValueError, match="is not bench_<row>_s<seed>"):
        rows.config_for_run(base, "bench_Full_s0")
    with pytest.raises(ValueError, match="rows.yaml: row names \\['Bad-row'\\]"):
        rows.check_row_names({"full": {}, "Bad-row": {}})


def test_rows_that_change_only_stage2_share_the_full_rows_stage1():
    base = cfg.resolve({})
    assert rows.stage1_run(base, "bench_all_patches_s1") == "bench_full_s1"
    assert rows.stage1_run(base, "bench_full_s1") == "bench_full_s1"
    assert rows.stage1_run(base, "bench_fifo_queue_s1") == "bench_fifo_queue_s1"
    # a row that differs from full only after stage 1 of another row shares that row's
    assert rows.stage1_run(base, "bench_finding_head_s2") == "bench_finding_head_s2"
    assert rows.stage1_run(base, "bench_finding_tokens_s2") == "bench_finding_head_s2"
    assert rows.stage1_run(base, base["run"]) == base["run"]
    # a change to the workflow config applies to both rows alike: still shared
    other = rows.deep_merge(base, {"text": {"default_sentence": "Nothing in {structure}."}})
    assert rows.stage1_run(other, "bench_all_patches_s0") == "bench_full_s0"


def test_paired_comparisons_pair_each_seed_with_the_full_row():
    seeds = rows.load_rows()["seeds"]
    names = rows.paired_comparisons()
    assert names[0] == "full_control" and "full_vs_full" not in names
    assert {"all_patches_vs_full", "baseline_nn_retrieval_vs_full"} <= set(names)
    assert "all_patches_control" in names and "baseline_nn_retrieval_control" not in names
    control = rows.paired_predictions("full_control")
    assert control["a"][1] == f"results/bench_full_s{seeds[1]}/control/predictions.csv"
    assert control["b"][1] == f"results/bench_full_s{seeds[1]}/eval/predictions.csv"
    noise = rows.paired_predictions("visual_noise_control")
    assert noise["a"][0] == f"results/bench_visual_noise_s{seeds[0]}/control/predictions.csv"
    assert noise["b"][0] == f"results/bench_visual_noise_s{seeds[0]}/eval/predictions.csv"
    fifo = rows.paired_predictions("fifo_queue_vs_full")
    assert fifo["a"] == [f"results/bench_fifo_queue_s{s}/eval/predictions.csv" for s in seeds]
    assert fifo["b"] == control["b"]
    baseline = rows.paired_predictions("baseline_most_frequent_vs_full")
    assert set(baseline["a"]) == {"results/baseline_most_frequent/eval/predictions.csv"}
    assert len(baseline["a"]) == len(seeds)
    with pytest.raises(ValueError, match="unknown comparison"):
        rows.paired_predictions("full_vs_full")
    assert rows.parse_run("bench_no_soft_targets_s12") == ("no_soft_targets", 12)
    assert rows.parse_run("default") is None


def test_named_table_restricts_rows_and_comparisons():
    paper = rows.table_rows("paper")
    assert paper[0] == "full" and "all_patches" in paper and "visual_noise" not in paper
    assert rows.table_rows() == list(rows.load_rows()["rows"])
    names = rows.paired_comparisons("paper")
    assert set(names) < set(rows.paired_comparisons())
    assert "visual_noise_control" not in names and "fifo_queue_vs_full" in names
    assert {"baseline_most_frequent_vs_full", "baseline_nn_retrieval_vs_full"} <= set(names)
    assert len(names) == 2 * len(paper) - 1 + len(rows.load_rows()["baselines"])
    with pytest.raises(ValueError, match="unknown benchmark table 'nope'"):
        rows.table_rows("nope")
    known = {"full": {}, "no_queue": {}}
    rows.check_tables({"small": ["full", "no_queue"]}, known)
    with pytest.raises(ValueError, match="table 'small'.*unknown: \\['typo'\\]"):
        rows.check_tables({"small": ["full", "typo"]}, known)
    with pytest.raises(ValueError, match="including 'full'"):
        rows.check_tables({"small": ["no_queue"]}, known)


def test_every_row_override_is_a_valid_config():
    for name, row in rows.load_rows()["rows"].items():
        merged = rows.deep_merge(cfg.resolve({}), row["overrides"])
        cfg.resolve(merged)  # raises on keys the schemas do not accept
        assert name


def test_most_frequent_report_and_nearest_neighbours():
    assert baseline.most_frequent_report(["a", "b", "b", "c"]) == "b"
    keys = torch.tensor([[1.0, 0.0], [0.0, 1.0], [0.6, 0.8]])
    queries = torch.tensor([[0.0, 2.0], [1.0, 0.1], [0.5, 0.9]])
    assert baseline.nearest_neighbours(queries, keys).tolist() == [1, 0, 2]


def test_nn_retrieval_returns_the_report_of_the_most_similar_volume(tmp_path):
    rng = np.random.default_rng(0)
    vols = {f"c{i}": rng.normal(size=(12, 24, 24)).astype(np.float16) for i in range(3)}
    vols["q"] = (vols["c1"] + 0.05 * rng.normal(size=(12, 24, 24))).astype(np.float16)
    for name, vol in vols.items():
        np.save(tmp_path / f"{name}.npy", vol)
    split = {"c0": "train", "c1": "train", "c2": "train", "q": "test"}
    pd.DataFrame(
        {
            "case_id": list(vols),
            "path": [f"{n}.npy" for n in vols],
            "split": [split[n] for n in vols],
        }
    ).to_csv(tmp_path / "manifest.csv", index=False)
    pd.DataFrame({"case_id": list(vols), "report": [f"report {n}" for n in vols]}).to_csv(
        tmp_path / "reports.csv", index=False
    )
    out = baseline.predict(
        "nn_retrieval", tmp_path / "manifest.csv", tmp_path / "reports.csv", "test"
    )
    assert out["prediction"].tolist() == ["report c1"]
    assert out["reference"].tolist() == ["report q"]

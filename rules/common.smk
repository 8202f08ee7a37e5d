# Config validation and input helpers. All logic lives in the ctrg package.
import json

import ctrg.config
from ctrg.bench.rows import (
    config_for_run,
    load_rows,
    paired_comparisons,
    paired_predictions,
    run_name,
    stage1_run,
    table_rows,
)

config.update(ctrg.config.resolve(config))
RUN = config["run"]
VOLUME_SHARDS = [f"{i:03d}" for i in range(config["preprocess"]["shards"])]
FEATURE_SHARDS = [f"{i:03d}" for i in range(config["features"]["shards"])]
BENCH = load_rows()
BENCH_BASELINES = list(BENCH["baselines"])
BENCH_TABLES = list(BENCH.get("tables", {}))


wildcard_constraints:
    shard=r"\d{3}",
    run=r"[A-Za-z0-9_.-]+",


localrules:
    shared_config,
    run_config,


def section_config(wildcards):
    """The resolved section as canonical JSON (sorted keys): a change of content, not of key
    order in config.yaml, reruns the config rule and its descendants."""
    payload = ctrg.config.section_payload(run_settings(wildcards), wildcards.section)
    return json.dumps(payload, sort_keys=True)


def run_settings(wildcards):
    """The workflow config of a run: the config itself, or a benchmark row's overrides."""
    return config_for_run(config, wildcards.get("run", RUN))


def source_manifest(wildcards):
    """The generic manifest (case_id, image, report, split) that ingestion and parsing read."""
    source = config["data"]["source"]
    if source == "phantom":
        return "results/phantom/manifest.csv"
    if source == "manifest":
        if not config["data"]["manifest"]:
            raise ValueError("data.source is 'manifest' but data.manifest is not set")
        return config["data"]["manifest"]
    return "results/source/manifest.csv"


def ground_truth_labels(wildcards):
    """Ground-truth label CSVs for clinical efficacy (empty when the data set has none)."""
    if config["data"]["source"] == "phantom":
        return ["results/phantom/labels.csv"]
    return [config["data"]["labels"]] if config["data"]["labels"] else []


def ground_truth_flags(wildcards, input):
    return " ".join(f"--ground-truth {path}" for path in input.ground_truth)


def stage1_checkpoint(wildcards):
    """The stage-1 model a run freezes and its held-out retrieval scores: its own, or for a
    benchmark row that changes only stage 2 (all_patches) the stage-1 row's of the same seed
    (ctrg.bench.rows.stage1_run), so that asking for it never trains a model nobody uses.
    """
    return f"results/{stage1_run(config, wildcards.run)}/stage1/model.pt"


def bench_table_rows(wildcards):
    """The rows of the named table in ``{table}``, or every row (rule bench_quality)."""
    return table_rows(wildcards.get("table"))


def bench_row_metrics(wildcards):
    """metrics.json of every row x seed of the table (each a separate run)."""
    return [
        f"results/{run_name(row, seed)}/eval/metrics.json"
        for row in bench_table_rows(wildcards)
        for seed in BENCH["seeds"]
    ]


def bench_heldout_retrieval(wildcards):
    """Held-out stage-1 retrieval of every row x seed of the table that trains its own stage 1."""
    runs = [
        run_name(row, seed)
        for row in bench_table_rows(wildcards)
        for seed in BENCH["seeds"]
    ]
    return [
        f"results/{run}/stage1/heldout_retrieval.json"
        for run in runs
        if stage1_run(config, run) == run
    ]


def bench_paired_inputs(wildcards):
    """A and B predictions (one pair per seed), the evaluate config and ground truth of one
    pooled paired comparison (ctrg.bench.rows.paired_predictions)."""
    return {
        **paired_predictions(wildcards.comparison),
        "cfg": f"results/{run_name('full', BENCH['seeds'][0])}/configs/evaluate.json",
        "ground_truth": ground_truth_labels(wildcards),
    }


def bench_paired_tables(wildcards):
    comparisons = paired_comparisons(wildcards.get("table"))
    return [f"results/bench/paired/{name}.json" for name in comparisons]


def bench_baseline_metrics(wildcards):
    return [f"results/baseline_{name}/eval/metrics.json" for name in BENCH_BASELINES]


def volume_shard_dirs(wildcards):
    return expand("results/volumes/shard-{shard}", shard=VOLUME_SHARDS)


def feature_shard_dirs(wildcards):
    return expand(
        "results/{run}/features/shard-{shard}", run=wildcards.run, shard=FEATURE_SHARDS
    )

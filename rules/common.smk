# Config validation and input helpers. All logic lives in the ctrg package.
import ctrg.config

config.update(ctrg.config.resolve(config))
RUN = config["run"]
SHARED_SECTIONS = ["synth", "preprocess", "text", "data"]
RUN_SECTIONS = ["text_encoder", "stage1", "features", "stage2", "generate", "evaluate"]
VOLUME_SHARDS = [f"{i:03d}" for i in range(config["preprocess"]["shards"])]
FEATURE_SHARDS = [f"{i:03d}" for i in range(config["features"]["shards"])]


wildcard_constraints:
    shard=r"\d{3}",
    run=r"[A-Za-z0-9_.-]+",
    section="|".join(ctrg.config.SECTIONS),


localrules:
    shared_config,
    run_config,


def section_config(wildcards):
    """The resolved section content; a change reruns the config rule and its descendants."""
    return ctrg.config.section_payload(config, wildcards.section)


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


def volume_shard_dirs(wildcards):
    return expand("results/volumes/shard-{shard}", shard=VOLUME_SHARDS)


def feature_shard_dirs(wildcards):
    return expand(
        "results/{run}/features/shard-{shard}", run=wildcards.run, shard=FEATURE_SHARDS
    )


rule shared_config:
    output:
        "results/configs/{section}.json",
    params:
        content=section_config,
    log:
        "logs/config/{section}.log",
    run:
        ctrg.config.write_section(config, wildcards.section, output[0])


rule run_config:
    output:
        "results/{run}/configs/{section}.json",
    params:
        content=section_config,
    log:
        "logs/{run}/config/{section}.log",
    run:
        ctrg.config.write_section(config, wildcards.section, output[0])

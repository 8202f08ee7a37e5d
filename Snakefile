# ctrg: chest CT -> structure-observation contrastive learning -> report generation.
#
# Path conventions (all relative to the working directory, see README "Artifacts"):
#   results/phantom/            built-in synthetic data set (data.source = phantom)
#   results/configs/<s>.json    resolved config of a shared stage (synth, preprocess, text)
#   results/volumes/            model-ready volumes (sharded) + manifest.csv + rejected.csv
#   results/reports/            structure sentences, structure texts, labels
#   results/<run>/...           one model configuration: text_cache, stage1, frozen,
#                               features, stage2, eval (run = config "run")
#   logs/<rule>/...log, benchmarks/<rule>/...tsv: one per job


from snakemake.utils import min_version

min_version("9.0")


configfile: "config.yaml"


include: "rules/common.smk"
include: "rules/configs.smk"
include: "rules/data.smk"
include: "rules/reports.smk"
include: "rules/stage1.smk"
include: "rules/features.smk"
include: "rules/stage2.smk"
include: "rules/evaluate.smk"
include: "rules/bench.smk"


rule all:
    default_target: True
    input:
        metrics=f"results/{RUN}/eval/metrics.json",
        control=f"results/{RUN}/control/metrics.json",
        predictions=f"results/{RUN}/eval/predictions.csv",
        labels="results/reports/labels.csv",

# Evaluation: NLG metrics (pycocoevalcap), clinical efficacy, collapse diagnostics, plots.


rule evaluate:
    input:
        predictions="results/{run}/eval/predictions.csv",
        ground_truth=ground_truth_labels,
        cfg="results/{run}/configs/evaluate.json",
    output:
        metrics=report(
            "results/{run}/eval/metrics.json",
            caption="../report/metrics.rst",
            category="Evaluation",
        ),
        table="results/{run}/eval/metrics.md",
        per_case="results/{run}/eval/per_case.csv",
    params:
        out=subpath(output.metrics, parent=True),
        gt_flags=ground_truth_flags,
    log:
        "logs/{run}/evaluate.log",
    benchmark:
        "benchmarks/{run}/evaluate.tsv"
    threads: 1
    resources:
        mem_mb=4000,
        runtime=30,
    conda:
        "../envs/ctrg.yaml"
    shell:
        "ctrg evaluate {input.predictions} --config {input.cfg} {params.gt_flags}"
        " --out {params.out} > {log} 2>&1"

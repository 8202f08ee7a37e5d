# Evaluation: NLG metrics (pycocoevalcap), clinical efficacy, collapse diagnostics, plots.


rule evaluate:
    input:
        predictions="results/{run}/eval/predictions.csv",
        ground_truth=ground_truth_labels,
        cfg="results/{run}/configs/evaluate.json",
    output:
        metrics=report(
            "results/{run}/eval/metrics.json",
            caption="captions/metrics.rst",
            category="Evaluation",
        ),
        table="results/{run}/eval/metrics.md",
        per_case="results/{run}/eval/per_case.csv",
        f1_plot=report(
            "results/{run}/eval/plots/per_label_f1.png",
            caption="captions/per_label_f1.rst",
            category="Evaluation",
        ),
        length_plot=report(
            "results/{run}/eval/plots/length_histogram.png",
            caption="captions/length_histogram.rst",
            category="Evaluation",
        ),
    log:
        "logs/{run}/evaluate.log",
    benchmark:
        "benchmarks/{run}/evaluate.tsv"
    conda:
        "../envs/ctrg.yaml"
    threads: 1
    resources:
        mem_mb=4000,
        runtime=30,
    params:
        out=subpath(output.metrics, parent=True),
        gt_flags=ground_truth_flags,
    shell:
        "ctrg evaluate {input.predictions} --config {input.cfg} {params.gt_flags}"
        " --out {params.out} > {log} 2>&1"


rule evaluate_control:
    input:
        predictions="results/{run}/control/predictions.csv",
        method="results/{run}/eval/predictions.csv",
        ground_truth=ground_truth_labels,
        cfg="results/{run}/configs/evaluate.json",
    output:
        metrics=report(
            "results/{run}/control/metrics.json",
            caption="captions/control.rst",
            category="Evaluation",
        ),
        table="results/{run}/control/metrics.md",
    log:
        "logs/{run}/evaluate_control.log",
    benchmark:
        "benchmarks/{run}/evaluate_control.tsv"
    conda:
        "../envs/ctrg.yaml"
    threads: 1
    resources:
        mem_mb=4000,
        runtime=30,
    params:
        out=subpath(output.metrics, parent=True),
        gt_flags=ground_truth_flags,
    shell:
        "ctrg evaluate {input.predictions} --config {input.cfg} {params.gt_flags}"
        " --compare {input.method} --out {params.out} > {log} 2>&1"

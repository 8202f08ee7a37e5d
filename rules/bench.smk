# Quality benchmark (issue 10): every row x seed is its own run (results/bench_<row>_s<seed>/),
# so rows run as separate jobs (in parallel on a cluster); baselines ignore the method.
# Target: snakemake --cores 2 bench_quality


ruleorder: bench_baseline > generate


rule bench_baseline:
    input:
        volumes="results/volumes/manifest.csv",
        reports="results/reports/reports.csv",
    output:
        predictions="results/baseline_{baseline}/eval/predictions.csv",
    log:
        "logs/bench/baseline_{baseline}.log",
    benchmark:
        "benchmarks/bench/baseline_{baseline}.tsv"
    wildcard_constraints:
        baseline="|".join(BENCH_BASELINES),
    conda:
        "../envs/ctrg.yaml"
    resources:
        mem_mb=4000,
        runtime=30,
    shell:
        "ctrg bench baseline {wildcards.baseline} --volumes {input.volumes}"
        " --reports {input.reports} --out {output.predictions} > {log} 2>&1"


rule stage1_heldout_retrieval:
    input:
        checkpoint=stage1_checkpoint,
        volumes="results/volumes/manifest.csv",
        text_cache="results/text_cache/embeddings.safetensors",
    output:
        json="results/{run}/stage1/heldout_retrieval.json",
    log:
        "logs/{run}/stage1_heldout_retrieval.log",
    benchmark:
        "benchmarks/{run}/stage1_heldout_retrieval.tsv"
    conda:
        "../envs/ctrg.yaml"
    threads: 2
    resources:
        mem_mb=4000,
        runtime=20,
    shell:
        "ctrg bench stage1-retrieval --model {input.checkpoint} --volumes {input.volumes}"
        " --text-cache {input.text_cache} --out-json {output.json} > {log} 2>&1"


rule bench_paired:
    input:
        unpack(bench_paired_inputs),
    output:
        table="results/bench/paired/{comparison}.md",
        json="results/bench/paired/{comparison}.json",
    log:
        "logs/bench/paired_{comparison}.log",
    benchmark:
        "benchmarks/bench/paired_{comparison}.tsv"
    wildcard_constraints:
        comparison="|".join(paired_comparisons()),
    conda:
        "../envs/ctrg.yaml"
    resources:
        mem_mb=4000,
        runtime=30,
    params:
        gt_flags=ground_truth_flags,
    shell:
        "ctrg bench paired --a {input.a} --b {input.b} --config {input.cfg} {params.gt_flags}"
        " --title {wildcards.comparison} --out-md {output.table} --out-json {output.json}"
        " > {log} 2>&1"


rule bench_label_ceiling:
    input:
        volumes="results/volumes/manifest.csv",
        labels="results/reports/labels.csv",
        truth=ground_truth_labels,
    output:
        json="results/bench/label_ceiling.json",
    log:
        "logs/bench/label_ceiling.log",
    benchmark:
        "benchmarks/bench/label_ceiling.tsv"
    conda:
        "../envs/ctrg.yaml"
    threads: 2
    resources:
        mem_mb=6000,
        runtime=60,
    shell:
        "ctrg bench label-ceiling --volumes {input.volumes} --labels {input.labels}"
        " --ground-truth {input.truth} --out-json {output.json} > {log} 2>&1"


rule bench_quality:
    input:
        rows=bench_row_metrics,
        heldout=bench_heldout_retrieval,
        baselines=bench_baseline_metrics,
        paired=bench_paired_tables,
        ceiling="results/bench/label_ceiling.json",
    output:
        table="results/bench/quality.md",
        json="results/bench/quality.json",
    log:
        "logs/bench/quality.log",
    benchmark:
        "benchmarks/bench/quality.tsv"
    conda:
        "../envs/ctrg.yaml"
    resources:
        mem_mb=1000,
        runtime=10,
    params:
        benchmarks="benchmarks",
    shell:
        "ctrg bench quality {input.rows} {input.baselines} --paired {input.paired}"
        " --ceiling {input.ceiling} --benchmarks {params.benchmarks}"
        " --out-md {output.table} --out-json {output.json} > {log} 2>&1"


rule bench_quality_table:
    input:
        rows=bench_row_metrics,
        heldout=bench_heldout_retrieval,
        baselines=bench_baseline_metrics,
        paired=bench_paired_tables,
    output:
        table="results/bench/quality_{table}.md",
        json="results/bench/quality_{table}.json",
    log:
        "logs/bench/quality_{table}.log",
    benchmark:
        "benchmarks/bench/quality_{table}.tsv"
    wildcard_constraints:
        table="|".join(BENCH_TABLES),
    conda:
        "../envs/ctrg.yaml"
    resources:
        mem_mb=1000,
        runtime=10,
    params:
        benchmarks="benchmarks",
    shell:
        "ctrg bench quality {input.rows} {input.baselines} --paired {input.paired}"
        " --benchmarks {params.benchmarks} --out-md {output.table} --out-json {output.json}"
        " > {log} 2>&1"

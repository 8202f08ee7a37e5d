# Stage 2: report decoder on the frozen queries' selected patch features; generation.


rule stage2:
    input:
        features="results/{run}/features/index.csv",
        frozen="results/{run}/frozen/frozen.json",
        reports="results/reports/reports.csv",
        labels="results/reports/labels.csv",
        cfg="results/{run}/configs/stage2.json",
    output:
        checkpoint="results/{run}/stage2/model.pt",
        summary="results/{run}/stage2/summary.json",
    log:
        "logs/{run}/stage2.log",
    benchmark:
        "benchmarks/{run}/stage2.tsv"
    conda:
        "../envs/ctrg.yaml"
    threads: 2
    resources:
        mem_mb=8000,
        runtime=720,
        gpu=1,
    params:
        out=subpath(output.checkpoint, parent=True),
    shell:
        "python -m ctrg.launch --nproc {resources.gpu} --"
        " stage2 --config {input.cfg} --features {input.features} --frozen {input.frozen}"
        " --reports {input.reports} --labels {input.labels} --out {params.out}"
        " --resume auto --threads {threads} > {log} 2>&1"


rule generate:
    input:
        checkpoint="results/{run}/stage2/model.pt",
        features="results/{run}/features/index.csv",
        reports="results/reports/reports.csv",
        cfg="results/{run}/configs/generate.json",
    output:
        predictions="results/{run}/eval/predictions.csv",
    log:
        "logs/{run}/generate.log",
    benchmark:
        "benchmarks/{run}/generate.tsv"
    conda:
        "../envs/ctrg.yaml"
    threads: 2
    resources:
        mem_mb=4000,
        runtime=60,
        gpu=1,
    shell:
        "ctrg generate-features {input.features} --model {input.checkpoint}"
        " --reports {input.reports} --config {input.cfg} --out {output.predictions}"
        " --threads {threads} > {log} 2>&1"


rule generate_shuffled:
    input:
        checkpoint="results/{run}/stage2/model.pt",
        features="results/{run}/features/index.csv",
        reports="results/reports/reports.csv",
        cfg="results/{run}/configs/generate.json",
    output:
        predictions="results/{run}/control/predictions.csv",
    log:
        "logs/{run}/generate_shuffled.log",
    benchmark:
        "benchmarks/{run}/generate_shuffled.tsv"
    conda:
        "../envs/ctrg.yaml"
    threads: 2
    resources:
        mem_mb=4000,
        runtime=60,
        gpu=1,
    shell:
        "ctrg generate-features {input.features} --model {input.checkpoint}"
        " --reports {input.reports} --config {input.cfg} --out {output.predictions}"
        " --shuffle-features --threads {threads} > {log} 2>&1"

# Stage 1: frozen text encoder cache -> structure-observation contrastive training.


rule encode_texts:
    input:
        texts="results/reports/structure_texts.csv",
        cfg="results/configs/text_encoder.json",
    output:
        cache="results/text_cache/embeddings.safetensors",
    log:
        "logs/encode_texts/encode_texts.log",
    benchmark:
        "benchmarks/encode_texts/encode_texts.tsv"
    conda:
        "../envs/ctrg.yaml"
    threads: 2
    resources:
        mem_mb=4000,
        runtime=60,
        gpu=1,
    shell:
        "ctrg encode-texts {input.texts} --config {input.cfg} --out {output.cache}"
        " > {log} 2>&1"


rule stage1:
    input:
        volumes="results/volumes/manifest.csv",
        texts="results/reports/structure_texts.csv",
        cache="results/text_cache/embeddings.safetensors",
        labels="results/reports/labels.csv",
        cfg="results/{run}/configs/stage1.json",
    output:
        checkpoint="results/{run}/stage1/model.pt",
        summary="results/{run}/stage1/summary.json",
    log:
        "logs/{run}/stage1.log",
    benchmark:
        "benchmarks/{run}/stage1.tsv"
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
        " stage1 --config {input.cfg} --volumes {input.volumes}"
        " --texts {input.texts} --text-cache {input.cache} --labels {input.labels}"
        " --out {params.out} --resume auto --threads {threads} > {log} 2>&1"

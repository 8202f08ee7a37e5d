# Stage 1: frozen text encoder cache -> structure-observation contrastive training.


rule encode_texts:
    input:
        texts="results/reports/structure_texts.csv",
        cfg="results/{run}/configs/text_encoder.json",
    output:
        cache="results/{run}/text_cache/embeddings.safetensors",
    log:
        "logs/{run}/encode_texts.log",
    benchmark:
        "benchmarks/{run}/encode_texts.tsv"
    threads: 2
    resources:
        mem_mb=4000,
        runtime=60,
        gpu=1,
    conda:
        "../envs/ctrg.yaml"
    shell:
        "ctrg encode-texts {input.texts} --config {input.cfg} --out {output.cache}"
        " > {log} 2>&1"


rule stage1:
    input:
        volumes="results/volumes/manifest.csv",
        texts="results/reports/structure_texts.csv",
        cache="results/{run}/text_cache/embeddings.safetensors",
        cfg="results/{run}/configs/stage1.json",
    output:
        checkpoint="results/{run}/stage1/model.pt",
        summary="results/{run}/stage1/summary.json",
    params:
        out=subpath(output.checkpoint, parent=True),
    log:
        "logs/{run}/stage1.log",
    benchmark:
        "benchmarks/{run}/stage1.tsv"
    threads: 2
    resources:
        mem_mb=8000,
        runtime=720,
        gpu=1,
    conda:
        "../envs/ctrg.yaml"
    shell:
        "ctrg stage1 --config {input.cfg} --volumes {input.volumes}"
        " --texts {input.texts} --text-cache {input.cache} --out {params.out}"
        " --resume auto > {log} 2>&1"

# Query freezing and patch-feature extraction (sharded, one GPU job per shard).


rule freeze:
    input:
        checkpoint=stage1_checkpoint,
    output:
        frozen="results/{run}/frozen/model.safetensors",
        meta="results/{run}/frozen/frozen.json",
    log:
        "logs/{run}/freeze.log",
    benchmark:
        "benchmarks/{run}/freeze.tsv"
    conda:
        "../envs/ctrg.yaml"
    resources:
        mem_mb=4000,
        runtime=10,
    shell:
        "ctrg freeze {input.checkpoint} --out {output.frozen} > {log} 2>&1"


rule extract_features:
    input:
        frozen="results/{run}/frozen/model.safetensors",
        meta="results/{run}/frozen/frozen.json",
        volumes="results/volumes/manifest.csv",
        cfg="results/{run}/configs/features.json",
    output:
        shard=directory("results/{run}/features/shard-{shard}"),
    log:
        "logs/{run}/extract_features/{shard}.log",
    benchmark:
        "benchmarks/{run}/extract_features/{shard}.tsv"
    conda:
        "../envs/ctrg.yaml"
    threads: 1
    resources:
        mem_mb=4000,
        runtime=60,
        gpu=1,
    params:
        num_shards=len(FEATURE_SHARDS),
    shell:
        "ctrg extract {input.volumes} --frozen {input.frozen} --config {input.cfg}"
        " --shard {wildcards.shard} --num-shards {params.num_shards} --out {output.shard}"
        " --threads {threads} > {log} 2>&1"


rule gather_features:
    input:
        shards=feature_shard_dirs,
    output:
        index="results/{run}/features/index.csv",
    log:
        "logs/{run}/gather_features.log",
    benchmark:
        "benchmarks/{run}/gather_features.tsv"
    conda:
        "../envs/ctrg.yaml"
    resources:
        mem_mb=1000,
        runtime=10,
    shell:
        "ctrg gather-features {input.shards} --out {output.index} > {log} 2>&1"

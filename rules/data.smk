# Data: the built-in phantom (or a public data set's layout) -> sharded ingestion -> gather.


rule synth:
    input:
        cfg="results/configs/synth.json",
    output:
        manifest="results/phantom/manifest.csv",
        labels="results/phantom/labels.csv",
    log:
        "logs/synth/synth.log",
    benchmark:
        "benchmarks/synth/synth.tsv"
    conda:
        "../envs/ctrg.yaml"
    threads: 2
    resources:
        mem_mb=4000,
        runtime=30,
    params:
        out=subpath(output.manifest, parent=True),
    shell:
        "ctrg synth --config {input.cfg} --out {params.out} --threads {threads} > {log} 2>&1"


rule source_manifest:
    input:
        cfg="results/configs/data.json",
    output:
        manifest="results/source/manifest.csv",
    log:
        "logs/source_manifest/source_manifest.log",
    benchmark:
        "benchmarks/source_manifest/source_manifest.tsv"
    conda:
        "../envs/ctrg.yaml"
    resources:
        mem_mb=2000,
        runtime=30,
    shell:
        "ctrg make-manifest --config {input.cfg} --out {output.manifest} > {log} 2>&1"


rule ingest:
    input:
        manifest=source_manifest,
        cfg="results/configs/preprocess.json",
    output:
        shard=directory("results/volumes/shard-{shard}"),
    log:
        "logs/ingest/{shard}.log",
    benchmark:
        "benchmarks/ingest/{shard}.tsv"
    conda:
        "../envs/ctrg.yaml"
    threads: 1
    resources:
        mem_mb=4000,
        runtime=60,
    params:
        num_shards=len(VOLUME_SHARDS),
    shell:
        "ctrg ingest {input.manifest} --config {input.cfg} --shard {wildcards.shard}"
        " --num-shards {params.num_shards} --threads {threads} --out {output.shard}"
        " > {log} 2>&1"


rule gather_volumes:
    input:
        shards=volume_shard_dirs,
    output:
        manifest="results/volumes/manifest.csv",
        rejected="results/volumes/rejected.csv",
    log:
        "logs/gather_volumes/gather_volumes.log",
    benchmark:
        "benchmarks/gather_volumes/gather_volumes.tsv"
    conda:
        "../envs/ctrg.yaml"
    resources:
        mem_mb=1000,
        runtime=10,
    params:
        out=subpath(output.manifest, parent=True),
    shell:
        "ctrg gather-volumes {input.shards} --out {params.out} > {log} 2>&1"

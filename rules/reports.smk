# Reports: findings text -> per-structure sentences and texts; abnormality labels.


rule parse_reports:
    input:
        manifest=source_manifest,
        cfg="results/configs/text.json",
    output:
        sentences="results/reports/sentences.csv",
        texts="results/reports/structure_texts.csv",
        reports="results/reports/reports.csv",
        summary="results/reports/parse_summary.json",
    log:
        "logs/parse_reports/parse_reports.log",
    benchmark:
        "benchmarks/parse_reports/parse_reports.tsv"
    conda:
        "../envs/ctrg.yaml"
    resources:
        mem_mb=2000,
        runtime=30,
    shell:
        "ctrg parse-reports {input.manifest} --id-column case_id --text-column report"
        " --config {input.cfg} --out {output.sentences} --texts-out {output.texts}"
        " --reports-out {output.reports} --summary-out {output.summary} > {log} 2>&1"


rule label_reports:
    input:
        manifest=source_manifest,
    output:
        labels="results/reports/labels.csv",
    log:
        "logs/label_reports/label_reports.log",
    benchmark:
        "benchmarks/label_reports/label_reports.tsv"
    conda:
        "../envs/ctrg.yaml"
    resources:
        mem_mb=2000,
        runtime=30,
    shell:
        "ctrg label-reports {input.manifest} --id-column case_id --text-column report"
        " --out {output.labels} > {log} 2>&1"

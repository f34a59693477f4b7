# The per-run tables of one kind, concatenated into results/<table>.parquet for the report.
rule collect:
    input:
        per_run_tables,
    output:
        "results/{table}.parquet",
    wildcard_constraints:
        table="|".join(PER_RUN_TABLES),
    log:
        "results/logs/collect_{table}.log",
    conda:
        ENV
    shell:
        "segbench collect {input} --out {output} > {log} 2>&1"


rule paper_results:
    input:
        config["report"]["paper_results"],
    output:
        "results/paper_results.parquet",
    log:
        "results/logs/paper_results.log",
    conda:
        ENV
    shell:
        "segbench collect {input} --out {output} > {log} 2>&1"

rule collect_metrics:
    input:
        expand("results/{dataset}/{model}/metrics.parquet", dataset=DATASET, model=RUNS),
        expand("results/{dataset}/majority_baseline.parquet", dataset=DATASET),
    output:
        "results/metrics.parquet",
    log:
        "results/logs/collect_metrics.log",
    conda:
        ENV
    shell:
        "segbench collect {input} --out {output} > {log} 2>&1"


rule collect_confusion:
    input:
        expand("results/{dataset}/{model}/confusion.parquet", dataset=DATASET, model=RUNS),
    output:
        "results/confusion.parquet",
    log:
        "results/logs/collect_confusion.log",
    conda:
        ENV
    shell:
        "segbench collect {input} --out {output} > {log} 2>&1"


rule collect_train_log:
    input:
        expand("results/{dataset}/{model}/train_log.parquet", dataset=DATASET, model=RUNS),
    output:
        "results/train_log.parquet",
    log:
        "results/logs/collect_train_log.log",
    conda:
        ENV
    shell:
        "segbench collect {input} --out {output} > {log} 2>&1"


rule collect_bench:
    input:
        expand("results/{dataset}/{model}/bench.parquet", dataset=DATASET, model=RUNS),
    output:
        "results/bench.parquet",
    log:
        "results/logs/collect_bench.log",
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


rule collect_crf_search:
    input:
        expand("results/{dataset}/{model}/crf_search.parquet", dataset=DATASET, model=RUNS),
    output:
        "results/crf_search.parquet",
    log:
        "results/logs/collect_crf_search.log",
    conda:
        ENV
    shell:
        "segbench collect {input} --out {output} > {log} 2>&1"

rule train:
    input:
        data="resources/{dataset}/VOCdevkit",
    output:
        checkpoint="results/{dataset}/{model}/checkpoint.pt",
        log_table="results/{dataset}/{model}/train_log.parquet",
    params:
        args=train_args,
        config_hash=lambda wildcards: config_hash(wildcards.model),
        data=dataset_root,
    # The cores shared out over the runs: on a CPU, two single-threaded trainings
    # side by side finish sooner than two multi-threaded ones in turn. Profiles set it.
    threads: max(1, workflow.cores // len(RUNS))
    log:
        "results/{dataset}/{model}/logs/train.log",
    benchmark:
        "results/{dataset}/{model}/logs/train.benchmark.tsv"
    conda:
        ENV
    shell:
        "segbench train --data {params.data} --run-name {wildcards.model} --out-dir results/{wildcards.dataset}/{wildcards.model}"
        " --threads {threads} --config-hash {params.config_hash} {params.args} > {log} 2>&1"

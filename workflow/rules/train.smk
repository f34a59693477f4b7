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
    threads: cores_per_run()
    log:
        "results/{dataset}/{model}/logs/train.log",
    benchmark:
        "results/{dataset}/{model}/logs/train.benchmark.tsv"
    conda:
        ENV
    shell:
        "segbench train --data {params.data} --run-name {wildcards.model} --out-dir results/{wildcards.dataset}/{wildcards.model}"
        " --threads {threads} --config-hash {params.config_hash} {params.args} > {log} 2>&1"

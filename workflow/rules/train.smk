rule train:
    input:
        data="resources/{dataset}/VOCdevkit",
        init=init_checkpoint,
    output:
        checkpoint="results/{dataset}/{model}/checkpoint.pt",
        log_table="results/{dataset}/{model}/train_log.parquet",
    params:
        args=train_args,
        config_hash=lambda wildcards: config_hash(wildcards.model),
        data=dataset_root,
        launcher=train_launcher,
    threads: cores_per_run()
    resources:
        # sbatch --gres: one GPU per process of a (torchrun) run.
        gres=lambda wildcards: f"gpu:{RUNS[wildcards.model]['gpus']}",
    log:
        "results/{dataset}/{model}/logs/train.log",
    benchmark:
        "results/{dataset}/{model}/logs/train.benchmark.tsv"
    conda:
        ENV
    shell:
        "{params.launcher} train --data {params.data} --run-name {wildcards.model} --out-dir results/{wildcards.dataset}/{wildcards.model}"
        " --threads {threads} --config-hash {params.config_hash} {params.args} > {log} 2>&1"

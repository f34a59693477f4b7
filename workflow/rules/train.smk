def train_args(wildcards):
    run = RUNS[wildcards.model]
    settings = train_settings(wildcards.model)
    args = [
        f"--model {run['arch']}",
        f"--width {run['width']}",
        f"--split {config['dataset']['train_split']}",
        f"--num-classes {config['dataset']['num_classes']}",
        f"--pretrained-backbone {run['pretrained_backbone']}",
        flags(settings),
        *(f"--option {key}={json.dumps(value)!r}" for key, value in run["options"].items()),
    ]
    return " ".join(args)


rule train:
    input:
        data="resources/{dataset}/VOCdevkit",
    output:
        checkpoint="results/{dataset}/{model}/checkpoint.pt",
        log_table="results/{dataset}/{model}/train_log.parquet",
    params:
        args=train_args,
        config_hash=lambda wildcards: config_hash(wildcards.model),
        data=data_root,
    # One thread per run: on a CPU, two single-threaded trainings side by side
    # finish sooner than two multi-threaded ones in turn. Profiles raise it.
    threads: 1
    log:
        "results/{dataset}/{model}/logs/train.log",
    benchmark:
        "results/{dataset}/{model}/logs/train.benchmark.tsv"
    conda:
        ENV
    shell:
        "segbench train --data {params.data} --run-name {wildcards.model} --out-dir results/{wildcards.dataset}/{wildcards.model}"
        " --threads {threads} --config-hash {params.config_hash} {params.args} > {log} 2>&1"

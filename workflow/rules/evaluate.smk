rule evaluate:
    input:
        data="resources/{dataset}/VOCdevkit",
        checkpoint="results/{dataset}/{model}/checkpoint.pt",
        pred="results/{dataset}/{model}/pred",
        crf="results/{dataset}/{model}/crf",
    output:
        metrics="results/{dataset}/{model}/metrics.parquet",
        # Per-image confusion matrices: intervals and paired comparisons without rerunning a model.
        confusion="results/{dataset}/{model}/confusion.parquet",
    params:
        data=dataset_root,
        split=config["dataset"]["val_split"],
        schema=METRICS_SCHEMA,
    log:
        "results/{dataset}/{model}/logs/evaluate.log",
    conda:
        ENV
    shell:
        "segbench evaluate --data {params.data} --split {params.split} --dataset {wildcards.dataset}"
        " --model {wildcards.model} --checkpoint {input.checkpoint} --pred-dir {input.pred}"
        " --crf-dir {input.crf} --out {output.metrics} > {log} 2>&1"


rule majority_baseline:
    input:
        data="resources/{dataset}/VOCdevkit",
    output:
        "results/{dataset}/majority_baseline.parquet",
    params:
        data=dataset_root,
        train_split=config["dataset"]["train_split"],
        split=config["dataset"]["val_split"],
        schema=METRICS_SCHEMA,
    log:
        "results/{dataset}/logs/majority_baseline.log",
    conda:
        ENV
    shell:
        "segbench evaluate --majority-baseline --data {params.data} --train-split {params.train_split}"
        " --split {params.split} --dataset {wildcards.dataset} --out {output} > {log} 2>&1"

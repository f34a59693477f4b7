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
        # Per-image pixel accuracy, mIoU and boundary F-score: the report's hardest images.
        per_image="results/{dataset}/{model}/per_image.parquet",
    params:
        data=dataset_root,
        split=config["dataset"]["val_split"],
        schema=METRICS_SCHEMA,
    # Images are scored in parallel processes (the distance transforms of the boundary metrics
    # dominate: docs/BENCHMARKS.md, "Evaluation speed").
    threads: cores_per_run()
    log:
        "results/{dataset}/{model}/logs/evaluate.log",
    conda:
        ENV
    shell:
        "segbench evaluate --data {params.data} --split {params.split} --dataset {wildcards.dataset}"
        " --run-name {wildcards.model} --checkpoint {input.checkpoint} --pred-dir {input.pred}"
        " --crf-dir {input.crf} --processes {threads} --out {output.metrics} > {log} 2>&1"


rule majority_baseline:
    input:
        data="resources/{dataset}/VOCdevkit",
    output:
        # A folder of its own, as a run's: the confusion matrices go beside the metrics.
        metrics="results/{dataset}/majority_baseline/metrics.parquet",
        confusion="results/{dataset}/majority_baseline/confusion.parquet",
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
        " --split {params.split} --dataset {wildcards.dataset} --out {output.metrics} > {log} 2>&1"

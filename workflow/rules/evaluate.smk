rule evaluate:
    input:
        data="resources/{dataset}/VOCdevkit",
        checkpoint="results/{dataset}/{model}/checkpoint.pt",
        pred="results/{dataset}/{model}/pred",
        crf="results/{dataset}/{model}/crf",
    output:
        "results/{dataset}/{model}/metrics.parquet",
    params:
        data=dataset_root,
        split=config["dataset"]["val_split"],
    log:
        "results/{dataset}/{model}/logs/evaluate.log",
    conda:
        ENV
    shell:
        "segbench evaluate --data {params.data} --split {params.split} --dataset {wildcards.dataset}"
        " --model {wildcards.model} --checkpoint {input.checkpoint} --pred-dir {input.pred}"
        " --crf-dir {input.crf} --out {output} > {log} 2>&1"

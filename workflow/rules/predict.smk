rule predict:
    input:
        data="resources/{dataset}/VOCdevkit",
        checkpoint="results/{dataset}/{model}/checkpoint.pt",
    output:
        pred=directory("results/{dataset}/{model}/pred"),
        probs=directory("results/{dataset}/{model}/probs"),
    params:
        data=dataset_root,
        split=config["dataset"]["val_split"],
        stride=config["predict"]["prob_stride"],
        options=predict_args,
    threads: 1
    log:
        "results/{dataset}/{model}/logs/predict.log",
    benchmark:
        "results/{dataset}/{model}/logs/predict.benchmark.tsv"
    conda:
        ENV
    shell:
        "segbench predict --data {params.data} --split {params.split} --checkpoint {input.checkpoint}"
        " --pred-dir {output.pred} --probs-dir {output.probs} --prob-stride {params.stride} {params.options}"
        " --threads {threads} > {log} 2>&1"

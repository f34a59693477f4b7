rule crf:
    input:
        data="resources/{dataset}/VOCdevkit",
        probs="results/{dataset}/{model}/probs",
    output:
        directory("results/{dataset}/{model}/crf"),
    params:
        data=data_root,
        split=config["dataset"]["val_split"],
        args=flags(config["crf"]),
    # The CRF parallelises over images: give it every core it may have.
    threads: workflow.cores
    log:
        "results/{dataset}/{model}/logs/crf.log",
    benchmark:
        "results/{dataset}/{model}/logs/crf.benchmark.tsv"
    conda:
        ENV
    shell:
        "segbench crf --data {params.data} --split {params.split} --probs-dir {input.probs}"
        " --out-dir {output} --threads {threads} {params.args} > {log} 2>&1"

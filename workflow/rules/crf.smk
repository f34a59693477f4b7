rule crf_search:
    input:
        data="resources/{dataset}/VOCdevkit",
        probs="results/{dataset}/{model}/probs",
    output:
        "results/{dataset}/{model}/crf_search.parquet",
    params:
        data=dataset_root,
        split=config["dataset"]["val_split"],
        preset=config["crf"]["preset"],
        grid=crf_search_grid(),
        subset=SEARCH["subset"],
    threads: cores_per_run()
    log:
        "results/{dataset}/{model}/logs/crf_search.log",
    benchmark:
        "results/{dataset}/{model}/logs/crf_search.benchmark.tsv"
    conda:
        ENV
    shell:
        "segbench crf-search --data {params.data} --split {params.split} --probs-dir {input.probs}"
        " --subset {params.subset} --preset {params.preset} {params.grid} --processes {threads}"
        " --dataset {wildcards.dataset} --run-name {wildcards.model} --out {output} > {log} 2>&1"


rule crf:
    input:
        data="resources/{dataset}/VOCdevkit",
        probs="results/{dataset}/{model}/probs",
        search=crf_search_table,
    output:
        directory("results/{dataset}/{model}/crf"),
    params:
        data=dataset_root,
        split=config["dataset"]["val_split"],
        args=crf_args,
    # The CRF parallelises over images (one process per thread).
    threads: cores_per_run()
    log:
        "results/{dataset}/{model}/logs/crf.log",
    benchmark:
        "results/{dataset}/{model}/logs/crf.benchmark.tsv"
    conda:
        ENV
    shell:
        "segbench crf --data {params.data} --split {params.split} --probs-dir {input.probs}"
        " --out-dir {output} --processes {threads} {params.args} > {log} 2>&1"

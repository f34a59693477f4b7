rule bench:
    input:
        checkpoint="results/{dataset}/{model}/checkpoint.pt",
    output:
        "results/{dataset}/{model}/bench.parquet",
    params:
        size=lambda wildcards: f"{config['bench']['height']}x{config['bench']['width']}",
        warmup=config["bench"]["warmup"],
        repeats=config["bench"]["repeats"],
        config_hash=lambda wildcards: config_hash(wildcards.model),
    # All cores: locally nothing else runs while latency is measured.
    threads: workflow.cores
    log:
        "results/{dataset}/{model}/logs/bench.log",
    conda:
        ENV
    shell:
        "segbench bench --checkpoint {input.checkpoint} --size {params.size} --warmup {params.warmup}"
        " --repeats {params.repeats} --threads {threads} --run-name {wildcards.model}"
        " --dataset {wildcards.dataset} --config-hash {params.config_hash} --out {output} > {log} 2>&1"


rule bench_crf:
    output:
        "results/crf_bench.parquet",
    params:
        images=f"--crf-images {config['bench']['crf_images']}" if config["bench"]["crf_images"] else "",
    # All cores: the benchmark measures the speed-up from parallel workers.
    threads: workflow.cores
    log:
        "results/logs/bench_crf.log",
    conda:
        ENV
    shell:
        "segbench bench --crf --size 375x500 {params.images} --repeats 3 --threads {threads}"
        " --out {output} > {log} 2>&1"

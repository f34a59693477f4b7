rule bench:
    input:
        checkpoint="results/{dataset}/{model}/checkpoint.pt",
        crf_bench="results/{dataset}/bench_crf_e2e.parquet",
    output:
        "results/{dataset}/{model}/bench.parquet",
    params:
        size=lambda wildcards: f"{config['bench']['height']}x{config['bench']['width']}",
        warmup=config["bench"]["warmup"],
        repeats=config["bench"]["repeats"],
        throughput_batch=config["bench"]["throughput_batch"],
        options=f"--amp {config['bench']['amp']}{' --compile' if config['bench']['compile'] else ''}",
        config_hash=lambda wildcards: config_hash(wildcards.model),
    # All cores: locally nothing else runs while latency is measured.
    threads: workflow.cores
    log:
        "results/{dataset}/{model}/logs/bench.log",
    conda:
        ENV
    shell:
        "segbench bench --checkpoint {input.checkpoint} --size {params.size} --warmup {params.warmup}"
        " --repeats {params.repeats} --throughput-batch {params.throughput_batch} {params.options}"
        " --threads {threads} --crf-bench {input.crf_bench} --run-name {wildcards.model}"
        " --dataset {wildcards.dataset} --config-hash {params.config_hash} --out {output} > {log} 2>&1"


# The CRF term of every run's e2e_latency: the CRF stage at the model benchmark's input size,
# with the dataset's classes and the configured preset and iterations (one time per dataset: the
# runs' searched kernels are not used), in one process, as one image's CRF runs.
# 4 images x 3 rounds: the figure is the median over rounds of the per-image mean.
rule bench_crf_e2e:
    output:
        "results/{dataset}/bench_crf_e2e.parquet",
    params:
        size=lambda wildcards: f"{config['bench']['height']}x{config['bench']['width']}",
        classes=config["dataset"]["num_classes"],
        crf=flags({k: config["crf"][k] for k in ("preset", "iterations") if k in config["crf"]}),
    # All cores, as bench: nothing else runs while it is timed.
    threads: workflow.cores
    log:
        "results/{dataset}/logs/bench_crf_e2e.log",
    conda:
        ENV
    shell:
        "segbench bench-crf --size {params.size} --num-classes {params.classes} {params.crf}"
        " --images 4 --repeats 3 --processes 1 --out {output} > {log} 2>&1"


rule bench_crf:
    output:
        "results/crf_bench.parquet",
    params:
        images=f"--images {config['bench']['crf_images']}" if config["bench"]["crf_images"] else "",
    # All cores: the benchmark measures the speed-up from parallel workers.
    threads: workflow.cores
    log:
        "results/logs/bench_crf.log",
    conda:
        ENV
    shell:
        "segbench bench-crf --size 375x500 {params.images} --repeats 3 --processes {threads}"
        " --out {output} > {log} 2>&1"

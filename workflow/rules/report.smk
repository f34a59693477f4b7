rule report:
    input:
        metrics="results/metrics.parquet",
        bench="results/bench.parquet",
        paper="results/paper_results.parquet",
        crf_bench="results/crf_bench.parquet",
        train_log="results/train_log.parquet",
        confusion="results/confusion.parquet",
        data=expand("resources/{dataset}/VOCdevkit", dataset=DATASET),
        crf=expand("results/{dataset}/{model}/crf", dataset=DATASET, model=RUNS),
        crf_search=["results/crf_search.parquet"] if SEARCH["enabled"] else [],
    output:
        html="results/report/index.html",
        markdown="results/report/report.md",
        miou=report("results/report/figures/miou.png", caption="../report/miou.rst", category="Accuracy"),
        per_class=report(
            "results/report/figures/per_class_iou.png", caption="../report/per_class_iou.rst", category="Accuracy"
        ),
        speed=report(
            "results/report/figures/speed_accuracy.png", caption="../report/speed_accuracy.rst", category="Speed"
        ),
    params:
        crf_search=lambda wildcards, input: f"--crf-search {input.crf_search}" if SEARCH["enabled"] else "",
        data=lambda wildcards, input: os.path.dirname(input.data[0]),
        runs=lambda wildcards, input: os.path.dirname(os.path.dirname(input.crf[0])),
        split=config["dataset"]["val_split"],
        samples=config["report"]["samples"],
    log:
        "results/logs/report.log",
    conda:
        ENV
    shell:
        "segbench report --metrics {input.metrics} --bench {input.bench} --paper {input.paper} --crf-bench {input.crf_bench}"
        " --train-log {input.train_log} --confusion {input.confusion} --data {params.data} --split {params.split} --runs-dir {params.runs} --samples {params.samples} {params.crf_search}"
        " --out-dir results/report > {log} 2>&1"

rule report:
    input:
        metrics="results/metrics.parquet",
        bench="results/bench.parquet",
        paper="results/paper_results.parquet",
        crf_bench="results/crf_bench.parquet",
        train_log="results/train_log.parquet",
        confusion="results/confusion.parquet",
        per_image="results/per_image.parquet",
        data=expand("resources/{dataset}/VOCdevkit", dataset=DATASET),
        crf=expand("results/{dataset}/{model}/crf", dataset=DATASET, model=RUNS),
        crf_search=["results/crf_search.parquet"] if SEARCH["enabled"] else [],
    output:
        html="results/report/index.html",
        markdown="results/report/report.md",
        # Which figures and tables there are depends on the runs and on the tables given (the
        # qualitative grids are named after the runs): folders, whose files the patterns list.
        figures=report(
            directory("results/report/figures"),
            patterns=["{figure}.png"],
            caption="../report/figures.rst",
            category="Figures",
            labels={"figure": "{figure}"},
        ),
        tables=report(
            directory("results/report/tables"),
            patterns=["{table}.html"],
            caption="../report/tables.rst",
            category="Tables",
            labels={"table": "{table}"},
        ),
    params:
        crf_search=lambda wildcards, input: f"--crf-search {input.crf_search}" if SEARCH["enabled"] else "",
        data=lambda wildcards, input: os.path.dirname(input.data[0]),
        runs=lambda wildcards, input: os.path.dirname(os.path.dirname(input.crf[0])),
        split=config["dataset"]["val_split"],
        train_split=config["dataset"]["train_split"],
        samples=config["report"]["samples"],
    log:
        "results/logs/report.log",
    conda:
        ENV
    shell:
        "segbench report --metrics {input.metrics} --bench {input.bench} --paper {input.paper} --crf-bench {input.crf_bench}"
        " --train-log {input.train_log} --confusion {input.confusion} --per-image {input.per_image}"
        " --data {params.data} --split {params.split} --train-split {params.train_split} --runs-dir {params.runs}"
        " --samples {params.samples} {params.crf_search}"
        " --out-dir results/report > {log} 2>&1"

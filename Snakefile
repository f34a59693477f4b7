# segbench: prepare -> train -> predict -> crf -> evaluate / bench -> collect -> report.
# Every rule calls one `segbench` subcommand; Parquet flows between stages.
from snakemake.utils import min_version

min_version("8.0")


# The embedded demo's config is only the default: Snakemake would merge a --configfile on top
# of a `configfile:` loaded here, so that the VOC run inherited the demo's runs and widths.
if not config:

    configfile: "config/config.yaml"


include: "workflow/rules/common.smk"
include: "workflow/rules/prepare.smk"
include: "workflow/rules/train.smk"
include: "workflow/rules/predict.smk"
include: "workflow/rules/crf.smk"
include: "workflow/rules/evaluate.smk"
include: "workflow/rules/bench.smk"
include: "workflow/rules/collect.smk"
include: "workflow/rules/report.smk"


rule all:
    default_target: True
    input:
        "results/report/index.html",

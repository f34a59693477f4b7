# Downloading VOC needs the network, which cluster nodes often lack: run it where
# Snakemake runs (the login node); generating the embedded dataset is cheap anyway.
localrules:
    prepare,


rule prepare:
    output:
        directory("resources/{dataset}/VOCdevkit"),
    params:
        args=prepare_args,
    log:
        "resources/{dataset}/prepare.log",
    conda:
        ENV
    shell:
        "segbench prepare {params.args} --out resources/{wildcards.dataset} > {log} 2>&1"

import difflib
import hashlib
import json
import os
import shlex

from snakemake.utils import validate

from segbench.schema import TABLES


# A run's own training settings as written: validation below fills in every
# default, and a filled-in default must not override the global setting.
TRAIN_OVERRIDES = {name: dict(run.get("train") or {}) for name, run in config.get("models", {}).items()}

# Fills in the schema's defaults, so rules can index config without .get().
validate(config, schema="../schemas/config.schema.yaml")

DATASET = config["dataset"]["name"]
if config["dataset"]["source"] == "synthetic":
    from segbench.data.synthetic import CLASSES

    if config["dataset"]["num_classes"] != len(CLASSES):
        raise ValueError(
            f"dataset.num_classes: the embedded dataset has {len(CLASSES)} classes ({', '.join(CLASSES)}), "
            f"not {config['dataset']['num_classes']}"
        )


def check_architectures(models):
    """Each run's architecture and paper options (for training and for prediction) against the
    registry, so that a typo fails the dry run rather than a train job hours into the workflow.
    Read from the model modules' source (segbench.models.catalog): importing the registry would
    import torch and every architecture, seconds of every job's start-up on a cluster."""
    from segbench.models.catalog import model_catalog

    catalog = model_catalog()
    for name, run in models.items():
        if run["arch"] not in catalog:
            close = difflib.get_close_matches(run["arch"], list(catalog), n=1)
            hint = f"did you mean {close[0]}? " if close else ""
            raise ValueError(
                f"models.{name}.arch: {run['arch']!r} is not a registered architecture; {hint}"
                "`segbench models` lists them"
            )
        accepted = catalog[run["arch"]]
        for field, options in (("options", run["options"]), ("eval.options", run["eval"]["options"])):
            unknown = sorted(set(options) - set(accepted))
            if unknown:
                raise ValueError(
                    f"models.{name}.{field}.{unknown[0]}: {run['arch']} has no such option; its options are "
                    f"{', '.join(accepted) or 'none'}"
                )


check_architectures(config["models"])


def expand_seeds(models, overrides):
    """A run with `seeds: [0, 1, 2]` becomes one run per seed, `<name>-seed<k>` training with
    seed k: the DAG trains each, and the report gives their spread. A staged run follows the
    same seed of the run it starts from when that one has seeds too."""
    runs, train = {}, {}
    for name, run in models.items():
        if run["seeds"] is None:
            runs[name], train[name] = run, overrides[name]
            continue
        for seed in run["seeds"]:
            source = run["init_from"]
            if source in models and models[source]["seeds"] is not None:
                if seed not in models[source]["seeds"]:
                    raise ValueError(f"models.{name}.seeds: seed {seed} is not among the seeds of {source}, which it starts from")
                source = f"{source}-seed{seed}"
            runs[f"{name}-seed{seed}"] = {**run, "init_from": source, "seeds": None}
            train[f"{name}-seed{seed}"] = {**overrides[name], "seed": seed}
    return runs, train


RUNS, TRAIN_OVERRIDES = expand_seeds(config["models"], TRAIN_OVERRIDES)
for _name in RUNS:
    _seen = [_name]
    while RUNS[_seen[-1]]["init_from"] is not None:
        _source = RUNS[_seen[-1]]["init_from"]
        if _source not in RUNS:
            raise ValueError(f"models.{_seen[-1]}.init_from: {_source!r} is not a run of this config")
        if _source in _seen:
            raise ValueError(f"models.{_name}.init_from: the runs start from each other ({' -> '.join(_seen + [_source])})")
        _seen.append(_source)
SEARCH = config["crf"]["search"]
# The version of metrics.parquet's columns (segbench/schema.py). As a rule parameter it reruns
# evaluate and majority_baseline when it changes, so that collect never meets a table of an older
# layout beside newer ones (it would refuse it: docs/results-schema.md).
METRICS_SCHEMA = TABLES["metrics"].version
ENV = "../../environment.yml"


wildcard_constraints:
    dataset=DATASET,
    model="|".join(RUNS),


def dataset_root(wildcards, input):
    """The dataset root (holding VOCdevkit/), derived from the rule's input."""
    return os.path.dirname(input.data)


def cores_per_run():
    """The cores shared out over the runs, for the per-run stages that parallelise.

    On a CPU, two single-threaded trainings side by side finish sooner than two
    multi-threaded ones in turn, and a CRF that asks for every core would wait for
    all trainings to end. Cluster profiles set each rule's threads instead.
    """
    return max(1, workflow.cores // len(RUNS))


def train_settings(model):
    """Global training settings with the run's own overrides on top."""
    return {**config["train"], **TRAIN_OVERRIDES[model]}


def config_hash(model):
    """Provenance: a digest of everything that determines the run's results."""
    relevant = {
        # Where the archives come from does not change them: every download is MD5-checked.
        "dataset": {k: v for k, v in config["dataset"].items() if k not in ("archives", "mirrors")},
        # Unset (null) settings are left out, so that a new optional setting leaves the
        # hashes of existing runs, and so their results, as they were.
        "run": {k: v for k, v in RUNS[model].items() if v is not None},
        # A staged run's results depend on the run it starts from.
        "init_from": RUNS[model]["init_from"] and config_hash(RUNS[model]["init_from"]),
        "train": train_settings(model),
        "predict": config["predict"],
        "crf": config["crf"],
    }
    return hashlib.sha256(json.dumps(relevant, sort_keys=True).encode()).hexdigest()[:16]


def flags(options):
    """Command-line flags from a mapping: {"batch_size": 8, "sync_bn": False} -> "--batch-size 8 --no-sync-bn"."""

    def flag(key, value):
        name = key.replace("_", "-")
        if isinstance(value, bool):
            return f"--{name}" if value else f"--no-{name}"
        return f"--{name} {value}"

    return " ".join(flag(key, value) for key, value in options.items())


def prepare_args(wildcards):
    dataset = config["dataset"]
    if dataset["source"] == "synthetic":
        return f"synthetic {flags(dataset['synthetic'])}"
    mirrors = "".join(f" --mirror {shlex.quote(url)}" for url in dataset["mirrors"])
    return f"voc2012 --archives {dataset['archives']}{mirrors}"


def option_flags(options):
    """--option key=JSON for each paper option."""
    return " ".join(f"--option {key}={json.dumps(value)!r}" for key, value in options.items())


def train_launcher(wildcards):
    """`segbench` for one GPU; torchrun with one process per GPU for more (DDP)."""
    gpus = RUNS[wildcards.model]["gpus"]
    if gpus == 1:
        return "segbench"
    return f"torchrun --standalone --nproc-per-node {gpus} -m segbench"


def init_checkpoint(wildcards):
    """Staged training: the checkpoint of the run this one starts from (a DAG edge)."""
    source = RUNS[wildcards.model]["init_from"]
    return [] if source is None else f"results/{wildcards.dataset}/{source}/checkpoint.pt"


def train_args(wildcards, input):
    run = RUNS[wildcards.model]
    settings = train_settings(wildcards.model)
    args = [
        f"--arch {run['arch']}",
        f"--width {run['width']}",
        f"--split {config['dataset']['train_split']}",
        f"--val-split {config['dataset']['val_split']}",
        f"--num-classes {config['dataset']['num_classes']}",
        f"--pretrained-backbone {run['pretrained_backbone']}",
        flags(settings),
        option_flags(run["options"]),
    ]
    if input.init:
        args.append(f"--init-from {input.init}")
    return " ".join(args)


def predict_args(wildcards):
    """The run's test-time setting: paper options (output stride 8 after training at 16),
    scales, flip and sliding windows."""
    settings = RUNS[wildcards.model]["eval"]
    args = [
        option_flags(settings["options"]),
        f"--scales {' '.join(map(str, settings['scales']))}",
        f"--window {settings['window']} --window-overlap {settings['window_overlap']}",
    ]
    if settings["flip"]:
        args.append("--flip")
    return " ".join(args)


def crf_search_grid():
    """--w1 3 4 5 --theta-alpha ... --theta-beta ...: the grid of the CRF search."""
    return " ".join(
        f"--{key.replace('_', '-')} {' '.join(map(str, SEARCH[key]))}" for key in ("w1", "theta_alpha", "theta_beta")
    )


def crf_search_table(wildcards):
    """The search's table when the search is on; the CRF then uses its choice."""
    if SEARCH["enabled"]:
        return f"results/{wildcards.dataset}/{wildcards.model}/crf_search.parquet"
    return []


def crf_args(wildcards, input):
    settings = {k: v for k, v in config["crf"].items() if k != "search"}
    args = flags(settings)
    return f"{args} --params-from {input.search}" if SEARCH["enabled"] else args


# The per-run tables that `collect` concatenates into results/<table>.parquet for the report.
PER_RUN_TABLES = ("metrics", "confusion", "per_image", "train_log", "bench", "crf_search")


def per_run_tables(wildcards):
    tables = expand(f"results/{{dataset}}/{{model}}/{wildcards.table}.parquet", dataset=DATASET, model=RUNS)
    if wildcards.table in ("metrics", "confusion"):
        # The floor every run is read against, in the same tables.
        tables += expand(f"results/{{dataset}}/majority_baseline/{wildcards.table}.parquet", dataset=DATASET)
    return tables

import hashlib
import json

from snakemake.utils import validate


# A run's own training settings as written: validation below fills in every
# default, and a filled-in default must not override the global setting.
TRAIN_OVERRIDES = {name: dict(run.get("train") or {}) for name, run in config.get("models", {}).items()}

# Fills in the schema's defaults, so rules can index config without .get().
validate(config, schema="../schemas/config.schema.yaml")

DATASET = config["dataset"]["name"]
RUNS = config["models"]
ENV = "../../environment.yml"


wildcard_constraints:
    dataset=DATASET,
    model="|".join(RUNS),


def data_root(wildcards):
    return f"resources/{wildcards.dataset}"


def train_settings(model):
    """Global training settings with the run's own overrides on top."""
    return {**config["train"], **TRAIN_OVERRIDES[model]}


def config_hash(model):
    """Provenance: a digest of everything that determines the run's results."""
    relevant = {
        "dataset": config["dataset"],
        "run": RUNS[model],
        "train": train_settings(model),
        "predict": config["predict"],
        "crf": config["crf"],
    }
    return hashlib.sha256(json.dumps(relevant, sort_keys=True).encode()).hexdigest()[:16]


def flags(options):
    """Command-line flags from a mapping: {"batch_size": 8} -> "--batch-size 8"."""
    return " ".join(f"--{key.replace('_', '-')} {value}" for key, value in options.items())

# Two commands on a fresh machine: `make demo` and `make test`.
# Everything is installed into .venv from the package registries.

PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
CORES ?= all

# Rules call `segbench`; put the venv's scripts first on PATH for them.
export PATH := $(CURDIR)/$(BIN):$(PATH)

.PHONY: setup slurm-deps demo test ci-check lint clean

setup: $(STAMP)

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --upgrade pip
	$(BIN)/python -m pip install -e '.[test]'
	touch $(STAMP)

# Debian's SLURM and MUNGE, for tests/test_slurm.py (a loopback cluster; the test
# skips without them). apt-get needs root: sudo is used when not root.
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

slurm-deps:
	@if [ -x /usr/sbin/slurmctld ] && [ -x /usr/sbin/slurmd ] && [ -x /usr/sbin/munged ]; then \
		echo "slurm-deps: slurm-wlm and munge are installed"; \
	else \
		$(SUDO) apt-get update && \
		$(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends slurm-wlm munge; \
	fi

demo: setup
	$(BIN)/snakemake --cores $(CORES) --configfile config/config.yaml
	@echo
	@echo "Report: $(CURDIR)/results/report/index.html (Markdown: results/report/report.md)"

# Once slurm-wlm is installed, every snakemake start runs `scontrol show config`
# (the SLURM plugin's --help text); with no slurm.conf that becomes a DNS lookup.
# Tests need no site cluster (test_slurm.py sets its own SLURM_CONF), so point it
# at an empty file unless one is set already.
demo test ci-check lint: export SLURM_CONF ?= /dev/null

test: setup
	$(BIN)/python -m pytest -n 2 --dist loadgroup
	$(MAKE) ci-check

# The workflow on config/ci.yaml up to results/metrics.parquet, in a scratch directory (never the
# repository's results/), then `segbench check` against the committed baseline (README, "segbench
# in your CI"): exit 1 on drift. The baseline is the CPU's: no GPU is used, and --cores 2 gives
# each of the two runs one thread, as in the baseline. The scratch directory is removed on
# success and kept (and named) on failure.
ci-check: setup
	@dir=$$(mktemp -d "$${TMPDIR:-/tmp}/segbench-ci.XXXXXX") && \
	echo "ci-check: the workflow on config/ci.yaml in $$dir" && \
	CUDA_VISIBLE_DEVICES= $(BIN)/snakemake --snakefile $(CURDIR)/Snakefile --directory $$dir --configfile $(CURDIR)/config/ci.yaml \
		--quiet rules progress --cores 2 results/metrics.parquet && \
	$(BIN)/segbench check --results $$dir/results/metrics.parquet --baseline config/baselines/ci; \
	status=$$?; if [ $$status = 0 ]; then rm -rf "$$dir"; else echo "ci-check: failed; kept $$dir"; fi; exit $$status

lint: setup
	$(BIN)/snakemake --lint

clean:
	rm -rf results/*/ results/*.parquet results/report results/logs resources .snakemake

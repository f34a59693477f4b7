# Two commands on a fresh machine: `make demo` and `make test`.
# Everything is installed into .venv from the package registries.

PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
CORES ?= all

# Rules call `segbench`; put the venv's scripts first on PATH for them.
export PATH := $(CURDIR)/$(BIN):$(PATH)

.PHONY: setup slurm-deps demo test lint clean

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
demo test lint: export SLURM_CONF ?= /dev/null

test: setup
	$(BIN)/python -m pytest -n 2 --dist loadgroup

lint: setup
	$(BIN)/snakemake --lint

clean:
	rm -rf results/*/ results/*.parquet results/report results/logs resources .snakemake

# Two commands on a fresh machine: `make demo` and `make test`.
# Everything is installed into .venv from the package registries.

PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
CORES ?= all

# Rules call `segbench`; put the venv's scripts first on PATH for them.
export PATH := $(CURDIR)/$(BIN):$(PATH)

.PHONY: setup demo test lint bench clean

setup: $(STAMP)

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --upgrade pip
	$(BIN)/python -m pip install -e '.[test]'
	touch $(STAMP)

demo: setup
	$(BIN)/snakemake --cores $(CORES) --configfile config/config.yaml
	@echo
	@echo "Report: $(CURDIR)/results/report/index.html (Markdown: results/report/report.md)"

test: setup
	$(BIN)/python -m pytest -n 2 --dist loadgroup

lint: setup
	$(BIN)/snakemake --lint

clean:
	rm -rf results/*/ results/*.parquet results/report results/logs resources .snakemake

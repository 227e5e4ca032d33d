# `make train` and `make test` set up .venv on first use, then run. Extra arguments:
#   make train ARGS="loss=ce optimizer.lr=0.1"      make test PYTEST_ARGS="-k data"
PYTHON_BASE ?= python3
VENV ?= .venv
PYTHON := $(VENV)/bin/python
ARGS ?=
PYTEST_ARGS ?=

.PHONY: train test test-all bench lint format tensorboard clean

# Re-installs when pyproject.toml changes. The stamp is written last, so a broken install retries.
$(VENV)/.installed: pyproject.toml
	$(PYTHON_BASE) -m venv $(VENV)
	$(PYTHON) -m pip install --quiet -e '.[dev]'
	touch $@

train: $(VENV)/.installed
	$(PYTHON) -m src.train $(ARGS)

# -n auto: one test worker per core (most tests start real training processes).
test: $(VENV)/.installed
	$(PYTHON) -m pytest -n auto $(PYTEST_ARGS)

test-all: $(VENV)/.installed  ## including tests marked slow
	$(PYTHON) -m pytest -n auto -m "" $(PYTEST_ARGS)

# Prints the framework-vs-baseline table and writes BENCHMARKS.md (several minutes).
bench: $(VENV)/.installed
	$(PYTHON) -m pip install --quiet -e '.[dev,bench]'
	$(PYTHON) -m benchmarks.bench $(BENCH_ARGS)

lint: $(VENV)/.installed
	$(VENV)/bin/ruff check src tests benchmarks hydra_plugins
	$(VENV)/bin/ruff format --check src tests benchmarks hydra_plugins

format: $(VENV)/.installed
	$(VENV)/bin/ruff format src tests benchmarks hydra_plugins
	$(VENV)/bin/ruff check --fix src tests benchmarks hydra_plugins

tensorboard: $(VENV)/.installed
	$(VENV)/bin/tensorboard --logdir experiments

clean:  ## run outputs only; keeps .venv and experiments/README.md
	rm -rf experiments/runs experiments/multirun .pytest_cache

# `make train` and `make test` set up .venv on first use, then run. Extra arguments:
#   make train ARGS="loss=ce optimizer.lr=0.1"      make test PYTEST_ARGS="-k data"
PYTHON_BASE ?= python3
VENV ?= .venv
PYTHON := $(VENV)/bin/python
ARGS ?=
PYTEST_ARGS ?=

.PHONY: train test test-all test-cluster bench lint format tensorboard clean

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

# hydra/launcher=slurm on a real one-node SLURM cluster on this machine (needs root; installs slurm-wlm
# and munge with apt-get on first use): starts it in a fresh temporary folder, runs tests/cluster/, and
# stops it whatever the tests did (its logs are kept when they fail). 3-4 minutes on 2 busy cores.
test-cluster: $(VENV)/.installed
	tests/cluster/slurm_cluster.sh install
	export SLURM_CLUSTER_DIR=$$(mktemp -d /tmp/logreg-lab-slurm.XXXXXX); \
	trap 'tests/cluster/slurm_cluster.sh stop' EXIT; \
	if tests/cluster/slurm_cluster.sh start \
		&& $(PYTHON) -m pytest -p no:xdist -m cluster tests/cluster $(PYTEST_ARGS); then \
		tests/cluster/slurm_cluster.sh clean; \
	else \
		echo "cluster logs: $$SLURM_CLUSTER_DIR/log" >&2; exit 1; \
	fi

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

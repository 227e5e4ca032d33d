# `make train` and `make test` set up .venv on first use, then run. Extra arguments:
#   make train ARGS="loss=ce optimizer.lr=0.1"      make test PYTEST_ARGS="-k data"
PYTHON_BASE ?= python3
VENV ?= .venv
PYTHON := $(VENV)/bin/python
ARGS ?=
PYTEST_ARGS ?=
BENCH_ARGS ?=

.PHONY: help train test test-slow test-hydra-next test-all test-cluster bench lint format tensorboard clean
.DEFAULT_GOAL := help

help:  ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-12s %s\n", $$1, $$2}'

# Re-installs when pyproject.toml changes. The stamp is written last, so a broken install retries.
# editable_mode=compat puts the repository on sys.path, so that Hydra finds the project's plugins
# (hydra_plugins/logreg_lab) from any working directory, as it finds the installed ones.
INSTALL := $(PYTHON) -m pip install --quiet --config-settings editable_mode=compat -e
# The Hydra the suite runs on (pyproject.toml allows 1.3.2 to 1.4), and the next one (test-hydra-next).
HYDRA := hydra-core==1.3.8 omegaconf==2.3.1
HYDRA_NEXT := hydra-core==1.4.0rc3 omegaconf==2.4.1rc1 hydra-joblib-launcher==1.4.0rc3 \
	hydra-submitit-launcher==1.4.0rc3
VENV_NEXT ?= .venv-next
$(VENV)/.installed: pyproject.toml
	$(PYTHON_BASE) -m venv $(VENV)
	$(INSTALL) '.[dev]' $(HYDRA)
	touch $@

$(VENV_NEXT)/.installed: pyproject.toml
	$(PYTHON_BASE) -m venv $(VENV_NEXT)
	$(VENV_NEXT)/bin/python -m pip install --quiet --config-settings editable_mode=compat -e '.[dev]' $(HYDRA_NEXT)
	touch $@

$(VENV)/.installed-bench: $(VENV)/.installed
	$(INSTALL) '.[dev,bench]'
	touch $@

train: $(VENV)/.installed  ## the tutorial (or ARGS="overrides"): python -m src.train
	$(PYTHON) -m src.train $(ARGS)

# -n auto: one test worker per core.
test: $(VENV)/.installed  ## the test suite (PYTEST_ARGS="-k name" to pick)
	$(PYTHON) -m pytest -n auto $(PYTEST_ARGS)

# The same suite on Hydra 1.4 (hydra-core 1.4.0rc3, omegaconf 2.4.1rc1 and their launchers), in a second
# environment of its own.
test-hydra-next: $(VENV_NEXT)/.installed  ## the test suite on the next Hydra (1.4), in .venv-next
	$(VENV_NEXT)/bin/python -m pytest -n auto $(PYTEST_ARGS)

test-slow: $(VENV)/.installed  ## only the tests marked slow (CI runs them after make test)
	$(PYTHON) -m pytest -n auto -m slow $(PYTEST_ARGS)

test-all: $(VENV)/.installed  ## the test suite including tests marked slow
	$(PYTHON) -m pytest -n auto -m "" $(PYTEST_ARGS)

# hydra/launcher=slurm on a real one-node SLURM cluster on this machine (needs root; installs slurm-wlm
# and munge with apt-get on first use): starts it in a fresh temporary folder, runs tests/cluster/, and
# stops it whatever the tests did (its logs are kept when they fail). 3-4 minutes on 2 busy cores.
test-cluster: $(VENV)/.installed  ## sweeps on a real one-node SLURM cluster on this machine (root)
	tests/cluster/slurm_cluster.sh install
	export SLURM_CLUSTER_DIR=$$(mktemp -d /tmp/logreg-lab-slurm.XXXXXX); \
	trap 'tests/cluster/slurm_cluster.sh stop' EXIT; \
	if tests/cluster/slurm_cluster.sh start \
		&& $(PYTHON) -m pytest -p no:xdist -m cluster tests/cluster $(PYTEST_ARGS); then \
		tests/cluster/slurm_cluster.sh clean; \
	else \
		echo "cluster logs: $$SLURM_CLUSTER_DIR/log" >&2; exit 1; \
	fi

bench: $(VENV)/.installed-bench  ## side-by-side benchmarks; writes BENCHMARKS.md (BENCH_ARGS="--repeats 3")
	$(PYTHON) -m benchmarks.bench $(BENCH_ARGS)

lint: $(VENV)/.installed  ## ruff (style, imports) and mypy (types)
	$(VENV)/bin/ruff check src tests benchmarks hydra_plugins
	$(VENV)/bin/ruff format --check src tests benchmarks hydra_plugins
	$(VENV)/bin/mypy

format: $(VENV)/.installed  ## fix what ruff can fix
	$(VENV)/bin/ruff format src tests benchmarks hydra_plugins
	$(VENV)/bin/ruff check --fix src tests benchmarks hydra_plugins

tensorboard: $(VENV)/.installed  ## serve every run under experiments/
	$(VENV)/bin/tensorboard --logdir experiments

clean:  ## run outputs only; keeps .venv and experiments/README.md
	rm -rf experiments/runs experiments/multirun .pytest_cache
	rmdir data 2>/dev/null || true

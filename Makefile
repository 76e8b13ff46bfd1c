# Two commands do all set-up on a fresh machine: `make demo` and `make test`.
SHELL := /bin/bash
.SHELLFLAGS := -eu -o pipefail -c
PYTHON ?= python3.11
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

export SPARK_LOCAL_IP ?= 127.0.0.1
export PATH := $(CURDIR)/$(VENV)/bin:$(PATH)
# pip's config on some machines names index folders that do not exist; its warnings are noise.
PIP_QUIET := 2>&1 | { grep -v "is ignored: it is neither a file nor a directory" || true; }

.PHONY: install demo test test-scheduler airflow wheel-check lint bench lock clean

install: $(STAMP)

$(STAMP): requirements.lock pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	@echo "installing into $(VENV) (first time: about 2-3 minutes)"
	@$(PY) -m pip install -q --disable-pip-version-check -r requirements.lock $(PIP_QUIET)
	@$(PY) -m pip install -q --disable-pip-version-check --no-deps -e . $(PIP_QUIET)
	@$(PY) -m pipelines.etl.localfs >/dev/null  # Spark's local file system without a chmod per file
	@$(PY) -c "import torch, pyspark; print('installed: torch', torch.__version__, '| pyspark', pyspark.__version__)"
	@touch $@

demo: install
	$(VENV)/bin/seqrep demo

test: install
	$(PY) -m pytest -q

# Airflow for real, kept out of `make test` for its time: Postgres, the scheduler, the dag-processor
# and the api-server as processes, a 2-day `airflow backfill create` of the nightly DAG.
test-scheduler: install
	$(PY) -m pytest -q -m scheduler

# A local Airflow with the seqrep DAGs (api-server, scheduler, dag-processor; LocalExecutor):
# prints the UI's address and login. `.venv/bin/seqrep airflow stop` stops it.
airflow: install
	$(VENV)/bin/seqrep airflow start

# `pip install .` (not editable) into a fresh venv, then a synthetic day and a training run from another folder.
wheel-check:
	PYTHON=$(PYTHON) bash .ci/wheel-check

# The import contracts of pyproject.toml (also checked by tests/test_architecture.py).
lint: install
	$(VENV)/bin/lint-imports

bench: install
	$(PY) bench/etl.py

lock:
	$(PY) -m pip freeze --exclude-editable | grep -v '^seqrep' | sed 's/^torch==\(.*\)+cpu/torch==\1/' > requirements.lock

clean:
	rm -rf warehouse demo .airflow .pytest_cache

# Tessera: `make up` starts a local cluster, `make test` runs the whole suite.
# Both create .venv and install the project first, on a machine with only Python and git.

PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed-stamp

.PHONY: venv up down test test-fast promtool proto proto-check lint format bench clean

$(STAMP): pyproject.toml
	@echo "==> creating $(VENV) and installing Tessera with its dependencies (a minute or two the first time)"
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --disable-pip-version-check --progress-bar on -e '.[dev]'
	@touch $(STAMP)
	@echo "==> installed: $(VENV)/bin/tessera (or: source $(VENV)/bin/activate, then tessera)"

venv: $(STAMP)

up: venv           ## start a local cluster (etcd, PostgreSQL, metanode, syncnode, 3 block nodes)
	$(VENV)/bin/tessera up

down: venv
	$(VENV)/bin/tessera down

test: venv promtool ## the whole suite: protos fresh, lint, format, types, alert rules, unit + integration + fault + k8s + browser tests
	command -v chromium || (apt-get update && apt-get install -y chromium)
	$(PY) scripts/gen_protos.py --check
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy
	promtool check rules k8s/components/monitoring/alerts.yaml
	cd k8s/components/monitoring && promtool test rules alerts_test.yaml
	$(VENV)/bin/pytest -q -p no:cacheprovider

promtool:          ## promtool (Debian's prometheus package) checks the alert rules
	@command -v promtool >/dev/null || (apt-get update && apt-get install -y prometheus)

test-fast: venv    ## unit tests only
	$(VENV)/bin/pytest -q -p no:cacheprovider tests/unit

proto: venv        ## regenerate tessera/pb from proto/
	$(PY) scripts/gen_protos.py

proto-check: venv
	$(PY) scripts/gen_protos.py --check

lint: venv         ## ruff, formatting, and mypy (strict on tessera/ and the SDK; see pyproject.toml)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy

format: venv
	$(VENV)/bin/ruff format .
	$(VENV)/bin/ruff check --fix .

bench: venv        ## benchmarks: print figures and compare with bench/baseline.json
	$(PY) bench/run_all.py

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache .mypy_cache build *.egg-info

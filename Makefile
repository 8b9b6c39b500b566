# Metalize: every target sets up what it needs (idempotent; the install is skipped while
# pyproject.toml and constraints.txt are unchanged).
SHELL := /bin/bash
.SHELLFLAGS := -eo pipefail -c
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.metalize-installed
CONFIG ?= configs/demo.yaml

# Offline, quiet, local state: no hub downloads, no telemetry, caches inside the checkout.
export YOLO_OFFLINE := 1
export YOLO_CONFIG_DIR := $(CURDIR)/.cache/ultralytics
export PREFECT_HOME := $(CURDIR)/.cache/prefect
export PREFECT_SERVER_ANALYTICS_ENABLED := false
export PREFECT_LOGGING_LEVEL ?= WARNING
export MPLBACKEND := Agg

.PHONY: setup state-dirs demo test bench serve clean-venv

setup: $(STAMP)

$(STAMP): pyproject.toml constraints.txt
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	@echo "installing Metalize and its pinned dependencies into $(VENV) (first time: a few minutes)"
	$(PY) -m pip install -q -c constraints.txt -e ".[dev]" 2>&1 | { grep -v "^WARNING: Location" || true; }
	@touch $(STAMP)

demo: $(STAMP) state-dirs
	$(VENV)/bin/metalize run $(CONFIG)

test: $(STAMP) state-dirs
	bash scripts/test-deps.sh
	$(PY) -m pytest -q

# Prefect creates PREFECT_HOME but not its parents: on a fresh clone .cache/ does not exist yet.
state-dirs:
	@mkdir -p $(YOLO_CONFIG_DIR) $(PREFECT_HOME)

bench: $(STAMP) state-dirs
	$(PY) bench/run_all.py

serve: $(STAMP) state-dirs
	bash scripts/serve.sh $(CONFIG)

clean-venv:
	rm -rf $(VENV)

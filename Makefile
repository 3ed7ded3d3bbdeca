# Two commands on a fresh machine (Python 3.11+): `make demo` and `make test`.
# Each creates ./.venv from requirements.txt the first time (and again when requirements.txt changes).
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin

.PHONY: install demo test lint bench

#: one sentence, exit 2, when an interpreter is older than 3.11 (Amazon Linux 2023's python3 is 3.9)
NEED_311 := import sys; sys.exit(0 if sys.version_info >= (3, 11) else 2)

.PHONY: check-python
check-python:  ## Python 3.11+ or one sentence; a .venv built by an older interpreter is removed, to be rebuilt
	@$(PYTHON) -c '$(NEED_311)' 2>/dev/null || { echo "tuttle-prep needs Python 3.11 or newer: '$(PYTHON)' is $$($(PYTHON) --version 2>&1 || echo missing); install python3.11 and run make PYTHON=python3.11 ..." >&2; exit 2; }
	@if [ -e $(BIN)/python ] && ! $(BIN)/python -c '$(NEED_311)' 2>/dev/null; then echo "$(VENV) was built by $$($(BIN)/python --version 2>&1 || echo a missing interpreter); removing it, to rebuild it with $(PYTHON)" >&2; rm -rf $(VENV); fi

$(BIN)/.installed: requirements.txt | check-python
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -r requirements.txt
	touch $@

install: check-python $(BIN)/.installed  ## only the venv (a host: `make install PYTHON=python3.11`)

demo: check-python $(BIN)/.installed  ## the whole job on an embedded S3: no accounts, no network
	$(BIN)/python data_preparation.py demo

lint: check-python $(BIN)/.installed
	$(BIN)/ruff check .

test: lint  ## ruff, the architecture contracts (pyproject.toml), then the test suite on two processes
	$(BIN)/lint-imports
	$(BIN)/python -m pytest -n 2 -q

bench: check-python $(BIN)/.installed  ## benchmarks/bench_sync.py against a local endpoint, then the split at 1M frames
	$(BIN)/python benchmarks/bench_sync.py
	$(BIN)/python benchmarks/bench_split.py

# Two commands on a fresh machine (Python 3.11+): `make demo` and `make test`.
# Each creates ./.venv from requirements.txt the first time (and again when requirements.txt changes).
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin

.PHONY: demo test lint bench

$(BIN)/.installed: requirements.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -r requirements.txt
	touch $@

demo: $(BIN)/.installed  ## the whole job on an embedded S3: no accounts, no network
	$(BIN)/python data_preparation.py demo

lint: $(BIN)/.installed
	$(BIN)/ruff check .

test: lint  ## ruff, the architecture contracts (pyproject.toml), then the test suite on two processes
	$(BIN)/lint-imports
	$(BIN)/python -m pytest -n 2 -q

bench: $(BIN)/.installed  ## benchmarks/bench_sync.py against a local endpoint, then the split at 1M frames
	$(BIN)/python benchmarks/bench_sync.py
	$(BIN)/python benchmarks/bench_split.py

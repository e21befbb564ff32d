# Two commands on a fresh machine with Python 3.11: `make up` and `make test`.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: up test test-fast lint fmt demo clean

$(BIN)/python:
	@test -n "$(PYTHON)" || { echo "Python 3.11 not found: install it, or run 'make PYTHON=/path/to/python3.11 ...'"; exit 1; }
	$(PYTHON) -m venv $(VENV)

$(STAMP): pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	@touch $(STAMP)

install: $(STAMP)

## Start all four services on SQLite (./data) with the demo catalog; Ctrl-C stops them.
## `make up COORDINATION=choreography`: the same suite by choreography (needs RabbitMQ).
up: $(STAMP)
	$(BIN)/checkout-suite up $(if $(COORDINATION),--coordination $(COORDINATION))

## Run every test (PostgreSQL tests skip with a reason when no server answers).
test: $(STAMP)
	$(BIN)/python -m pytest

## Every test except the ones that start real processes.
test-fast: $(STAMP)
	$(BIN)/python -m pytest -m "not e2e"

## Sample checkouts against a running suite.
demo: $(STAMP)
	$(BIN)/checkout-suite demo

## Benchmark (a few minutes; see BENCHMARKS.md): stand-ins, two non-durable baselines, Restate
## (installed with npm on first use), the orchestrator on SQLite and PostgreSQL; rewrites the
## results in BENCHMARKS.md. Options: BENCH_ARGS=--help.
.PHONY: bench
bench: $(STAMP)
	$(BIN)/python -m bench $(BENCH_ARGS)

lint: $(STAMP)
	$(BIN)/ruff format --check .
	$(BIN)/ruff check .
	$(BIN)/mypy checkout_suite servicekit orchestrator warehouse_service rewards_service email_service

fmt: $(STAMP)
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

clean:
	rm -rf $(VENV) data .pytest_cache .mypy_cache .ruff_cache

# Two commands do everything on a fresh machine: `make test` and `make dry-run`.
PY ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
TORCH ?= torch==2.13.0
STAMP := $(VENV)/.installed

.PHONY: install test lint format dry-run clean

install: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/pip install -q "$(TORCH)"
	$(BIN)/pip install -q -e ".[dev]"
	touch $(STAMP)

test: install
	$(BIN)/python -m pytest -q tests

lint: install
	$(BIN)/ruff check arcsub tests tools bench kernels
	$(BIN)/ruff format --check arcsub tests tools bench kernels

format: install
	$(BIN)/ruff format arcsub tests tools bench kernels
	$(BIN)/ruff check --fix arcsub tests tools bench kernels

dry-run: install
	$(BIN)/arcsub dry-run

clean:
	rm -rf $(VENV) .pytest_cache runs

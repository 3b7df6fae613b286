# Two commands do everything on a fresh machine: `make test` and `make dry-run`.
PY ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
TORCH ?= torch==2.13.0
STAMP := $(VENV)/.installed

.PHONY: install test test-long lint format dry-run clean

install: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/pip install -q "$(TORCH)"
	$(BIN)/pip install -q -e ".[dev,kaggle]"  # kaggle: the notebook runs (nbclient, ipykernel) and the API stand-in test
	touch $(STAMP)

# every test but the few longest multi-process runs, <= 5 min on 2 cores; CI runs test-long after it
test: install
	$(BIN)/python -m pytest -q tests -m "not long" --durations=20

test-long: install
	$(BIN)/python -m pytest -q tests -m long --durations=10

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

# ---- Kaggle: datasets, notebook, upload, offline dry run (tools/, kernels/; see docs/kaggle.md) ----
MODEL ?=
EXTRAS ?=
PIPELINE ?= in-context
# the task pipeline's measured recipe is ARC-AGI-2's: ARC Prize 2026 by default; the in-context one stays 2024
COMPETITION ?= $(if $(filter task,$(PIPELINE)),arc-prize-2026,arc-prize-2024)
OVERRIDES ?=
DRY_RUN ?=
DRY_RUN_ARGS ?=
KAGGLE_STAMP := $(VENV)/.kaggle-installed
_EXTRAS := $(if $(EXTRAS),--extras $(EXTRAS))

.PHONY: kaggle-build kaggle-push kaggle-dry-run kernels

$(KAGGLE_STAMP): $(STAMP) pyproject.toml  # `make install` already has the [kaggle] extra
	touch $(KAGGLE_STAMP)

# out/kaggle/arcsub-wheels, out/kaggle/arcsub-model (+ arcsub-data with PIPELINE=task) and kernels/build
# (MODEL=dir, EXTRAS=vllm, COMPETITION=...,
# PIPELINE=task: the notebook trains a task-embedding model on the hidden tasks instead of per-task TTFT;
# OVERRIDES="k=v ...": pipeline config overrides baked into the notebook)
kaggle-build: $(KAGGLE_STAMP)
	$(BIN)/python tools/build_wheels.py $(_EXTRAS)
	$(BIN)/python tools/build_model_dataset.py $(MODEL)
	$(if $(filter task,$(PIPELINE)),$(BIN)/python tools/build_data_dataset.py)
	$(BIN)/python tools/build_kernel.py --competition $(COMPETITION) $(_EXTRAS) --pipeline $(PIPELINE) --overrides "$(OVERRIDES)"

# build everything, then upload with the kaggle CLI; DRY_RUN=1 builds and prints the commands only
kaggle-push: $(KAGGLE_STAMP)
	$(BIN)/python tools/kaggle_push.py --competition $(COMPETITION) $(_EXTRAS) --pipeline $(PIPELINE) --overrides "$(OVERRIDES)" \
		$(if $(filter-out 0 no false,$(DRY_RUN)),--dry-run) $(if $(MODEL),--model $(MODEL))

# execute the generated notebook offline (unshare -n) on a fake /kaggle tree; check the submission
kaggle-dry-run: $(KAGGLE_STAMP)
	$(BIN)/python tools/kaggle_dry_run.py --competition $(COMPETITION) $(if $(MODEL),--model $(MODEL)) $(DRY_RUN_ARGS)

# the committed notebooks, one per competition x pipeline (kernels/generated/; tests/test_tools.py checks them)
kernels: $(STAMP)
	$(BIN)/python tools/build_kernel.py --all

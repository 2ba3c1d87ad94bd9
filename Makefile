# The open body-worn camera. `make run` and `make test` are all a newcomer needs.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
DEVICE ?= .demo/unit
PYTEST_ARGS ?=

.DEFAULT_GOAL := help
.PHONY: help run test lint fmt bench soak image image-test clean

help: ## Show the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-10s %s\n", $$1, $$2}'

$(BIN)/python:
	$(PYTHON) -c 'import sys; sys.exit(sys.version_info < (3, 11))' || \
	  { echo "Python 3.11 or newer is needed (set PYTHON=python3.11)"; exit 2; }
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

$(STAMP): $(BIN)/python pyproject.toml
	$(BIN)/python -m pip install --quiet -e '.[sim,test,bench]'
	@touch $(STAMP)

run: $(STAMP) ## Run the recorder on the simulated unit (provisions a demo unit on first run)
	$(BIN)/python -m firmware.demo --device $(DEVICE)

test: $(STAMP) lint ## Static checks, then the whole test suite
	$(BIN)/python -m pytest -n 2 $(PYTEST_ARGS)

lint: $(STAMP) ## ruff, ruff format --check, mypy --strict, import-linter
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy
	$(BIN)/lint-imports

fmt: $(STAMP) ## Format the code
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

bench: $(STAMP) ## Run the benchmarks; writes .bench/results.json and a chart, .bench/results.svg
	$(BIN)/python -m bench

soak: $(STAMP) ## Long fault-injection run (SOAK_TRIALS=200 by default)
	SOAK_TRIALS=$${SOAK_TRIALS:-200} $(BIN)/python -m pytest -m soak -p no:cacheprovider tests/integration

image: $(STAMP) ## Build the Raspberry Pi SD-card image and slot image into build/image (root; see docs/image.md)
	PYTHON=$(BIN)/python nice -n 19 bash image/build.sh

image-test: $(STAMP) ## Boot build/image under qemu-system-aarch64 and record through it (slow)
	BWC_IMAGE_TEST=1 $(BIN)/python -m pytest -m image -n 0 -p no:cacheprovider tests/image $(PYTEST_ARGS)

clean: ## Remove the virtualenv, caches and demo unit
	rm -rf $(VENV) .bench .demo .pytest_cache .mypy_cache .ruff_cache build *.egg-info

# pachsync developer entry points. Everything installs into ./.venv from this project's files.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: help venv demo test test-fast test-upstream fuzz lint typecheck bench clean

help:  ## list the targets
	@grep -E '^[a-z-]+:.*##' $(MAKEFILE_LIST) | sed 's/:.*## /\t/'

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $(STAMP)

venv: $(STAMP)  ## create .venv and install the project with its dev tools

demo: $(STAMP)  ## run the whole GitOps demo on a local Pachyderm-compatible server
	$(BIN)/pachsync demo

test: $(STAMP)  ## run the whole test suite (fails if no test ran)
	$(BIN)/python -m pytest -n 2 --dist loadfile -p no:cacheprovider

test-fast: $(STAMP)  ## unit tests only
	$(BIN)/python -m pytest tests/unit -p no:cacheprovider

test-upstream: $(STAMP)  ## python-pachyderm 7.6.0's own tests against localpachd (tests from git: UPSTREAM=URL|clone|dir; exits 1 if any fails)
	$(BIN)/python .ci/test_upstream.py $(if $(UPSTREAM),--source '$(UPSTREAM)')

fuzz: $(STAMP)  ## the property-based fuzz tests with many more examples (minutes, not seconds)
	HYPOTHESIS_PROFILE=fuzz $(BIN)/python -m pytest -m fuzz --timeout 3600 -p no:cacheprovider

lint: $(STAMP)  ## ruff lint
	$(BIN)/ruff check agent localpachd stages tests bench

typecheck: $(STAMP)  ## mypy --strict on agent/ and localpachd/
	$(BIN)/mypy --strict agent localpachd

bench: $(STAMP)  ## run every benchmark and print a summary table
	$(BIN)/python -m bench

clean:  ## remove the virtual environment and caches
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache build *.egg-info

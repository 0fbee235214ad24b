# Two commands do all the set-up on a fresh machine:
#   make run    install, then start the embedded stack (sluice dev)
#   make test   install, then lint, type-check and run the test suite
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: install run test lint format bench clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[server,test]'
	touch $@

install: $(STAMP)

run: install
	$(BIN)/sluice dev

test: lint
	$(BIN)/python -m pytest

lint: install
	$(BIN)/ruff check sluice/__init__.py sluice/cli producer rules worker gateway tests bench
	$(BIN)/ruff format --check sluice/__init__.py sluice/cli producer rules worker gateway tests bench
	$(BIN)/mypy
	$(BIN)/mypy tests bench

format: install
	$(BIN)/ruff format sluice/__init__.py sluice/cli producer rules worker gateway tests bench
	$(BIN)/ruff check --fix sluice/__init__.py sluice/cli producer rules worker gateway tests bench

bench: install
	$(BIN)/python bench/throughput.py

clean:
	rm -rf $(VENV) .sluice .pytest_cache .mypy_cache .ruff_cache

# Two commands do all the set-up on a fresh machine:
#   make run    install, then start the embedded stack (sluice dev); make run PORT=8001
#   make test   install, then lint, type-check and run the test suite
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
# The source folders (each linked into sluice/, docs/architecture.md §1) and the package root.
SOURCES := sluice/*.py sluice/cli producer rules actions store ops worker delivery gateway tests bench

.PHONY: install run test lint format bench clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[server,test]'
	touch $@

install: $(STAMP)

run: install
	$(BIN)/sluice dev $(if $(PORT),--port $(PORT))

test: lint
	$(BIN)/python -m pytest

lint: install
	$(BIN)/ruff check $(SOURCES)
	$(BIN)/ruff format --check $(SOURCES)
	$(BIN)/mypy
	$(BIN)/mypy tests bench

format: install
	$(BIN)/ruff format $(SOURCES)
	$(BIN)/ruff check --fix $(SOURCES)

bench: install
	$(BIN)/python bench/throughput.py

clean:
	rm -rf $(VENV) .sluice .pytest_cache .mypy_cache .ruff_cache

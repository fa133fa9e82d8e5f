# Two commands on a fresh machine: `make demo` and `make test`.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.fishweight-installed

.PHONY: install test lint demo clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

# Reinstall when the project metadata changes; fetch the connector jars once.
$(STAMP): pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet -e '.[test]'
	$(BIN)/fishweight fetch-jars --log-level WARNING
	touch $(STAMP)

install: $(STAMP)

test: install
	$(BIN)/ruff check --output-format concise jobs udfs models tests
	$(BIN)/python -m pytest

lint: install
	$(BIN)/ruff check --output-format concise jobs udfs models tests

demo: install
	$(BIN)/fishweight demo

clean:
	rm -rf var build *.egg-info .pytest_cache

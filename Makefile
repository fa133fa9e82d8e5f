# Two commands on a fresh machine: `make demo` and `make test`.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.fishweight-installed

.PHONY: install test test-fast test-extended lint demo bench clean

# Python 3.11 or newer (pyproject.toml); another one: make PYTHON=python3.11 ...
NEED_PY := import sys; sys.exit(0 if sys.version_info >= (3, 11) else \
	f"fishweight needs Python >= 3.11, {sys.executable} is {sys.version.split()[0]}: " \
	"run make PYTHON=python3.11 (after rm -rf $(VENV) if it was made with that one)")

$(BIN)/python:
	@$(PYTHON) -c '$(NEED_PY)'
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

# Reinstall when the project metadata changes; fetch the connector jars once.
$(STAMP): pyproject.toml | $(BIN)/python
	@$(BIN)/python -c '$(NEED_PY)'
	$(BIN)/python -m pip install --quiet -e '.[test]'
	$(BIN)/fishweight fetch-jars --log-level WARNING
	touch $(STAMP)

install: $(STAMP)

LINTED := fishweight jobs udfs models sql tests

# Lint, the fast tier and the slow tier (broker, MiniCluster, session cluster, end to end).
test: install
	$(BIN)/ruff check --output-format concise $(LINTED)
	$(BIN)/python -m pytest -m "not extended"

# The further closed-loop scenarios and the long fault tests (docs/development.md); CI runs them after `make test`.
test-extended: install
	$(BIN)/python -m pytest -m extended

# The fast tier: unit tests and the job's SQL on in-memory rows; no broker.
test-fast: install
	$(BIN)/ruff check --output-format concise $(LINTED)
	$(BIN)/python -m pytest -m "not slow"

lint: install
	$(BIN)/ruff check --output-format concise $(LINTED)

demo: install
	$(BIN)/fishweight demo

# Benchmarks (not part of `make test`): a table, and JSON under var/bench/.
bench: install
	$(BIN)/fishweight bench $(BENCH_ARGS)

clean:
	rm -rf var build *.egg-info .pytest_cache

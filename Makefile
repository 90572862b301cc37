# Two entry points, each creating its own virtual environment (.venv) on first use.
#   make demo   - run the embedded WSOL benchmark
#   make demo-docs - rerun it into docs/demo and regenerate the README's and
#                 docs/benchmarks.md's demo sections from its output
#   make test   - run the whole test suite
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin

$(BIN)/.camkit-installed: pyproject.toml constraints.txt setup.py camkit/boxes/_union_find.c
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -c constraints.txt -e ".[test,demo]"
	touch $@

.PHONY: demo demo-docs test lint bench
demo: $(BIN)/.camkit-installed
	$(BIN)/camkit demo $(ARGS)

demo-docs: $(BIN)/.camkit-installed
	$(BIN)/camkit demo --out docs/demo --no-progress
	$(BIN)/python benchmarks/run_all.py --demo

test: $(BIN)/.camkit-installed
	$(BIN)/python -m pytest $(PYTEST_ARGS)

lint: $(BIN)/.camkit-installed
	$(BIN)/ruff check camkit tests benchmarks examples docs

bench: $(BIN)/.camkit-installed
	$(BIN)/python benchmarks/run_all.py

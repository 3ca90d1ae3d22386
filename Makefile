# Set-up is automatic: the first `make demo` or `make test` creates .venv and installs
# fedsim with its dependencies; later calls reuse it (reinstalling when pyproject.toml changes).
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.fedsim-installed
PYTEST_ARGS ?=

.PHONY: demo test test-slow test-scenarios bench venv clean-runs

$(STAMP): pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --upgrade --quiet pip
	$(BIN)/python -m pip install --quiet -e '.[test,anonymeter]'
	$(BIN)/python -m pip install --quiet --no-deps 'anonymeter>=1.1'
	@touch $(STAMP)

venv: $(STAMP)

demo: $(STAMP)
	$(BIN)/fedsim run scenarios/quickstart.toml

test: $(STAMP)
	$(BIN)/python -m pytest -m "not slow and not scenarios" $(PYTEST_ARGS)

test-slow: $(STAMP)
	$(BIN)/python -m pytest -m slow $(PYTEST_ARGS)

test-scenarios: $(STAMP)
	$(BIN)/python -m pytest -m scenarios $(PYTEST_ARGS)

bench: $(STAMP)
	$(BIN)/python benchmarks/bench_extraction.py
	$(BIN)/python benchmarks/bench_anonymizers.py
	$(BIN)/python benchmarks/bench_knn.py
	$(BIN)/python benchmarks/bench_client_memory.py
	$(BIN)/python benchmarks/bench_federation.py
	$(BIN)/python benchmarks/bench_clientapp_startup.py

clean-runs:
	rm -rf runs

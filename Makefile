# One entry point per job. `make test` and `make run` work on a fresh Debian machine.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-$(shell cat pyproject.toml | sha1sum | cut -c1-12)

.PHONY: run samples test check conformance bench clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	rm -f $(VENV)/.installed-* && touch $(STAMP)

run: $(STAMP)
	scripts/run

samples: $(STAMP)
	scripts/samples

test: $(STAMP)
	scripts/test

check: $(STAMP)
	scripts/check

conformance: $(STAMP)
	$(BIN)/python ../shared/conformance/run.py --python 'statemachine.conformance:run_case' --features

bench: $(STAMP)
	$(BIN)/pip install --quiet 'moto[stepfunctions]'
	$(BIN)/python bench/engine.py

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache .hypothesis

# One entry point per job. `make test` and `make run` work on a fresh Debian machine.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-$(shell cat pyproject.toml | sha1sum | cut -c1-12)

.PHONY: run samples test test-viewer screenshots check audit torture conformance bench clean

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

# Only the web viewer's browser tests (they also run in `make test`); needs Debian's chromium
# (apt-get install -y chromium, as .ci/run does).
test-viewer: $(STAMP)
	scripts/test -m viewer tests/viewer

# Refresh the README's screenshots of the viewer (docs/screenshots/, 1280x800).
screenshots: $(STAMP)
	STATEWRIGHT_SCREENSHOTS=docs/screenshots scripts/test tests/viewer/test_screenshots.py

check: $(STAMP)
	scripts/check

audit: $(STAMP)
	scripts/audit

# The long torture run (tests/torture/test_torture.py): 30 minutes of random workflows while
# workers, the API and Postgres are killed, restarted and cut off; prints the figures.
TORTURE_SECONDS ?= 1800
torture: $(STAMP)
	STATEWRIGHT_TORTURE_SECONDS=$(TORTURE_SECONDS) scripts/test -m torture -s tests/torture

conformance: $(STAMP)
	$(BIN)/python ../shared/conformance/run.py --python 'statemachine.conformance:run_case' --features

bench: $(STAMP)
	$(BIN)/pip install --quiet 'moto[stepfunctions]'
	$(BIN)/python bench/engine.py

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache .hypothesis

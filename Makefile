# The two commands of the README's Quickstart are `make demo` and `make test`.
VENV ?= .venv
BIN := $(VENV)/bin
DEMO_WS ?= demo-ws

.PHONY: install install-test demo test lint completions bench

$(VENV)/.stamp-install: pyproject.toml tools/setup.sh
	EXTRAS=test bash tools/setup.sh
	touch $@

$(VENV)/.stamp-install-test: $(VENV)/.stamp-install
	EXTRAS=test,beam bash tools/setup.sh
	touch $@

install: $(VENV)/.stamp-install

install-test: $(VENV)/.stamp-install-test

demo: install
	$(BIN)/orpheus demo $(DEMO_WS)

# Test files run in parallel, one file per worker (module fixtures are built once).
TEST_WORKERS ?= auto
test: install-test
	$(BIN)/pytest -q -n $(TEST_WORKERS) --maxprocesses 4 --dist loadfile --durations 10

lint: install
	$(BIN)/ruff format --check orpheus tests bench tools
	$(BIN)/ruff check orpheus tests bench tools

completions: install
	for sh in bash zsh fish; do \
	  _TYPER_COMPLETE_TEST_DISABLE_SHELL_DETECTION=1 $(BIN)/orpheus --show-completion $$sh \
	    > completions/orpheus.$$sh; done

bench: install-test
	$(BIN)/python bench/run.py

# Python Concurrency Lab. `make help` lists the targets; each one makes the virtualenv itself.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
LAB_ARGS ?=
TEST_ARGS ?=

.DEFAULT_GOAL := help
.PHONY: help lab test test-unit lint bench clean doctor docs

help: ## list the targets
	@echo "Python Concurrency Lab"
	@echo
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-10s %s\n", $$1, $$2}'
	@echo
	@echo "  LAB_ARGS='--targets cp311,cp314 --quick' make lab   passes options to 'lab run'"
	@echo "  TEST_ARGS='-k report' make test                    passes options to pytest"
	@echo "  .venv/bin/lab check SCRIPT [ARGS]                  your program under each start method"
	@echo "  .venv/bin/lab run --scenario-file PATH             your own scenario (README: Check your own code)"

$(STAMP): pyproject.toml .ci/setup
	PYTHON=$(PYTHON) VENV=$(VENV) .ci/setup venv
	@touch $@

lab: $(STAMP) ## run the full default matrix and write reports/latest/index.html
	$(BIN)/lab run $(LAB_ARGS)

test: $(STAMP) ## set up what the tests need (.ci/setup), then every test: in parallel, then the ones marked alone
	VENV=$(VENV) .ci/setup test
	$(BIN)/pytest -n 4 -m "not alone" $(TEST_ARGS)
	$(BIN)/pytest -m alone $(TEST_ARGS) || [ $$? = 5 ]  # 5: TEST_ARGS selected none of them

test-unit: $(STAMP) ## only the fast tests that need no Docker
	$(BIN)/pytest -n 4 -m "not docker and not browser" $(TEST_ARGS)

lint: $(STAMP) ## ruff (host code and, for 3.9, the in-container runner) and mypy
	$(BIN)/ruff check lab tests bin
	$(BIN)/ruff check --target-version py39 lab/runner
	$(BIN)/mypy

bench: $(STAMP) ## the lab versus a naive loop; BENCH_ARGS=--bases times the cold image phase
	$(BIN)/python bin/bench.py $(BENCH_ARGS)

docs: $(STAMP) ## regenerate the CLI reference (docs/cli.md) and the report picture (docs/report.png)
	$(BIN)/python bin/clidoc.py
	$(BIN)/pytest -q tests/browser -k readme_picture

doctor: $(STAMP) ## what this machine can do: engine, Debian mirror, disk, registry, archives, emulation
	$(BIN)/lab doctor

clean: $(STAMP) ## remove the lab's containers and target images, and old runs (bases kept)
	$(BIN)/lab clean
	find reports -mindepth 1 -maxdepth 1 ! -name README.md -exec rm -rf {} +

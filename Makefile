# jwtriage — `make help` lists the targets.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.DEFAULT_GOAL := help
.PHONY: help venv demo test test-fast lint check-install check-bounds kafka-up kafka-down bench dashboard clean

help: ## list the targets
	@grep -hE '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk 'BEGIN {FS = ":.*## "}; {printf "  make %-14s %s\n", $$1, $$2}'

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	@touch $(STAMP)

venv: $(STAMP) ## create .venv and install jwtriage with its dev tools

demo: $(STAMP) ## run the embedded default scenario end to end and print the triage summary
	$(BIN)/jwtriage demo

lint: $(STAMP) ## ruff and mypy on pipeline/
	$(BIN)/ruff check $(wildcard pipeline tests dashboards bench)
	$(BIN)/mypy

test: lint kafka-up ## lint, then every test (starts the local Kafka broker itself)
	$(BIN)/pytest -q

test-fast: $(STAMP) ## unit tests only, no broker or browser
	$(BIN)/pytest -q -m "not kafka and not browser"

check-install: ## pip install . into a fresh venv outside the checkout; serve the dashboard from it (needs PyPI)
	scripts/check-install.sh

check-bounds: kafka-up ## install every dependency at its lower bound in a fresh venv and run the tests (needs PyPI)
	WITH_KAFKA=1 scripts/check-lowest-bounds.sh

kafka-up: ## start the local single-node Kafka broker on 127.0.0.1:9092 (returns once it accepts connections)
	scripts/kafka-up.sh

kafka-down: ## stop the local Kafka broker
	scripts/kafka-down.sh

bench: $(STAMP) kafka-up ## run the benchmarks (prints figures beside their baselines)
	$(BIN)/python bench/run_all.py

dashboard: $(STAMP) ## open the dashboard on the demo store
	$(BIN)/jwtriage dashboard --db jwtriage-demo.duckdb

clean: ## remove the virtual environment, caches and demo output
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache .hypothesis jwtriage-demo.duckdb

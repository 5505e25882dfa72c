# jwtriage — `make help` lists the targets.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.DEFAULT_GOAL := help
.PHONY: help venv demo test test-fast lint check-install check-bounds kafka-up kafka-down kafka-wipe bench dashboard clean validators validators-build validators-fixture lab lab-build lab-down lake-venv lake-up lake-down

help: ## list the targets
	@grep -hE '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk 'BEGIN {FS = ":.*## "}; {printf "  make %-18s %s\n", $$1, $$2}'

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

test: lint kafka-up validators-build ## lint, then every test (starts the local Kafka broker itself)
	$(BIN)/pytest -q --durations=15  # the slowest tests, so CI shows where its 20 minutes go

test-fast: $(STAMP) ## unit tests only, no broker, browser or validator toolchains
	$(BIN)/pytest -q -m "not kafka and not browser and not validators"

check-install: ## pip install . into a fresh venv outside the checkout; serve the dashboard from it (needs PyPI)
	scripts/check-install.sh

check-bounds: kafka-up ## install every dependency at its lower bound in a fresh venv and run the tests (needs PyPI)
	WITH_KAFKA=1 scripts/check-lowest-bounds.sh

kafka-up: ## start the local single-node Kafka broker on 127.0.0.1:9092 (returns once it accepts connections)
	scripts/kafka-up.sh

kafka-down: ## stop the local Kafka broker
	scripts/kafka-down.sh

kafka-wipe: ## stop the local broker and delete its data: the topics interrupted tests and benches left behind
	scripts/kafka-down.sh --wipe

lake-venv: ## the lake's own venv (.lake/venv: jwtriage[lake] on DuckDB 1.5.x, and moto's S3 server)
	scripts/lake-venv.sh

lake-up: lake-venv ## start the local lake's PostgreSQL (127.0.0.1:55432) and S3 server (127.0.0.1:55900)
	scripts/lake-up.sh

lake-down: ## stop them (the data stays in .lake/)
	scripts/lake-down.sh

bench: $(STAMP) kafka-up ## run the benchmarks (prints figures beside their baselines)
	$(BIN)/python bench/run_all.py

dashboard: $(STAMP) ## open the dashboard on the demo store
	$(BIN)/jwtriage dashboard --db jwtriage-demo.duckdb

# The real-validators harness (validators/README.md): each runner is built from its own lock file.
VAL := validators
VAL_NODE := $(VAL)/node/node_modules/.package-lock.json
VAL_GO   := $(VAL)/go/validators-go
VAL_JAVA := $(VAL)/java/target/nimbus-runner.jar

$(VAL_NODE): $(VAL)/node/package.json $(VAL)/node/package-lock.json
	cd $(VAL)/node && npm ci --no-audit --no-fund --loglevel=error

$(VAL_GO): $(VAL)/go/go.mod $(VAL)/go/go.sum $(VAL)/go/main.go
	cd $(VAL)/go && GOFLAGS=-mod=mod go build -o validators-go .

$(VAL_JAVA): $(VAL)/java/pom.xml $(wildcard $(VAL)/java/src/main/java/jwtriage/*.java)
	cd $(VAL)/java && mvn -q -B -Dstyle.color=never package

validators-build: $(VAL_NODE) $(VAL_GO) $(VAL_JAVA) ## install and build the validator runners (npm, Go, Maven)

validators: $(STAMP) validators-build ## run real JWT libraries over the failing-token corpus; print the agreement table
	$(BIN)/python -m validators.harness

validators-fixture: $(STAMP) validators-build ## run the harness and rewrite tests/fixtures/validators/messages.json
	$(BIN)/python -m validators.harness --fixture tests/fixtures/validators/messages.json

# The lab (README "The lab"): Keycloak rotates its keys under four real services; jwtriage is judged.
LAB := lab/services
LAB_NODE := $(LAB)/node/node_modules/.package-lock.json
LAB_GO   := $(LAB)/go/lab-service-go
LAB_JAVA := $(LAB)/java/target/lab-service-java.jar

$(LAB_NODE): $(LAB)/node/package.json $(LAB)/node/package-lock.json
	cd $(LAB)/node && npm ci --no-audit --no-fund --loglevel=error

$(LAB_GO): $(LAB)/go/go.mod $(LAB)/go/go.sum $(LAB)/go/main.go
	cd $(LAB)/go && GOFLAGS=-mod=mod go build -o lab-service-go .

$(LAB_JAVA): $(LAB)/java/pom.xml $(wildcard $(LAB)/java/src/main/java/jwtriage/lab/*.java)
	cd $(LAB)/java && mvn -q -B -Dstyle.color=never package

lab-build: $(LAB_NODE) $(LAB_GO) $(LAB_JAVA) ## build the lab's services (npm, Go, Maven)

lab: $(STAMP) lab-build ## Keycloak rotates under real services; prints how often jwtriage agrees with what happened
	scripts/lab-up.sh
	PYTHONPATH=$(CURDIR) $(BIN)/python -m lab

lab-down: ## stop anything a crashed lab run left running
	scripts/lab-down.sh

clean: ## remove the virtual environment, caches and demo output
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache .hypothesis jwtriage-demo.duckdb jwtriage-demo.toml
	rm -rf $(VAL)/node/node_modules $(VAL)/out $(VAL)/java/target $(VAL_GO)
	rm -rf $(LAB)/node/node_modules $(LAB)/java/target $(LAB_GO) .lab

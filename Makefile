# The operator interface. Every target works on a fresh machine with Python 3.11+, Java 17+,
# Maven, Go and PostgreSQL's server programs: the virtual environment, Kafka's jars and FerretDB are
# fetched and built on first use and cached in .cache/ (data, logs and pid files live in .run/).

PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed

.DEFAULT_GOAL := help
.PHONY: help install infra-up infra-down up down status demo test test-unit bench docs clean

help: ## List the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-11s %s\n", $$1, $$2}'

$(STAMP): pyproject.toml requirements.lock
	@$(PYTHON) -c 'import sys; sys.exit(sys.version_info < (3, 11) and "Python 3.11+ is needed")'
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip uv
	$(VENV)/bin/uv pip install -q --python $(PY) -r requirements.lock
	$(VENV)/bin/uv pip install -q --python $(PY) --no-deps -e .
	@touch $@

install: $(STAMP) ## Create the virtual environment from the lock file

infra-up: ## Start the embedded Kafka and FerretDB on PostgreSQL (or use KAFKA_BOOTSTRAP_SERVERS / MONGODB_URL)
	$(PYTHON) deploy/local/infra.py up

infra-down: ## Stop the embedded Kafka and FerretDB
	$(PYTHON) deploy/local/infra.py down

up: $(STAMP) ## Start the infrastructure, the four services and the console in the background
	$(PY) deploy/local/run.py up

down: ## Stop the console, the four services and the infrastructure
	$(PYTHON) deploy/local/run.py down

status: ## Show what is running
	$(PYTHON) deploy/local/infra.py status
	$(PYTHON) deploy/local/run.py status

demo: $(STAMP) ## Start everything, replay the real Online Retail data, print a summary and write a report
	$(PY) deploy/local/run.py up --clock event
	$(PY) -m deploy.demo $(DEMO_ARGS)

test: $(STAMP) ## Run every test against real Kafka and FerretDB, started by the tests themselves
	$(PY) -m pytest $(PYTEST_ARGS)

test-unit: $(STAMP) ## Run the unit tests only (no servers needed)
	$(PY) -m pytest tests/unit $(PYTEST_ARGS)

bench: $(STAMP) ## Run the benchmarks (not part of make test) and write docs/benchmarks.md
	$(PYTHON) deploy/local/infra.py up
	$(PY) -m bench $(BENCH_ARGS)

docs: $(STAMP) ## Regenerate the AsyncAPI and OpenAPI documents under docs/
	$(PY) -m deploy.docs

clean: down ## Stop everything and delete .run/ (the .cache/ of downloads stays)
	rm -rf .run

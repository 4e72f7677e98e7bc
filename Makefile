# miandan — every target a newcomer needs. `make run` and `make test` are the quick start.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed
export PYTHONPATH := $(CURDIR)/protos:$(CURDIR)
export PATH := $(CURDIR)/$(VENV)/bin:$(PATH)

.PHONY: help install protos proto-check proto-lint run test test-unit test-integration test-e2e hostile \
        bench bench-card bench-catalog bench-intake bench-order bench-overload drill audit backup demo catalog-300k clean

help:  ## list the targets
	@grep -E '^[a-z0-9-]+:.*##' $(MAKEFILE_LIST) | sed 's/:.*## /\t/' | column -t -s '	'

$(STAMP): pyproject.toml
	test -d $(VENV) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e ".[dev]"
	touch $(STAMP)

install: $(STAMP)  ## create .venv and install the project with its dev tools

protos: $(STAMP)  ## regenerate Python messages, stubs and .pyi from protos/
	$(PY) scripts/protos.py gen

proto-check: $(STAMP)  ## fail when generated code is stale or a proto lint rule is broken
	$(PY) scripts/protos.py check
	$(PY) scripts/protos.py lint

proto-lint: $(STAMP)  ## buf-style lint of the protos only
	$(PY) scripts/protos.py lint

run: $(STAMP)  ## start all five servers (Ctrl-C stops them); data under ./data
	$(PY) -m services.suite

test: proto-check  ## the whole test suite: unit, integration, e2e
	$(PY) -m pytest -q -p no:cacheprovider tests

test-unit: $(STAMP)  ## unit tests only (milliseconds each)
	$(PY) -m pytest -q tests/unit

test-integration: $(STAMP)  ## integration tests: real SQLite, one real server
	$(PY) -m pytest -q tests/integration

test-e2e: $(STAMP)  ## end-to-end tests: the whole suite started as `make run` does
	$(PY) -m pytest -q tests/e2e

hostile: $(STAMP)  ## a long hostile-input run: malformed bytes and edge values into every RPC, then the audit (HOSTILE_CALLS, HOSTILE_SEED)
	MIANDAN_HOSTILE_CALLS=$(or $(HOSTILE_CALLS),200) MIANDAN_HOSTILE_SEED=$(or $(HOSTILE_SEED),$(shell date +%s)) \
		$(PY) -m pytest -q -p no:cacheprovider tests/e2e/test_hostile_input.py

demo: $(STAMP)  ## play the story through the gateway: a running suite, else its own with a near cut-off (DEMO_ARGS=--own-suite)
	$(PY) -m scripts.demo $(DEMO_ARGS)

bench: $(STAMP)  ## capacity figure: the story's scenario through the gateway vs an empty gRPC call
	$(PY) -m bench.capacity

bench-card: $(STAMP)  ## card service figures
	$(PY) -m bench.card

bench-catalog: $(STAMP)  ## catalog figures with 300,000 stores
	$(PY) -m bench.catalog

bench-order: $(STAMP)  ## order placement figures
	$(PY) -m bench.order

bench-intake: $(STAMP)  ## how fast grpc.aio takes calls in: one hot method against four (why refusals made in Python wait)
	$(PY) -m bench.intake

bench-overload: $(STAMP)  ## open-loop overload curve from 0.5x to 5x capacity (table + PNG)
	$(PY) -m bench.overload

drill: $(STAMP)  ## kill -9 services at random under load, then audit
	$(PY) -m bench.drill

audit: $(STAMP)  ## cross-service reconciliation of a running suite
	$(PY) -m miandan audit

backup: $(STAMP)  ## copy every store of a running suite (./data or MIANDAN_DATA) into backups/<time>, checked
	$(PY) -m miandan backup backups/$(shell date +%Y%m%d-%H%M%S)

catalog-300k: $(STAMP)  ## import 300,000 generated stores into a running catalog
	$(PY) -m services.catalog.generate --stores 300000

clean:  ## remove the virtualenv, data and caches
	rm -rf $(VENV) data bench-out .pytest_cache build *.egg-info

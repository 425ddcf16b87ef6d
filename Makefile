# Ripple: `make run` to start it, `make test` to test it. `make` lists every target.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
HOST ?= 127.0.0.1
PORT ?= 8000
# The same flags as project/serving.py (frame size limits; no 24 h socket cap).
DAPHNE_FLAGS := --websocket-max-message-size 4194304 --websocket-max-frame-size 65536 --websocket_timeout -1

# .env, when present, supplies settings to run targets (never to tests).
ENV_FILE := $(wildcard .env)
RUN_ENV := set -a; $(if $(ENV_FILE),. ./.env;) set +a;

.DEFAULT_GOAL := help
.PHONY: help venv install dev lock run cluster bench migrate test test-python test-js lint fmt clean

help: ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-12s %s\n", $$1, $$2}'

$(BIN)/python:
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else "Ripple needs Python 3.11 or newer; set PYTHON=python3.x")'
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

# Installs come from the locks (every package pinned, with hashes), never from the loose
# requirements*.txt, so every machine gets the same tree. `make lock` remakes the locks.
$(VENV)/.runtime: requirements.lock | $(BIN)/python
	$(BIN)/pip install --quiet --require-hashes -r requirements.lock
	@touch $@

$(VENV)/.dev: requirements.lock requirements-dev.lock | $(BIN)/python
	$(BIN)/pip install --quiet --require-hashes -r requirements-dev.lock
	@touch $@ $(VENV)/.runtime

venv: $(VENV)/.runtime ## create .venv with the runtime requirements

# axe-core for the accessibility browser tests, exactly as package-lock.json pins it. Without
# npm the tests that need it say so (a skip here, a failure under CI).
node_modules/.package-lock.json: package-lock.json
	@if command -v npm >/dev/null 2>&1; then \
		npm ci --no-audit --no-fund; \
	else \
		echo "!!! npm (Node.js) is not installed: axe-core not installed, the accessibility browser tests will be skipped !!!" >&2; \
	fi

dev: $(VENV)/.dev node_modules/.package-lock.json ## create .venv with the development requirements, node_modules with axe-core

# The locks cover CPython 3.11 on Linux x86-64 (glibc), as in the image and CI; uv is not a
# requirement of the project: `pip install uv` anywhere. Without UPGRADE the pins already in a
# lock are kept (only new or changed requirements resolve); UPGRADE=1 takes the newest of all.
UV ?= uv
LOCK_FLAGS = --quiet --generate-hashes --python-version 3.11.7 --python-platform x86_64-unknown-linux-gnu \
	--custom-compile-command 'make lock' $(if $(UPGRADE),--upgrade)
lock: ## remake requirements.lock and requirements-dev.lock from requirements*.txt (needs uv)
	$(UV) pip compile $(LOCK_FLAGS) requirements.txt -o requirements.lock
	$(UV) pip compile $(LOCK_FLAGS) requirements-dev.txt -o requirements-dev.lock

migrate: $(VENV)/.runtime ## apply database migrations
	$(RUN_ENV) DJANGO_DEBUG=$${DJANGO_DEBUG:-1} $(BIN)/python manage.py migrate --noinput

run: migrate ## start daphne on http://127.0.0.1:8000 (SQLite, in-memory layer unless .env says otherwise)
	@echo "Ripple on http://$(HOST):$(PORT)/  (Ctrl-C to stop)"
	$(RUN_ENV) DJANGO_DEBUG=$${DJANGO_DEBUG:-1} exec $(BIN)/python -m project.serve -b $(HOST) -p $(PORT) $(DAPHNE_FLAGS) project.asgi:application

cluster: $(VENV)/.dev ## a Redis and two daphne workers on :8001 and :8002 sharing rooms (Ctrl-C stops all)
	$(RUN_ENV) $(BIN)/python deploy/cluster.py

SCENARIO ?= fanout
bench: $(VENV)/.dev ## a benchmark scenario: SCENARIO=fanout|echo|capacity|storm (bench/README.md)
	$(BIN)/python -m bench $(SCENARIO) $(BENCH_ARGS)

test: dev lint test-python test-js ## lint, then the whole suite: Python (unit, integration, browser) and JavaScript

test-python: $(VENV)/.dev ## the pytest suite
	$(BIN)/python -m pytest

test-js: ## the JavaScript client tests (node --test)
	@if command -v node >/dev/null 2>&1; then \
		node --test tests/js/; \
	elif [ -n "$$CI$$RIPPLE_REQUIRE_ALL" ]; then \
		echo "ERROR: node is not installed; the JavaScript tests cannot run" >&2; exit 1; \
	else \
		echo "!!! SKIPPED: the JavaScript client tests (tests/js) need Node.js 20+, which is not installed !!!" >&2; \
	fi

lint: $(VENV)/.dev ## ruff lint and format check, mypy type check, import layers (pyproject.toml)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy chat project
	$(BIN)/lint-imports

fmt: $(VENV)/.dev ## format the code with ruff
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

clean: ## remove .venv, caches and local databases
	rm -rf $(VENV) .pytest_cache .ruff_cache .mypy_cache .import_linter_cache staticfiles db.sqlite3*

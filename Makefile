# APEX Schema Admin. `make run` and `make test` work on a fresh clone with only Python 3.11+.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.DEFAULT_GOAL := help
.PHONY: help run test test-api lint bench screenshots
.PHONY: migrate migrate-create migrate-status migrate-down migrate-reset init-db prod-migrate
.PHONY: docker-migrate docker-init-db

# The seed's migration targets: thin calls into schema-admin (settings from the environment
# or .env: DATABASE_URL, ALEMBIC_CONFIG, ...). Changes run as audited jobs.
SA := $(BIN)/schema-admin
COMPOSE ?= docker-compose
COMPOSE_FILE ?= docker-compose.staging.yml

help: ## show this help
	@grep -hE '^[a-zA-Z_-]+:.*?## ' $(MAKEFILE_LIST) | sort -u | \
	  awk 'BEGIN {FS = ":.*?## "}; {printf "  \033[36m%-16s\033[0m %s\n", $$1, $$2}'

$(STAMP): pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[test,dev]'
	@touch $(STAMP)

# On the embedded default, serve first creates the SQLite demo target (var/demo.sqlite3) at an
# early revision of the CRM project, with a few rows: there are revisions to apply at once.
run: $(STAMP) ## start the panel on the embedded default (SQLite store + SQLite demo target)
	$(BIN)/schema-admin serve

lint: $(STAMP) ## ruff and mypy
	$(BIN)/ruff check .
	$(BIN)/ruff format --check admin tests
	$(BIN)/mypy

# pytest-xdist workers, twice the CPUs (half a test's time is spent waiting on the processes,
# servers and databases it starts), one test module each at a time (a module's fixtures stay
# in one process; modules with slow tests first, see tests/conftest.py);
# PYTEST_WORKERS="-n 0" runs serially, PYTEST_ARGS="tests/test_engine.py" picks files.
PYTEST_WORKERS ?= -n $(shell $(PYTHON) -c 'import os; print(2 * (os.cpu_count() or 1))') --dist loadfile
test: $(STAMP) lint ## lint, then the whole test suite (two workers per CPU)
	$(BIN)/python -m pytest $(PYTEST_WORKERS) $(PYTEST_ARGS)

test-api: $(STAMP) ## Schemathesis against a real server on PostgreSQL (admin, viewer, no token); also in `make test`
	$(BIN)/python -m pytest -n 0 tests/test_hardening_api.py $(PYTEST_ARGS)

bench: $(STAMP) ## benchmarks side by side with the alembic CLI; writes bench/RESULTS.md
	$(BIN)/python -m bench $(BENCH_ARGS)

# A fresh panel on the embedded default (the demo target), photographed by Chromium.
screenshots: $(STAMP) ## dashboard, history, preview and a job page at 1280 and 390 px into docs/screenshots/
	$(BIN)/python tests/browser/screenshots.py docs/screenshots

migrate: $(STAMP) ## apply all pending migrations (an audited job, log streamed here)
	$(SA) migrate

# MESSAGE reaches the command as an environment variable, unexpanded: quotes, `$` and
# backticks in a message stay text, never make or shell syntax.
override MESSAGE := $(value MESSAGE)
export MESSAGE
# EMPTY=1 writes the revision even when autogenerate finds no difference (a data migration
# to write by hand); only 1, yes or true turn it on.
migrate-create: $(STAMP) ## autogenerate a migration from app/models: MESSAGE="Add user preferences table" [EMPTY=1]
	@test -n "$$MESSAGE" || { echo 'usage: make migrate-create MESSAGE="Add user preferences table" [EMPTY=1]' >&2; exit 2; }
	@$(SA) create-migration "$$MESSAGE" $(if $(filter 1 yes true,$(EMPTY)),--empty)

migrate-status: $(STAMP) ## current revision against the head, and the pending list
	@$(SA) status || test $$? -eq 3

migrate-down: $(STAMP) ## roll back the last migration (downgrade -1)
	$(SA) downgrade -1

migrate-reset: $(STAMP) ## DANGEROUS: downgrade to base, dropping every table (asks to confirm)
	@if [ "$${CONFIRM:-}" != yes ]; then \
	  echo "migrate-reset reverts every migration of the target database: its tables and data are dropped."; \
	  printf "Type yes to continue: "; read -r answer || answer=; \
	  [ "$$answer" = yes ] || { echo "migrate-reset: not confirmed, nothing done" >&2; exit 1; }; \
	fi
	$(SA) reset --yes

init-db: $(STAMP) ## create the database if it does not exist, then migrate it to head
	$(SA) init-db

# CONFIRM=yes applies through the backup gate: one job takes and verifies a backup of the
# target first (BACKUP_DIR), and runs no SQL of the migration if that fails.
prod-migrate: $(STAMP) ## plan check: pending steps and their SQL; with CONFIRM=yes backs up, verifies, then applies
	@$(SA) status; rc=$$?; \
	if [ $$rc -eq 0 ]; then exit 0; fi; \
	if [ $$rc -ne 3 ]; then exit $$rc; fi; \
	echo; echo "-- The SQL of the pending steps (offline render):"; \
	$(SA) sql upgrade head || echo "prod-migrate: some SQL could not be shown offline (see above)" >&2; \
	if [ "$${CONFIRM:-}" = yes ]; then \
	  BACKUP_BEFORE_MIGRATE=true $(SA) migrate; \
	else \
	  echo; echo "Nothing was applied. Review the steps and SQL above, then run:"; \
	  echo "  make prod-migrate CONFIRM=yes"; \
	  echo "(it takes and verifies a backup first, and migrates only if that succeeds)"; \
	fi

# Inside the staging stack's backend container. Without a Docker engine (a laptop with no
# daemon, CI) the command is printed for the Docker host instead, and nothing runs.
define docker_exec
	@echo "$(COMPOSE) -f $(COMPOSE_FILE) exec backend python scripts/$(1)"
	@if docker info >/dev/null 2>&1; then \
	  $(COMPOSE) -f $(COMPOSE_FILE) exec backend python scripts/$(1); \
	else \
	  echo "note: no Docker engine is reachable here, so nothing ran: run the command above on the Docker host" >&2; \
	fi
endef

docker-migrate: ## apply the migrations inside the staging backend container
	$(call docker_exec,run_migrations.py)

docker-init-db: ## create and migrate the database from the staging backend container
	$(call docker_exec,init_db.py)

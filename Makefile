# Fusion Room: `make run` serves the app, `make test` runs every check. Both set everything up first.
PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
HOST ?= 127.0.0.1
PORT ?= 8000
# Local development defaults; a real deployment sets its own (see README, "Configuration").
export DEBUG ?= 1
PYTEST_ARGS ?=

.PHONY: run test lint typecheck pytest test-scaleout drill bench setup migrate format clean

$(STAMP): pyproject.toml
	@command -v $(PYTHON) >/dev/null 2>&1 || { echo "$(PYTHON) not found: install Python 3.11 or run make PYTHON=python3"; exit 1; }
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

setup: $(STAMP)

migrate: setup
	$(BIN)/python manage.py migrate --noinput

# With DATABASE_URL and REDIS_URL both set: one Daphne per core on one port (fusionroom/serve.py; WEB_WORKERS
# sets another number). Otherwise one Daphne, which needs no set-up. Migrations and static files come first.
ifneq ($(and $(DATABASE_URL),$(REDIS_URL)),)
SERVE = $(BIN)/python -m fusionroom.serve --host $(HOST) --port $(PORT)
else
SERVE = $(BIN)/daphne -b $(HOST) -p $(PORT) fusionroom.asgi:application
endif

run: migrate
	$(BIN)/python manage.py collectstatic --noinput --verbosity 0
	$(SERVE)

lint: setup
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

typecheck: setup
	$(BIN)/mypy .

pytest: setup
	$(BIN)/python -m pytest $(PYTEST_ARGS)

test: lint typecheck pytest

# The scale-out set-up: PostgreSQL and channels-redis (DATABASE_URL and REDIS_URL must be set).
test-scaleout: setup
	@test -n "$$DATABASE_URL" -a -n "$$REDIS_URL" || { echo "set DATABASE_URL and REDIS_URL"; exit 1; }
	$(BIN)/python -m pytest $(PYTEST_ARGS)

# Failure drills on two real Daphne processes (kill -9, database connections killed, idle sockets, cancel
# across processes, upstream faults); the same DATABASE_URL (PostgreSQL) and REDIS_URL as test-scaleout.
drill: setup
	@test -n "$$DATABASE_URL" -a -n "$$REDIS_URL" || { echo "set DATABASE_URL and REDIS_URL"; exit 1; }
	$(BIN)/python -m drills

bench: migrate
	$(BIN)/python -m bench

format: setup
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

clean:
	rm -rf $(VENV) staticfiles test-db.sqlite3*

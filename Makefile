# The two commands of README.md: `make demo` and `make test`. Everything else here serves them.
VENV ?= .venv
PY := $(VENV)/bin/python
TEST_DATABASE_URL ?= postgres://postgres@127.0.0.1:5432/rewardlab
TEST_BROKER_URL ?= redis://127.0.0.1:6379/15
DEMO_PORT ?= 8000

.PHONY: install demo demo-serve test services lint bench-web

install: $(VENV)/.installed node_modules/.installed

# torch is pinned to the CPU wheel (pyproject.toml); an unpinned torch would pull gigabytes of CUDA packages.
$(VENV)/.installed: pyproject.toml
	test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check -e '.[test]'
	touch $@

# htmx comes from the npm package htmx.org, served straight from node_modules.
node_modules/.installed: package.json package-lock.json
	npm ci --no-audit --no-fund --loglevel=error
	touch $@

# The demo runs on the same PostgreSQL and Redis as the tests and deployments (its own `rewardlab` database).
demo: install
	test -n "$${DATABASE_URL:-}" || bash .ci/services --no-browser
	test -n "$${DATABASE_URL:-}" \
	  || psql -h 127.0.0.1 -U postgres -tAc "SELECT 1 FROM pg_database WHERE datname = 'rewardlab'" | grep -q 1 \
	  || createdb -h 127.0.0.1 -U postgres rewardlab
	$(PY) manage.py migrate --noinput
	$(PY) manage.py demo_setup
	@$(MAKE) --no-print-directory demo-serve

# The demo's servers, quiet (issue 18, item 6): the static files are collected first, as the Dockerfile does, so
# WhiteNoise finds var/static; as root (a container) the worker's superuser warning becomes one line in words.
# The worker takes JSON only, never pickle, so Celery lets root run it; its warning is about that alone.
demo-serve:
	@$(PY) manage.py collectstatic --noinput -v 0
	@test "$$(id -u)" != 0 || echo "Running as root: fine for a demo; deployments run the worker as its own user (Dockerfile)."
	@bash -c 'trap "kill 0" EXIT; \
	  PYTHONWARNINGS="ignore:You'\''re running the worker with superuser privileges" \
	    $(VENV)/bin/celery -A workers worker -Q cpu,gpu --concurrency 1 --loglevel warning & \
	  $(PY) manage.py runserver 127.0.0.1:$(DEMO_PORT)'

services:
	bash .ci/services

test: install services
	DATABASE_URL=$${DATABASE_URL:-$(TEST_DATABASE_URL)} CELERY_BROKER_URL=$${CELERY_BROKER_URL:-$(TEST_BROKER_URL)} \
	  $(PY) -m pytest $(PYTEST_ARGS)

lint: install
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

bench-web: install services
	@DATABASE_URL=$${DATABASE_URL:-$(TEST_DATABASE_URL)} $(PY) bench/web.py

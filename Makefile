# jobqueue developer commands. Needs only Python 3.12: PostgreSQL and Redis come from wheels
# (see jobqueue_site/embedded.py) unless DATABASE_URL / REDIS_URL point at real servers.

SHELL := /bin/bash
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.requirements-installed
EMBEDDED := $(PY) -m jobqueue_site.embedded
PYTEST_ARGS ?=
# `make lock` pins for the image's platform (Linux x86_64, CPython 3.12) whatever machine runs it, with
# the hashes of every file of each pinned release. Pins already in a lock file are kept unless
# UPGRADE=1 (`make lock UPGRADE=1` moves every pin to the newest release inside its range).
LOCK := $(VENV)/bin/uv pip compile --quiet --generate-hashes --python-version 3.12 \
	--python-platform x86_64-unknown-linux-gnu --custom-compile-command "make lock" $(if $(UPGRADE),--upgrade)

.PHONY: venv run test test-unit test-integration test-processes test-browser lint typecheck lock bench chaos clean-data

venv: $(STAMP)

# Installs exactly the pinned, hash-checked releases of requirements-dev.lock (runtime + dev); re-runs
# pip only when a lock file is newer than the stamp. requirements*.txt hold the ranges the locks are
# made from: after editing one, run `make lock`. Python 3.12 is, in order:
# $(PYTHON), python3.12 on PATH, or a pyenv-installed 3.12 (a pyenv shim on PATH may exist
# without working, so every candidate is asked for its version).
$(STAMP): requirements.lock requirements-dev.lock
	@set -euo pipefail; \
	is312() { "$$1" -c 'import sys; sys.exit(sys.version_info[:2] != (3, 12))' >/dev/null 2>&1; }; \
	if [ ! -x "$(PY)" ]; then \
	  py=""; \
	  if [ -n "$(PYTHON)" ]; then \
	    is312 "$(PYTHON)" || { echo "error: PYTHON=$(PYTHON) is not a working Python 3.12" >&2; exit 1; }; \
	    py="$(PYTHON)"; \
	  fi; \
	  if [ -z "$$py" ] && command -v python3.12 >/dev/null 2>&1 && is312 python3.12; then \
	    py="$$(command -v python3.12)"; \
	  fi; \
	  if [ -z "$$py" ] && command -v pyenv >/dev/null 2>&1; then \
	    for candidate in "$$(pyenv root)"/versions/3.12*/bin/python3.12; do \
	      if is312 "$$candidate"; then py="$$candidate"; fi; \
	    done; \
	  fi; \
	  if [ -z "$$py" ]; then \
	    echo "error: Python 3.12 not found: put python3.12 on PATH, install it with pyenv," \
	         "or run 'make PYTHON=/path/to/python3.12 venv'" >&2; \
	    exit 1; \
	  fi; \
	  echo "creating $(VENV) with $$py"; \
	  "$$py" -m venv "$(VENV)"; \
	fi; \
	"$(PY)" -m pip install --disable-pip-version-check --require-hashes -r requirements-dev.lock; \
	touch "$@"

run: venv
	$(EMBEDDED) run --profile dev -- $(PY) -m jobqueue_site.devrun

test: venv
	$(EMBEDDED) run --profile test -- $(PY) -m pytest $(PYTEST_ARGS)

# One layer of tests/ (docs/layout.md, "Tests"): `make test PYTEST_ARGS=tests/<layer>`, with any
# PYTEST_ARGS given appended (`make test-processes PYTEST_ARGS="-x -k sigterm"`).
test-unit test-integration test-processes test-browser: test-%: venv
	$(EMBEDDED) run --profile test -- $(PY) -m pytest tests/$* $(PYTEST_ARGS)

# Checks only: never rewrites anyone's files. lint-imports checks the layering contracts in
# .importlinter (docs/layout.md); then the typecheck (below), so .ci/run enforces it too.
lint: venv
	$(PY) -m ruff check .
	$(PY) -m ruff format --check .
	$(VENV)/bin/lint-imports --no-logo --cache-dir .local/import-linter
	$(PY) -m mypy

# mypy with the django-stubs plugin; which files and how strictly: [tool.mypy] in pyproject.toml.
typecheck: venv
	$(PY) -m mypy

# Re-pins requirements.lock from requirements.txt, then requirements-dev.lock from requirements-dev.txt
# under the runtime pins (so both files pin every shared package alike). Needs the package index.
lock: venv
	$(LOCK) -o requirements.lock requirements.txt
	$(LOCK) -c requirements.lock -o requirements-dev.lock requirements-dev.txt

bench: venv
	$(EMBEDDED) run --profile test -- $(PY) bench/throughput.py

# Chaos soak (docs/reliability.md): starts its own PostgreSQL + Redis under a temp dir, so it may kill
# and restart them. `make chaos ARGS=--short` is the CI form (~2-3 min); exits non-zero on a violation.
ARGS ?=
chaos: venv
	$(PY) bench/chaos.py $(ARGS)

clean-data:
	@if [ -x "$(PY)" ]; then \
	  $(EMBEDDED) down --profile dev; \
	  $(EMBEDDED) down --profile test; \
	fi
	rm -rf .local

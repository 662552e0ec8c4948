# jobqueue developer commands. Needs only Python 3.12: PostgreSQL and Redis come from wheels
# (see jobqueue_site/embedded.py) unless DATABASE_URL / REDIS_URL point at real servers.

SHELL := /bin/bash
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.requirements-installed
EMBEDDED := $(PY) -m jobqueue_site.embedded
PYTEST_ARGS ?=

.PHONY: venv run test lint bench clean-data

venv: $(STAMP)

# Re-runs pip only when a requirements file is newer than the stamp. Python 3.12 is, in order:
# $(PYTHON), python3.12 on PATH, or a pyenv-installed 3.12 (a pyenv shim on PATH may exist
# without working, so every candidate is asked for its version).
$(STAMP): requirements.txt requirements-dev.txt
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
	"$(PY)" -m pip install --disable-pip-version-check -r requirements-dev.txt; \
	touch "$@"

run: venv
	$(EMBEDDED) run --profile dev -- $(PY) -m jobqueue_site.devrun

test: venv
	$(EMBEDDED) run --profile test -- $(PY) -m pytest $(PYTEST_ARGS)

# Checks only: never rewrites anyone's files.
lint: venv
	$(PY) -m ruff check .
	$(PY) -m ruff format --check .

bench: venv
	$(EMBEDDED) run --profile test -- $(PY) bench/throughput.py

clean-data:
	@if [ -x "$(PY)" ]; then \
	  $(EMBEDDED) down --profile dev; \
	  $(EMBEDDED) down --profile test; \
	fi
	rm -rf .local

# sinkdash: `make run` serves the dashboard, `make test` runs the whole suite. Both set up .venv
# themselves on a fresh clone, with the first Python >= 3.12 found on PATH or among pyenv's versions.

SHELL := /bin/bash
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
HOST ?= 127.0.0.1
PORT ?= 8000
export HOST PORT

# The first interpreter that really runs and is >= 3.12. pyenv's shims answer for versions that are
# installed but not selected ("pyenv: python3.12: command not found"), so each candidate is run,
# not just looked up.
define find_python
for c in python3 python3.13 python3.12 python python3.14; do \
  p=$$(command -v $$c 2>/dev/null) || continue; \
  $$p -c 'import sys; sys.exit(sys.version_info < (3, 12))' 2>/dev/null && { echo $$p; exit 0; }; \
done; \
for p in $$(ls -d $${PYENV_ROOT:-$$HOME/.pyenv}/versions/3.* 2>/dev/null | sort -rV); do \
  $$p/bin/python -c 'import sys; sys.exit(sys.version_info < (3, 12))' 2>/dev/null && { echo $$p/bin/python; exit 0; }; \
done; exit 1
endef

.PHONY: run test bench setup clean

$(STAMP): pyproject.toml
	@python=$$($(find_python)) || { \
	  echo "sinkdash needs Python 3.12 or newer, and none was found on PATH or in pyenv."; \
	  echo "Install one (for example 'pyenv install 3.12' or your system's python3.12 package) and run make again."; \
	  exit 1; }; \
	if [ ! -x $(PY) ] || ! $(PY) -c 'import sys; sys.exit(sys.version_info < (3, 12))'; then \
	  echo "Creating $(VENV) with $$python"; rm -rf $(VENV); $$python -m venv $(VENV); fi
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[dev]'
	@touch $(STAMP)

setup: $(STAMP)

run: $(STAMP)
	$(PY) manage.py migrate --noinput
	$(PY) manage.py collectstatic --noinput --verbosity 0
	$(PY) manage.py serve

test: $(STAMP)
	$(PY) -m pytest $(PYTEST_ARGS)

bench: $(STAMP)
	$(PY) bench/run.py $(BENCH_ARGS)

clean:
	rm -rf $(VENV) staticfiles .pytest_cache

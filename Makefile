# Two entry points, both idempotent: `make study` (quick profile) and `make test`.
# The environment is .venv, (re)installed only when pyproject.toml changes.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
PROFILE ?= quick
JOBS ?= 2  # notebooks run at once (the CPU profiles use one thread each; use 1 on a single GPU)

.PHONY: study smoke test env clean-outputs

env: $(STAMP)

$(PY):
	$(PYTHON) -m venv $(VENV)

$(STAMP): pyproject.toml | $(PY)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e ".[test]"
	-$(VENV)/bin/nbstripout --install --attributes .gitattributes
	touch $(STAMP)

study: $(STAMP)
	$(PY) run_all.py --profile $(PROFILE) --jobs $(JOBS)

smoke: $(STAMP)
	$(PY) run_all.py --profile smoke --jobs $(JOBS)

test: $(STAMP)
	$(PY) -m pytest

clean-outputs:
	rm -rf outputs/smoke outputs/quick outputs/full outputs/notebook

# Two entry points, both idempotent: `make study` (quick profile) and `make test`.
# The environment is .venv, installed from requirements.lock (exact versions of the whole dependency tree)
# and reinstalled only when the lock or pyproject.toml changes. `make lock` regenerates the lock.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
LOCK := requirements.lock
PROFILE ?= quick
JOBS ?= 2  # notebooks run at once (the CPU profiles use one thread each; use 1 on a single GPU)

.PHONY: study smoke test findings env lock clean-outputs

env: $(STAMP)

$(PY):
	$(PYTHON) -m venv $(VENV)

# The lock lists the whole tree, so pip resolves nothing (--no-deps; `pip check` confirms nothing is missing).
# Byte-compiling on all cores instead of pip's one saves about 10 s; a few of torch's test files are
# Python 3.12 syntax and fail to compile on 3.11, as they do silently under pip, hence the `|| true`.
$(STAMP): $(LOCK) pyproject.toml | $(PY)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet --no-deps --no-compile -r $(LOCK)
	$(PY) -m compileall -q -j 0 $(VENV)/lib >/dev/null 2>&1 || true
	$(PY) -m pip install --quiet --no-deps -e .
	$(PY) -m pip check
	-$(VENV)/bin/nbstripout --install --attributes .gitattributes
	touch $(STAMP)

# pip's resolver on pyproject.toml's ranges in a throwaway venv; nothing is installed, only resolved.
lock:
	rm -rf .lock-venv
	$(PYTHON) -m venv .lock-venv
	.lock-venv/bin/python -m pip install --quiet --upgrade pip
	.lock-venv/bin/python -m pip install --quiet --dry-run --ignore-installed --report .lock-venv/report.json -e ".[test]"
	.lock-venv/bin/python tools/lock.py .lock-venv/report.json > $(LOCK).tmp
	mv $(LOCK).tmp $(LOCK)
	rm -rf .lock-venv

study: $(STAMP)
	$(PY) run_all.py --profile $(PROFILE) --jobs $(JOBS)

# The README's findings block, generated from the finished study in outputs/$(PROFILE).
findings: $(STAMP)
	$(PY) -m lus_utils.compare.findings outputs/$(PROFILE)

smoke: $(STAMP)
	$(PY) run_all.py --profile smoke --jobs $(JOBS)

test: $(STAMP)
	$(PY) -m pytest  # the smoke study starts in the background before collection (tests/conftest.py)

clean-outputs:
	rm -rf outputs/smoke outputs/quick outputs/full outputs/notebook

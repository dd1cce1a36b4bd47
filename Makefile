# The two commands of the README. Both create .venv in the repository on first use.
VENV ?= .venv
PYTHON ?= python3
# Test processes (pytest-xdist); each test file runs whole in one of them, so module fixtures are built once.
PYTEST_WORKERS ?= 2
PYTEST_PARALLEL = -n $(PYTEST_WORKERS) --dist loadfile
STAMP := $(VENV)/.installed

.PHONY: demo test test-fast install clean

install: $(STAMP)

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install --quiet --upgrade pip
	$(VENV)/bin/pip install --quiet -e '.[test]'
	touch $(STAMP)

demo: $(STAMP)
	$(VENV)/bin/actalign demo

# Chromium (Debian's package) renders the HTML report in tests/test_report.py, which skips without it;
# installing it is best effort (it needs root and apt-get).
test: $(STAMP)
	command -v chromium >/dev/null || (apt-get update -qq && apt-get install -y -qq chromium) || true
	$(VENV)/bin/pytest $(PYTEST_PARALLEL)

# The development loop: every test but those marked slow (2 s or more each: crash recovery, deployments,
# the Dask cluster, the trained toy model, most CLI-process and whole-pipeline tests); `make test` (what CI runs) keeps them.
test-fast: $(STAMP)
	$(VENV)/bin/pytest -m "not slow" $(PYTEST_PARALLEL)

clean:
	rm -rf $(VENV) actalign-demo actalign-data

# The two commands a newcomer needs: `make run` and `make test`. Both create .venv if missing.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
EXTRAS ?= dev,train

.PHONY: run system-check test test-fast venv installer benchmarks clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --upgrade pip

# Reinstall whenever pyproject.toml changes.
$(STAMP): pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install -e ".[$(EXTRAS)]"
	touch $(STAMP)

venv: $(STAMP)

# Before the first (long) install: the system libraries Qt needs to open a window, named with the
# apt-get/dnf line that installs them (radreview/system_check.py, standard library only). The
# viewer checks again itself, so the installed `radreview` and the frozen app say the same.
system-check:
	$(PYTHON) -m radreview.system_check

run: system-check $(STAMP)
	$(BIN)/radreview resources/demo

# The PostgreSQL tests start a throwaway server themselves (tests/_postgres.py) from PostgreSQL's
# programs, installed first where that can be done without asking (root with apt-get).
test: $(STAMP)
	-@scripts/install_test_postgres.sh
	QT_QPA_PLATFORM=offscreen $(BIN)/python -m pytest -q

test-fast: $(STAMP)
	QT_QPA_PLATFORM=offscreen $(BIN)/python -m pytest -q -m "not slow"

benchmarks: $(STAMP)
	for f in tests/benchmarks/bench_*.py; do $(BIN)/python $$f || exit 1; done

installer: $(STAMP)
	$(BIN)/python -m pip install -e ".[installer]"
	$(BIN)/python installer/build.py

clean:
	rm -rf build dist .pytest_cache

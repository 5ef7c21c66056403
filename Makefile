# Everything a fresh machine needs: `make test` and `make demo` set up the venv themselves.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
PROTOS := $(wildcard protos/resilientrpc/proto/*.proto)

.PHONY: setup test lint typecheck pytest demo bench protos clean

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[dev]'
	touch $@

setup: $(VENV)/.installed

# The README's test command: lint, types, then the suite (real servers on 127.0.0.1).
test: setup lint typecheck pytest

lint: setup
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/ruff check .

typecheck: setup
	$(VENV)/bin/mypy

pytest: setup
	$(PY) -m pytest -q

demo: setup
	$(VENV)/bin/resilientrpc demo

bench: setup
	$(VENV)/bin/resilientrpc bench

# Regenerate the checked-in protobuf / gRPC code (tests/test_protos_current.py checks it).
protos: setup
	$(PY) -m grpc_tools.protoc -Iprotos --python_out=. --pyi_out=. --grpc_python_out=. $(PROTOS)

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache *.egg-info

# Everything a fresh machine needs: `make test` and `make demo` set up the venv themselves.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
PROTOS := $(wildcard protos/resilientrpc/proto/*.proto)

.PHONY: setup test lint typecheck pytest demo bench protos mutate clean

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

# Mutation testing of the modules that decide where calls go, against the fast pure-function
# tests ([tool.mutmut] in pyproject.toml; not part of `make test` or CI; docs/mutation.md).
# One module: `make mutate MODULE=resilientrpc/strategies` (or MODULE=resilientrpc/picker.py).
# Results are cached in mutants/: a second run checks only mutants of changed code.
MODULE ?=
mutate: setup
	$(VENV)/bin/mutmut run $(if $(MODULE),'$(subst /,.,$(MODULE:.py=))*')
	@echo "module status count:"
	@$(VENV)/bin/mutmut results --all true | awk -F': ' '/: / && $$2 != "not checked" \
		{ n = $$1; sub(/^ +/, "", n); sub(/\.[^.]*$$/, "", n); c[n " " $$2]++ } \
		END { for (k in c) print "  " k, c[k] }' | sort
	@echo "not killed (see one: $(VENV)/bin/mutmut show NAME):"
	@$(VENV)/bin/mutmut results | grep -v ': not checked$$' || true

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache *.egg-info mutants

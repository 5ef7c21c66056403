# Everything a fresh machine needs: `make test` and `make demo` set up the venv themselves.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
# A second venv at the oldest supported releases (constraints/floor.txt pins each floor).
FLOOR_VENV ?= .venv-floor
FLOOR_PY := $(FLOOR_VENV)/bin/python
FLOOR_CONSTRAINTS := constraints/floor.txt
PROTOS := $(wildcard protos/resilientrpc/proto/*.proto)

.PHONY: setup setup-floor test test-floor lint typecheck pytest demo bench protos mutate clean

# The newest releases that pyproject.toml allows, and what can only be tested there
# (constraints/newest-only.txt), resolved together.
NEWEST_ONLY := constraints/newest-only.txt
$(VENV)/.installed: pyproject.toml $(NEWEST_ONLY)
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[dev]' -r $(NEWEST_ONLY)
	touch $@

# The floors, plus grpcio-tools: the generator of resilientrpc/proto lives only here.
$(FLOOR_VENV)/.installed: pyproject.toml $(FLOOR_CONSTRAINTS)
	$(PYTHON) -m venv $(FLOOR_VENV)
	$(FLOOR_PY) -m pip install --quiet --upgrade pip
	$(FLOOR_PY) -m pip install --quiet -c $(FLOOR_CONSTRAINTS) -e '.[dev]' grpcio-tools
	touch $@

setup: $(VENV)/.installed

setup-floor: $(FLOOR_VENV)/.installed

# The README's test command: lint, types, then the suite (real servers on 127.0.0.1).
test: setup lint typecheck pytest

lint: setup
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/ruff check .

typecheck: setup
	$(VENV)/bin/mypy

pytest: setup
	$(PY) -m pytest

# The whole suite at the floors. RESILIENTRPC_FLOOR_RUN makes the suite check that the floors
# are what is installed and compare the generated code byte for byte (no skipping).
test-floor: setup-floor
	RESILIENTRPC_FLOOR_RUN=1 $(FLOOR_PY) -m pytest

demo: setup
	$(VENV)/bin/resilientrpc demo

bench: setup
	$(VENV)/bin/resilientrpc bench

# Regenerate the checked-in protobuf / gRPC code with the pinned grpcio-tools
# (tests/test_protos_current.py checks it).
protos: setup-floor
	$(FLOOR_PY) -m grpc_tools.protoc -Iprotos --python_out=. --pyi_out=. --grpc_python_out=. $(PROTOS)

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
	rm -rf $(VENV) $(FLOOR_VENV) .mypy_cache .ruff_cache .pytest_cache *.egg-info mutants

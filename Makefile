PY ?= .venv/bin/python
PROTOS := $(wildcard protos/resilientrpc/proto/*.proto)

.PHONY: protos

# Regenerate the checked-in protobuf / gRPC code (tests/test_protos_current.py checks it).
protos:
	$(PY) -m grpc_tools.protoc -Iprotos --python_out=. --pyi_out=. --grpc_python_out=. $(PROTOS)

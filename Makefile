# snakepit-bridge developer commands. `make test` is what CI runs (via .ci/run).
SHELL := /bin/bash
FT_VENV  := .venv
GIL_VENV := .venv-gil
PYTEST_ARGS ?=

.PHONY: setup test test-ft test-gil test-debug tsan valgrind demo bench bench-quick proto clean

setup:
	@scripts/setup.sh

# The full check: the suite on 3.13t, on the GIL build, the suite again against a debug build
# of the native core (assertions on) on both, then the hammer and stress tests under
# ThreadSanitizer (SKIP_TSAN=1 leaves that last step out).
test: setup test-ft test-gil test-debug
ifndef SKIP_TSAN
	scripts/tsan.sh
endif

test-ft:
	$(FT_VENV)/bin/python -m pytest -n auto $(PYTEST_ARGS)

test-gil:
	$(GIL_VENV)/bin/python -m pytest -n auto $(PYTEST_ARGS)

test-debug: setup
	scripts/debug.sh

tsan: setup
	scripts/tsan.sh

valgrind: setup
	scripts/valgrind.sh

demo: setup
	$(FT_VENV)/bin/snakepit-bridge hammer

bench: setup
	$(FT_VENV)/bin/python -m benchmarks
	$(GIL_VENV)/bin/python -m benchmarks

bench-quick: setup
	$(FT_VENV)/bin/python -m benchmarks --quick

# Regenerate snakepit_bridge/server/proto/bridge_{pb2,grpc}.py from bridge.proto (GIL venv:
# grpcio-tools has no free-threaded wheels). tests/test_server_proto.py fails when they are stale.
proto: setup
	$(GIL_VENV)/bin/python scripts/gen_proto.py

clean:
	rm -rf build dist *.egg-info snakepit_bridge/_native*.so $(FT_VENV) $(GIL_VENV) .venv-tsan .venv-debug

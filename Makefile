# snakepit-bridge developer commands. `make test` is what CI runs (via .ci/run).
SHELL := /bin/bash
FT_VENV  := .venv
GIL_VENV := .venv-gil
PYTEST_ARGS ?=

.PHONY: setup lint test test-ft test-gil test-debug tsan valgrind demo bench bench-quick bench-peers proto dist clean

setup:
	@scripts/setup.sh

# Static checks, with the tools of the `lint` extra in the GIL venv. Each check is one
# lint-* target; a new one is added to LINT_CHECKS.
LINT_CHECKS := lint-python lint-c lint-references
LINT_BIN := $(GIL_VENV)/bin
.PHONY: $(LINT_CHECKS)

lint: setup $(LINT_CHECKS)

# ruff (rules and formatting over every Python file) and mypy --strict over snakepit_bridge/
# (both configured in pyproject.toml).
lint-python:
	$(LINT_BIN)/ruff check .
	$(LINT_BIN)/ruff format --check .
	$(LINT_BIN)/mypy

# clang-format over the native core (style in .clang-format).
lint-c:
	$(LINT_BIN)/clang-format --dry-run --Werror src/*.c src/*.h

# Comments and output cite the requirement itself or a public reference (gh-NNNN, docs), never
# an internal tracker number.
lint-references:
	@if git grep -n -I -E '[Ii]ssue ?#?[0-9]+|§ ?[0-9]|\(#[0-9]+\)'; then \
	  echo "lint: the lines above cite an internal tracker; say what is meant instead" >&2; exit 1; fi

# The full check: the linters, the suite on 3.13t, on the GIL build, the suite again against a
# debug build of the native core (assertions on) on both, then the hammer and stress tests under
# ThreadSanitizer (SKIP_TSAN=1 leaves that last step out).
test: setup lint test-ft test-gil test-debug
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

# The showcase served by the real worker server (a subprocess on the loopback interface),
# hammered over gRPC from 16 concurrent streams; SNAKEPIT_DEMO_REQUESTS sets the request count.
demo: setup
	$(FT_VENV)/bin/python scripts/demo.py

# The full benchmark run on both interpreters (BENCH_ARGS: e.g. --skip server). bench-peers
# installs the optional native peers of the `bench` extra, one at a time (pip skips those whose
# marker does not hold): one that cannot be installed is reported and the run goes on without it.
BENCH_ARGS ?=

bench: setup bench-peers
	$(FT_VENV)/bin/python -m benchmarks $(BENCH_ARGS)
	$(GIL_VENV)/bin/python -m benchmarks $(BENCH_ARGS)

bench-quick: setup bench-peers
	$(FT_VENV)/bin/python -m benchmarks --quick $(BENCH_ARGS)

bench-peers: setup
	@for venv in $(FT_VENV) $(GIL_VENV); do \
	  $$venv/bin/python -c 'import tomllib; print(*tomllib.load(open("pyproject.toml", "rb"))["project"]["optional-dependencies"]["bench"], sep="\n")' \
	  | while read -r req; do \
	    $$venv/bin/python -m pip install -q "$$req" \
	      || echo "bench-peers: $$req not installed in $$venv; the benchmarks report it missing" >&2; \
	  done; \
	done

# Regenerate snakepit_bridge/server/proto/bridge_{pb2,grpc}.py from bridge.proto (GIL venv:
# grpcio-tools has no free-threaded wheels). tests/test_server_proto.py fails when they are stale.
proto: setup
	$(GIL_VENV)/bin/python scripts/gen_proto.py

# Release artefacts in dist/: the sdist and manylinux wheels for both interpreters.
dist: setup
	scripts/dist.sh

clean:
	rm -rf build dist *.egg-info snakepit_bridge/_native*.so $(FT_VENV) $(GIL_VENV) .venv-tsan .venv-debug

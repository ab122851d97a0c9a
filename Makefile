# snakepit-bridge developer commands. `make test` is what CI runs (via .ci/run).
SHELL := /bin/bash
FT_VENV  := .venv
GIL_VENV := .venv-gil
PYTEST_ARGS ?=

.PHONY: setup test test-ft test-gil demo bench bench-quick clean

setup:
	@scripts/setup.sh

test: setup test-ft test-gil

test-ft:
	$(FT_VENV)/bin/python -m pytest -n auto $(PYTEST_ARGS)

test-gil:
	$(GIL_VENV)/bin/python -m pytest -n auto $(PYTEST_ARGS)

demo: setup
	$(FT_VENV)/bin/snakepit-bridge hammer

bench: setup
	$(FT_VENV)/bin/python -m benchmarks
	$(GIL_VENV)/bin/python -m benchmarks

bench-quick: setup
	$(FT_VENV)/bin/python -m benchmarks --quick

clean:
	rm -rf build dist *.egg-info snakepit_bridge/_native*.so $(FT_VENV) $(GIL_VENV)

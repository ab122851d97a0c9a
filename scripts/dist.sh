#!/usr/bin/env bash
# Release artefacts (`make dist`), into dist/: the sdist, and built from it (as pip builds it
# for a user: no debug information) one wheel per venv's interpreter, repaired by auditwheel to
# the manylinux tag its symbols allow (the extension needs only the C library).
set -euo pipefail
cd "$(dirname "$0")/.."
log() { printf 'dist: %s\n' "$*" >&2; }
die() { printf 'dist: error: %s\n' "$*" >&2; exit 1; }

AUDITWHEEL=.venv-gil/bin/auditwheel
[ -x "$AUDITWHEEL" ] || die "no $AUDITWHEEL; run make setup (the GIL venv gets the release extra)"
# A user's build: none of the project's own build switches.
unset SNAKEPIT_WERROR SNAKEPIT_DEBUG SNAKEPIT_DEBUG_INFO SNAKEPIT_TSAN
rm -rf dist
mkdir -p dist/unrepaired
sdist=$(.venv-gil/bin/python -c "from setuptools import build_meta as b; print(b.build_sdist('dist'))" | tail -n1)
log "built dist/$sdist"
for venv in .venv .venv-gil; do
  log "building the wheel for $venv from the sdist"
  "$venv/bin/python" -m pip wheel -q --no-deps --no-build-isolation -w dist/unrepaired "dist/$sdist"
done
PATH="$(pwd)/.venv-gil/bin:$PATH" "$AUDITWHEEL" -v repair --wheel-dir dist dist/unrepaired/*.whl >&2
rm -rf dist/unrepaired
ls -1 dist

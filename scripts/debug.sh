#!/usr/bin/env bash
# The test suite against a debug build of the native core (`make test-debug`).
#
# The extension is built with SNAKEPIT_DEBUG=1 (-O0 -g3, assertions on: the invariants of the
# lock, the shards and the registry lock are checked) in a private copy of the working tree
# under .venv-debug/, once per venv, and the suite runs from that copy, so the test process and
# the subprocesses it starts import the debug build, never the repository's own.
#
# Usage: scripts/debug.sh [pytest arguments ...]    (default: the whole suite, -n 2)
set -euo pipefail
cd "$(dirname "$0")/.."
REPO=$(pwd)
log() { printf 'debug: %s\n' "$*" >&2; }
die() { printf 'debug: error: %s\n' "$*" >&2; exit 1; }

args=("$@")
[ "${#args[@]}" -gt 0 ] || args=(-n 2 -q)
status=0
for venv in .venv .venv-gil; do
  py="$REPO/$venv/bin/python"
  [ -x "$py" ] || die "$venv is missing; run make setup"
  tag=$("$py" -c 'import sys, sysconfig; print(sysconfig.get_config_var("SOABI") or sys.implementation.cache_tag)')
  copy="$REPO/.venv-debug/$tag"
  rm -rf "$copy"
  mkdir -p "$copy"
  git ls-files -co --exclude-standard | grep -v -e '\.so$' -e '__pycache__' -e '^\.venv' \
    | tar -cf - -T - | tar -xf - -C "$copy"
  ln -s "$REPO/.venv" "$copy/.venv"
  ln -s "$REPO/.venv-gil" "$copy/.venv-gil"
  log "building the debug extension for $venv"
  (cd "$copy" && SNAKEPIT_DEBUG=1 SNAKEPIT_WERROR=1 "$py" setup.py -q build_ext --inplace) \
    > "$copy/build.log" 2>&1 || { cat "$copy/build.log" >&2; die "debug build for $venv failed"; }
  PYTHONPATH="$copy" "$py" -P -c "
import sys, snakepit_bridge._native as n
assert n.__file__.startswith(sys.argv[1]), n.__file__
assert n.debug_build, 'not a debug build'
" "$copy" || die "the test process would not import the debug build"
  log "suite on $venv against the debug build"
  (cd "$copy" && PYTHONPATH="$copy" "$py" -m pytest -p no:cacheprovider "${args[@]}") || status=1
done
exit "$status"

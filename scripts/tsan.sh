#!/usr/bin/env bash
# ThreadSanitizer check of the native core (`make tsan`).
#
#   1. Build a ThreadSanitizer free-threaded CPython 3.13.5 (--disable-gil
#      --with-thread-sanitizer) into the cache folder, once per machine. The source tarball
#      is the one scripts/ft-python.sh downloads (scripts/cpython-source.sh finds or fetches
#      it). The standard library is not byte-compiled at install (most of the build time);
#      .pyc files are written on first use instead.
#   2. A venv .venv-tsan (gitignored) with pytest (no xdist), and the extension built with
#      SNAKEPIT_TSAN=1 (-fsanitize=thread) in a private copy of the sources inside it, so the
#      extension of the normal .venv and the repo's build/ folder are never touched.
#   3. The hammer and stress tests, single process, output not captured (-s), then the
#      stress runner for a longer fixed run, with TSAN_OPTIONS pointing at
#      tests/tsan-suppressions.txt (CPython-internal reports only).
#   4. Exit non-zero when a test fails or TSan reports anything involving project code.
#
# Usage: scripts/tsan.sh [--build-only] [pytest arguments ...]
#   SNAKEPIT_TSAN_TESTS      test files to run (default: stress, fault and hammer tests)
#   SNAKEPIT_TSAN_STRESS_S   seconds of the extra stress-runner run (default 20; 0 skips)
#   SNAKEPIT_HANG_SCALE      share of tests/test_hangs.py's forks and exits (default 0.2 here)
#   SNAKEPIT_CACHE           cache folder (default ~/.cache/snakepit-bridge)
set -euo pipefail
cd "$(dirname "$0")/.."
REPO=$(pwd)
log() { printf 'tsan: %s\n' "$*" >&2; }
die() { printf 'tsan: error: %s\n' "$*" >&2; exit 1; }

CPY_VERSION=3.13.5
CACHE_ROOT=${SNAKEPIT_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/snakepit-bridge}
PREFIX="$CACHE_ROOT/cpython-$CPY_VERSION-ft-tsan"
TSAN_PY="$PREFIX/bin/python3.13t"
VENV="$REPO/.venv-tsan"
SUPP="$REPO/tests/tsan-suppressions.txt"
# Let the TSan interpreter write the .pyc files it skipped at install (and ours) once.
unset PYTHONDONTWRITEBYTECODE

build_only=0
if [ "${1:-}" = "--build-only" ]; then build_only=1; shift; fi

is_tsan_ft() {
  [ -x "$1" ] && "$1" -c '
import sys, sysconfig
ok = sysconfig.get_config_var("Py_GIL_DISABLED") and "--with-thread-sanitizer" in (sysconfig.get_config_var("CONFIG_ARGS") or "")
sys.exit(0 if ok else 1)' 2>/dev/null
}

# --- 1. the TSan interpreter ----------------------------------------------------------------
if ! is_tsan_ft "$TSAN_PY"; then
  command -v cc >/dev/null || command -v gcc >/dev/null || die "no C compiler"
  tarball=$(scripts/cpython-source.sh) || die "no CPython $CPY_VERSION source"
  BUILD="$CACHE_ROOT/build/tsan"
  blog="$CACHE_ROOT/build/tsan-build.log"
  log "building a ThreadSanitizer free-threaded CPython $CPY_VERSION into $PREFIX (once per machine, about 5-10 minutes; log: $blog)"
  rm -rf "$BUILD" "$PREFIX"
  mkdir -p "$BUILD"
  tar -xf "$tarball" -C "$BUILD"
  cd "$BUILD/Python-$CPY_VERSION"
  # COMPILEALL_OPTS=--help turns the two byte-compile passes of `make libinstall` (three
  # optimization levels of the whole stdlib under a TSan interpreter) into a no-op.
  {
    ./configure --prefix="$PREFIX" --disable-gil --with-thread-sanitizer --with-ensurepip=no \
    && nice -n 10 make -j"$(nproc)" \
    && make altinstall COMPILEALL_OPTS=--help
  } > "$blog" 2>&1 || die "TSan CPython build failed; see $blog"
  cd "$REPO"
  is_tsan_ft "$TSAN_PY" || die "built interpreter at $PREFIX is not a free-threaded TSan build"
  log "done: $TSAN_PY"
fi
[ "$build_only" = 1 ] && { echo "$TSAN_PY"; exit 0; }

# --- 2. the venv and a TSan build of the extension --------------------------------------------
# pip itself is slow under TSan (minutes), so the venv has no pip: pytest and setuptools
# (pure Python) are installed into it by the normal free-threaded 3.13 interpreter's pip (same version and ABI).
SITE="$VENV/lib/python3.13t/site-packages"
want="$("$TSAN_PY" -c 'import sys; print(sys.executable, sys.version.split()[0])') pytest setuptools"
if [ ! -x "$VENV/bin/python" ] || [ "$(cat "$VENV/.snakepit-stamp" 2>/dev/null)" != "$want" ]; then
  log "creating $VENV"
  rm -rf "$VENV"
  "$TSAN_PY" -m venv --without-pip "$VENV"
  FT=$(scripts/ft-python.sh) || die "no free-threaded CPython 3.13 to install pytest with"
  "$FT" -m pip install -q --disable-pip-version-check --root-user-action=ignore --target "$SITE" \
    pytest setuptools wheel > "$VENV/pip.log" 2>&1 || { cat "$VENV/pip.log" >&2; die "installing pytest into $VENV failed"; }
  echo "$want" > "$VENV/.snakepit-stamp"
fi
[ -d "$SITE" ] || die "$SITE missing; remove $VENV and re-run"

# A private copy of the sources, built in place there: building in the repo would overwrite
# the normal _native.cpython-313t-*.so (same file name) and could reuse uninstrumented
# objects from build/. A .pth file puts the copy on the venv's path.
copy="$VENV/build-src"
rm -rf "$copy" "$VENV/run"
mkdir -p "$copy" "$VENV/run"
git ls-files -co --exclude-standard -- setup.py pyproject.toml MANIFEST.in 'README*' 'LICENSE*' src snakepit_bridge \
  | grep -v -e '\.so$' -e '__pycache__' | tar -cf - -T - | tar -xf - -C "$copy"
log "building the extension with -fsanitize=thread"
(cd "$copy" && SNAKEPIT_TSAN=1 "$VENV/bin/python" setup.py -q build_ext --inplace) \
  > "$VENV/ext-build.log" 2>&1 || { cat "$VENV/ext-build.log" >&2; die "TSan build of the extension failed"; }
echo "$copy" > "$SITE/snakepit-bridge-tsan.pth"
# The tests run from a folder holding only tests/ and pyproject.toml (ini options), with
# -P, so `import snakepit_bridge` finds the TSan build, never the repo's own.
git ls-files -co --exclude-standard -- tests pyproject.toml conftest.py \
  | grep -v '__pycache__' | tar -cf - -T - | tar -xf - -C "$VENV/run"
so=$(cd "$VENV/run" && "$VENV/bin/python" -P -c 'import snakepit_bridge._native as m; print(m.__file__)') \
  || die "the TSan build of snakepit_bridge._native does not import"
case "$so" in "$copy"/*) ;; *) die "imported $so instead of the TSan build in $copy";; esac
ldd "$so" | grep libtsan >/dev/null || die "$so is not linked with ThreadSanitizer"
(cd "$VENV/run" && "$VENV/bin/python" -P -c 'import sys, snakepit_bridge; sys.exit(sys._is_gil_enabled())') \
  || die "importing snakepit_bridge enabled the GIL on the TSan build"
# The package's pytest plugin is registered by an entry point when pip-installed; here it
# is loaded by name instead.
plugin=()
[ -f "$copy/snakepit_bridge/pytest_plugin.py" ] && plugin=(-p snakepit_bridge.pytest_plugin)

# --- 3. the tests under TSan ------------------------------------------------------------------
[ -f "$SUPP" ] || die "missing $SUPP"
export SNAKEPIT_HANG_SCALE=${SNAKEPIT_HANG_SCALE:-0.2}
# Every process writes its reports to a file of its own (log_path), so a race in a
# subprocess a test starts (forks, exits, the server) is judged too, not lost in the captured
# stderr of that subprocess.
REPORTS="$VENV/tsan-reports"
rm -rf "$REPORTS"
mkdir -p "$REPORTS"
export TSAN_OPTIONS="suppressions=$SUPP halt_on_error=0 exitcode=0 second_deadlock_stack=1 history_size=4 log_path=$REPORTS/report ${TSAN_OPTIONS:-}"
if [ -n "${SNAKEPIT_TSAN_TESTS:-}" ]; then
  read -r -a tests <<< "$SNAKEPIT_TSAN_TESTS"
else
  tests=()
  for f in tests/test_stress.py tests/test_faults.py tests/test_hangs.py tests/test_hammer*.py tests/test_*hammer*.py tests/test_thread_local*.py tests/test_*tracker*.py tests/test_native_tracked.py; do
    [ -f "$f" ] && case " ${tests[*]} " in *" $f "*) ;; *) tests+=("$f");; esac
  done
fi
[ "${#tests[@]}" -gt 0 ] || die "no hammer/stress test files found"
LOG="$VENV/tsan.log"
: > "$LOG"
status=0
log "pytest under TSan: ${tests[*]}"
(cd "$VENV/run" && "$VENV/bin/python" -P -m pytest -p no:cacheprovider "${plugin[@]}" -s -q "${tests[@]}" "$@") 2>&1 | tee -a "$LOG" || status=1
stress_s=${SNAKEPIT_TSAN_STRESS_S:-20}
if [ "$stress_s" != 0 ] && [ -f tests/stress_runner.py ]; then
  log "stress runner under TSan: seed 1, ${stress_s}s"
  (cd "$VENV/run" && "$VENV/bin/python" -P tests/stress_runner.py --seed 1 --duration "$stress_s") 2>&1 | tee -a "$LOG" || status=1
fi

# --- 4. verdict -------------------------------------------------------------------------------
for report in "$REPORTS"/report.*; do
  [ -f "$report" ] || continue
  { printf '\ntsan: reports of process %s:\n' "${report##*.}"; cat "$report"; } >> "$LOG"
  if awk '/_native\./ || /[ \/]src\/[A-Za-z0-9_]+\.[ch]:/ { found = 1 } END { exit !found }' "$report"; then
    cat "$report" >&2
  fi
done
# One report = the lines from "WARNING: ThreadSanitizer:" to its "SUMMARY:" line. It is
# ours when any frame or location in it is in the extension or its sources.
read -r n_all n_ours < <(awk '
  /WARNING: ThreadSanitizer:/ { inrep = 1; ours = 0; n++ }
  inrep && (/_native\./ || /[ \/]src\/[A-Za-z0-9_]+\.[ch]:/) { ours = 1 }
  inrep && /SUMMARY: ThreadSanitizer:/ { inrep = 0; if (ours) k++ }
  END { print n + 0, k + 0 }' "$LOG")
if [ "$n_ours" -gt 0 ]; then
  log "FAIL: $n_ours ThreadSanitizer report(s) involve project code (of $n_all); see above and $LOG"
  status=1
elif [ "$n_all" -gt 0 ]; then
  log "note: $n_all ThreadSanitizer report(s) inside CPython only (not ours); add each to $SUPP with a comment why:"
  grep 'SUMMARY: ThreadSanitizer:' "$LOG" | sort | uniq -c >&2
fi
if [ "$status" = 0 ]; then log "OK: tests pass and no ThreadSanitizer report in project code"; fi
exit "$status"

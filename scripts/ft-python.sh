#!/usr/bin/env bash
# Print the path of a free-threaded CPython 3.13 ("python3.13t"), building one if needed.
#
# Order of preference:
#   1. $PYTHON, if set (must be a free-threaded 3.13+ interpreter);
#   2. python3.13t on PATH (deadsnakes, python.org, uv, conda-forge ...);
#   3. a previous build in the cache folder;
#   4. build CPython 3.13.5 with --disable-gil from Debian's python3.13 source package
#      (suite trixie; the upstream tarball, unchanged) into the cache folder, once per machine.
# The mirror is read from this machine's own apt configuration.
set -euo pipefail

CPY_VERSION=3.13.5
CACHE_ROOT=${SNAKEPIT_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/snakepit-bridge}
PREFIX="$CACHE_ROOT/cpython-$CPY_VERSION-ft"
log() { printf 'ft-python: %s\n' "$*" >&2; }
die() { printf 'ft-python: error: %s\n' "$*" >&2; exit 1; }

is_free_threaded() {
  "$1" -c 'import sys, sysconfig; sys.exit(0 if sys.version_info >= (3, 13) and sysconfig.get_config_var("Py_GIL_DISABLED") else 1)' 2>/dev/null
}

if [ -n "${PYTHON:-}" ]; then
  is_free_threaded "$PYTHON" || die "\$PYTHON=$PYTHON is not a free-threaded CPython 3.13+"
  command -v "$PYTHON"; exit 0
fi
if found=$(command -v python3.13t 2>/dev/null) && is_free_threaded "$found"; then
  echo "$found"; exit 0
fi
if [ -x "$PREFIX/bin/python3.13t" ] && is_free_threaded "$PREFIX/bin/python3.13t"; then
  echo "$PREFIX/bin/python3.13t"; exit 0
fi

# --- build route -------------------------------------------------------------------------
command -v apt-get >/dev/null || die "no python3.13t found and no apt-get to fetch CPython's source; install a free-threaded CPython 3.13 (e.g. 'uv python install 3.13t') or set PYTHON"
command -v cc >/dev/null || command -v gcc >/dev/null || die "no C compiler; install gcc or set PYTHON to a python3.13t"

log "building free-threaded CPython $CPY_VERSION into $PREFIX (once per machine, a few minutes)"
# The upstream tarball, from Debian's python3.13 source package (shared with scripts/tsan.sh).
tarball=$(CPY_VERSION="$CPY_VERSION" "$(dirname "$0")/cpython-source.sh") \
  || die "no CPython $CPY_VERSION source; set PYTHON to a python3.13t"
WORK="$CACHE_ROOT/build"
mkdir -p "$WORK/src"
cd "$WORK/src"
rm -rf "Python-$CPY_VERSION"
tar -xf "$tarball"
[ -d "Python-$CPY_VERSION" ] || die "$tarball did not unpack to Python-$CPY_VERSION"
cd "Python-$CPY_VERSION"
{
  ./configure --prefix="$PREFIX" --disable-gil --with-ensurepip=install ${SNAKEPIT_CONFIGURE_EXTRA:-} \
  && make -j"$(nproc)" \
  && make install
} > "$WORK/build.log" 2>&1 || die "CPython build failed; see $WORK/build.log"
is_free_threaded "$PREFIX/bin/python3.13t" || die "built interpreter at $PREFIX is not free-threaded"
log "done: $PREFIX/bin/python3.13t"
echo "$PREFIX/bin/python3.13t"

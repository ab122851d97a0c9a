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

debian_mirror() {
  # First Debian archive URI from the deb822 .sources files or the one-line .list files.
  local f uri
  for f in /etc/apt/sources.list.d/*.sources; do
    [ -f "$f" ] || continue
    uri=$(awk '/^URIs:/ { for (i = 2; i <= NF; i++) if ($i ~ /\/debian\/?$/) { print $i; exit } }' "$f")
    [ -n "$uri" ] && { echo "${uri%/}"; return; }
  done
  for f in /etc/apt/sources.list /etc/apt/sources.list.d/*.list; do
    [ -f "$f" ] || continue
    uri=$(awk '$1 == "deb" { for (i = 2; i <= NF; i++) if ($i ~ /^[a-z]+:\/\// && $i ~ /\/debian\/?$/) { print $i; exit } }' "$f")
    [ -n "$uri" ] && { echo "${uri%/}"; return; }
  done
}
MIRROR=$(debian_mirror)
[ -n "$MIRROR" ] || die "could not read a Debian mirror from /etc/apt; set PYTHON to a python3.13t"

WORK="$CACHE_ROOT/build"
APT="$WORK/apt"
mkdir -p "$APT/lists/partial" "$APT/archives/partial" "$APT/parts" "$WORK/src"
keyring=/usr/share/keyrings/debian-archive-keyring.gpg
signed=""; [ -f "$keyring" ] && signed="signed-by=$keyring"
echo "deb-src [$signed] $MIRROR trixie main" > "$APT/sources.list"
APT_OPTS=(-o "Dir::Etc::SourceList=$APT/sources.list" -o "Dir::Etc::SourceParts=$APT/parts"
          -o "Dir::State::Lists=$APT/lists" -o "Dir::Cache=$APT" -o "APT::Sandbox::User=root")

log "building free-threaded CPython $CPY_VERSION into $PREFIX (once per machine, a few minutes)"
cd "$WORK/src"
if ! ls python3.13_"$CPY_VERSION".orig.tar.[gx]z >/dev/null 2>&1; then
  apt-get "${APT_OPTS[@]}" -qq update >&2 || die "apt-get update of the private trixie source list failed"
  # Ask for the version whose upstream tarball is $CPY_VERSION.
  ver=$(apt-cache "${APT_OPTS[@]}" showsrc python3.13 | awk '/^Version:/ {print $2}' | grep "^$CPY_VERSION-" | head -n1)
  [ -n "$ver" ] || die "trixie has no python3.13 $CPY_VERSION source package"
  apt-get "${APT_OPTS[@]}" -qq source --download-only "python3.13=$ver" >&2 || die "download of python3.13=$ver failed"
fi
tarball=$(ls python3.13_"$CPY_VERSION".orig.tar.xz python3.13_"$CPY_VERSION".orig.tar.gz 2>/dev/null | head -n1 || true)
[ -n "$tarball" ] || die "no python3.13_$CPY_VERSION.orig tarball in $WORK/src"
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

#!/usr/bin/env bash
# Print the path of the CPython 3.13.5 source tarball, downloading it once per machine.
#
# The tarball is the upstream one, shipped unchanged as the .orig tarball of Debian's
# python3.13 source package (suite trixie). It lives in the same cache folder that
# scripts/ft-python.sh uses, so a machine that has already built the free-threaded
# interpreter reuses it and downloads nothing. The mirror is read from this machine's
# own apt configuration (no host name is written here).
set -euo pipefail

CPY_VERSION=${CPY_VERSION:-3.13.5}
CACHE_ROOT=${SNAKEPIT_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/snakepit-bridge}
WORK="$CACHE_ROOT/build"
log() { printf 'cpython-source: %s\n' "$*" >&2; }
die() { printf 'cpython-source: error: %s\n' "$*" >&2; exit 1; }

find_tarball() {
  ls "$WORK/src/python3.13_$CPY_VERSION.orig.tar.xz" "$WORK/src/python3.13_$CPY_VERSION.orig.tar.gz" 2>/dev/null | head -n1 || true
}

tarball=$(find_tarball)
if [ -n "$tarball" ]; then
  echo "$tarball"; exit 0
fi

command -v apt-get >/dev/null || die "no cached CPython $CPY_VERSION source and no apt-get to fetch it"

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
[ -n "$MIRROR" ] || die "could not read a Debian mirror from /etc/apt"

APT="$WORK/apt"
mkdir -p "$APT/lists/partial" "$APT/archives/partial" "$APT/parts" "$WORK/src"
keyring=/usr/share/keyrings/debian-archive-keyring.gpg
signed=""; [ -f "$keyring" ] && signed="signed-by=$keyring"
echo "deb-src [$signed] $MIRROR trixie main" > "$APT/sources.list"
APT_OPTS=(-o "Dir::Etc::SourceList=$APT/sources.list" -o "Dir::Etc::SourceParts=$APT/parts"
          -o "Dir::State::Lists=$APT/lists" -o "Dir::Cache=$APT" -o "APT::Sandbox::User=root")

log "downloading the CPython $CPY_VERSION source package (once per machine)"
cd "$WORK/src"
apt-get "${APT_OPTS[@]}" -qq update >&2 || die "apt-get update of the private trixie source list failed"
ver=$(apt-cache "${APT_OPTS[@]}" showsrc python3.13 | awk '/^Version:/ {print $2}' | grep "^$CPY_VERSION-" | head -n1)
[ -n "$ver" ] || die "trixie has no python3.13 $CPY_VERSION source package"
apt-get "${APT_OPTS[@]}" -qq source --download-only "python3.13=$ver" >&2 || die "download of python3.13=$ver failed"
tarball=$(find_tarball)
[ -n "$tarball" ] || die "no python3.13_$CPY_VERSION.orig tarball in $WORK/src"
echo "$tarball"

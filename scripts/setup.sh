#!/usr/bin/env bash
# Set up the development environments; re-running is fast and changes nothing when up to date.
#
#   .venv      free-threaded CPython 3.13t (found or built by scripts/ft-python.sh)
#   .venv-gil  the machine's ordinary (GIL) CPython >= 3.11, so both ABIs are tested
#
# Each venv gets the package installed editable with its test dependencies and the worker
# server's (the `server` extra), and the C extension rebuilt in place (warnings are errors)
# whenever a file under src/ changed. The GIL venv also gets grpcio (the tests' gRPC client)
# and grpcio-tools (`make proto`), which have no free-threaded wheels (`grpc-tools` extra), and
# the linters `make lint` runs (`lint` extra: ruff, mypy and its stubs, clang-format).
set -euo pipefail
cd "$(dirname "$0")/.."
log() { printf 'setup: %s\n' "$*" >&2; }
die() { printf 'setup: error: %s\n' "$*" >&2; exit 1; }

gil_python() {
  local c
  for c in "${GIL_PYTHON:-}" python3 python3.13 python3.12 python3.11; do
    [ -n "$c" ] || continue
    command -v "$c" >/dev/null 2>&1 || continue
    if "$c" -c 'import sys, sysconfig; sys.exit(0 if sys.version_info >= (3, 11) and not sysconfig.get_config_var("Py_GIL_DISABLED") else 1)' 2>/dev/null; then
      command -v "$c"; return 0
    fi
  done
  return 1
}

# stamp = what the venv was installed from; a change re-installs.
stamp_of() { cat pyproject.toml setup.py | cksum | cut -d' ' -f1; }

# On free-threaded 3.13, multidict (grpclib keeps every request's metadata in one) is built from
# its source so that it has its C extension: the 6.x series is the last that builds it for 3.13t
# (7.x needs 3.14 for that) and no cp313t wheel of it is available to us, so pip would otherwise
# pick the pure-Python wheel, which costs the server's event loop about 0.2 ms per request and
# was seen stalling it (docs/server.md, "Performance on 3.13t").
FT_MULTIDICT='multidict>=6.1,<7'

ensure_venv() {  # $1 venv dir, $2 base interpreter, $3 extras to install, $4 extra pip args
  local venv=$1 base=$2 extras=$3 more=${4:-} want
  want="$(stamp_of) $extras $more $("$base" -c 'import sys; print(sys.executable, sys.version.split()[0])')"
  if [ ! -x "$venv/bin/python" ] || [ "$(cat "$venv/.snakepit-stamp" 2>/dev/null)" != "$want" ]; then
    log "creating $venv from $base"
    rm -rf "$venv"
    "$base" -m venv "$venv"
    "$venv/bin/python" -m pip install -q --upgrade pip setuptools wheel
    # NumPy only from wheels: the newest releases with cp313t wheels are 2.1 to 2.4.
    SNAKEPIT_WERROR=1 SNAKEPIT_DEBUG_INFO=1 "$venv/bin/python" -m pip install -q --only-binary numpy -e ".[$extras]"
    if [ -n "$more" ]; then
      # shellcheck disable=SC2086 # $more is a list of pip arguments
      "$venv/bin/python" -m pip install -q $more
    fi
    echo "$want" > "$venv/.snakepit-stamp"
  fi
  build_native "$venv"
}

build_native() {  # rebuild the extension in place when a C file is newer than it
  local venv=$1 so
  so=$("$venv/bin/python" - <<'PY'
import sysconfig
print("snakepit_bridge/_native" + sysconfig.get_config_var("EXT_SUFFIX"))
PY
)
  if [ ! -f "$so" ] || [ -n "$(find src setup.py -newer "$so" -print -quit)" ]; then
    log "building $so"
    SNAKEPIT_WERROR=1 SNAKEPIT_DEBUG_INFO=1 "$venv/bin/python" setup.py -q build_ext --inplace >/dev/null
  fi
}

FT=$(scripts/ft-python.sh) || die "no free-threaded CPython 3.13 available"
ensure_venv .venv "$FT" test,server "--no-binary multidict $FT_MULTIDICT"
"$FT" -c 'import sys; sys.exit(0)'
if GIL=$(gil_python); then
  ensure_venv .venv-gil "$GIL" test,server,grpc-tools,lint,release
else
  die "no GIL build of CPython >= 3.11 found (set GIL_PYTHON)"
fi
log "ready: .venv ($("$FT" -c 'import sys; print(sys.version.split()[0])')t) and .venv-gil ($("$GIL" -c 'import sys; print(sys.version.split()[0])'))"

#!/usr/bin/env bash
# Valgrind memcheck of the native core over a single-threaded subset of the suite: every
# allocation of the C code checked, beside tests/test_leaks.py's memory-growth checks.
#
# Fails (non-zero) on any invalid read, write or free, and on definite leaks, uninitialised
# values and other memcheck errors whose stack goes through snakepit_bridge._native.
#
# The interpreter is the GIL venv (.venv-gil): memcheck needs PYTHONMALLOC=malloc so that
# every object is its own malloc block, and the free-threaded 3.13 build refuses it
# ("PYTHONMALLOC: unknown allocator"; it always uses mimalloc). The extension's memory
# management (allocation, refcounts, traverse/clear/dealloc) is the same code on both builds.
#
# Usage: scripts/valgrind.sh [pytest arguments ...]
#   PYTHON                   interpreter with the package importable (default .venv-gil/bin/python)
#   SNAKEPIT_LEAK_ITERATIONS iterations per primitive in tests/test_leaks.py (default 300 here)
set -euo pipefail
cd "$(dirname "$0")/.."
log() { printf 'valgrind: %s\n' "$*" >&2; }
die() { printf 'valgrind: error: %s\n' "$*" >&2; exit 1; }

PY=${PYTHON:-.venv-gil/bin/python}
[ -x "$PY" ] || die "$PY not found; run 'make setup' first (or set PYTHON)"
if "$PY" -c 'import sys, sysconfig; sys.exit(0 if sysconfig.get_config_var("Py_GIL_DISABLED") else 1)'; then
  die "$PY is a free-threaded build, which does not support PYTHONMALLOC=malloc; use a GIL build"
fi
if ! command -v valgrind >/dev/null; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    log "installing valgrind"
    { apt-get -qq update && DEBIAN_FRONTEND=noninteractive apt-get -qq install -y valgrind; } >&2 \
      || die "could not install valgrind"
  else
    die "valgrind is not installed"
  fi
fi

OUT=${SNAKEPIT_VALGRIND_DIR:-build/valgrind}
mkdir -p "$OUT"
rm -f "$OUT"/memcheck.*.xml
# glibc's vectorised string routines read whole 16/32-byte words past the end of a block
# (never past a page; a known memcheck false positive for routines it does not replace).
cat > "$OUT/glibc.supp" <<'SUPP'
{
   glibc-vectorised-string-overread-32
   Memcheck:Addr32
   fun:__*_avx2*
}
{
   glibc-vectorised-string-overread-16
   Memcheck:Addr16
   fun:__*_avx2*
}
{
   glibc-vectorised-string-overread-32-evex
   Memcheck:Addr32
   fun:__*_evex*
}
SUPP
# One file per process (%p): a child forked by the tests (subprocess, platform probes) would
# otherwise write into the parent's XML.
XML="$OUT/memcheck.%p.xml"
# The single-threaded subset: every primitive's leak loop (scaled down) and the fault tests
# that need no subprocess. Tests that start threads to probe the lock still run (memcheck
# serialises threads), but no hammer or stress test is included.
if [ "$#" -eq 0 ]; then
  set -- tests/test_leaks.py tests/test_faults.py \
    -k "memory_flat or any_depth or midway or base_exceptions or inside_tracked or generator or cycle_back or thread_ends"
fi
export SNAKEPIT_LEAK_ITERATIONS=${SNAKEPIT_LEAK_ITERATIONS:-300}
export SNAKEPIT_LEAK_TRACEMALLOC=0  # tracemalloc's own traceback records show up as leaks
log "memcheck on $("$PY" -c 'import sys; print(sys.version.split()[0])'): pytest $*"
status=0
PYTHONMALLOC=malloc valgrind --tool=memcheck --leak-check=full --show-leak-kinds=definite \
  --errors-for-leak-kinds=definite --num-callers=50 --track-origins=no \
  --suppressions="$OUT/glibc.supp" \
  --xml=yes --xml-file="$XML" \
  "$PY" -X faulthandler -m pytest -p no:cacheprovider -q "$@" || status=$?
[ "$status" = 0 ] || log "pytest under memcheck exited with $status"

# Verdict from the XML: one <error> per finding, with a <kind> and a <stack> of <frame>s.
# Each <error> element is parsed on its own, so a child's file cut short by exec() is fine.
"$PY" - "$OUT" <<'PY' || status=1
import glob
import os
import re
import sys
import xml.etree.ElementTree as ET

errors = []
files = glob.glob(os.path.join(sys.argv[1], "memcheck.*.xml"))
if not files:
    sys.exit("valgrind: error: memcheck wrote no XML")
for path in files:
    with open(path, encoding="utf-8", errors="replace") as f:
        text = f.read()
    for chunk in re.findall(r"<error>.*?</error>", text, flags=re.S):
        errors.append(ET.fromstring(chunk))
ours_lib = "_native."
bad = []
other = {}
for err in errors:
    kind = err.findtext("kind") or "?"
    frames = []
    for stack in err.findall("stack"):
        for f in stack.findall("frame"):
            frames.append((f.findtext("fn") or "??", f.findtext("obj") or "", f.findtext("file") or "", f.findtext("line") or ""))
    ours = any(ours_lib in obj.rsplit("/", 1)[-1] for _, obj, _, _ in frames)
    if kind.startswith("Leak_") and any(file == "_tracemalloc.c" for _, _, file, _ in frames):
        ours = False  # tracemalloc's bookkeeping, allocated while tracing one of our objects
    invalid = kind.startswith("Invalid") or kind in ("Overlap", "FishyValue", "MismatchedFree")
    if invalid or ours:
        what = err.find("xwhat")
        text = what.findtext("text") if what is not None else err.findtext("what")
        lines = [f"{kind}: {text}"]
        for fn, obj, file, line in frames[:25]:
            where = f"{file}:{line}" if file else obj.rsplit("/", 1)[-1]
            lines.append(f"    {fn} ({where})")
        bad.append("\n".join(lines))
    else:
        other[kind] = other.get(kind, 0) + 1
if other:
    print("valgrind: not ours (CPython-internal, ignored): "
          + ", ".join(f"{n} {k}" for k, n in sorted(other.items())), file=sys.stderr)
if bad:
    print(f"valgrind: FAIL: {len(bad)} memcheck error(s) in or caused around project code:", file=sys.stderr)
    for b in bad:
        print(b, file=sys.stderr)
    sys.exit(1)
print("valgrind: no invalid access and no definite leak or memcheck error in project code", file=sys.stderr)
PY
exit "$status"

"""``snakepit-bridge-python``: the interpreter to give Snakepit so it runs *this* worker server.

Snakepit always starts a thread-profile worker as ``<python_executable> <its priv/python>/
grpc_server_threaded.py ARGS``, with its own ``priv/python`` first on ``PYTHONPATH``. That
directory holds upstream's ``snakepit_bridge`` package, which would shadow this one. Pointing
Snakepit's ``python_executable`` at this launcher fixes both:

* ``snakepit-bridge-python path/to/grpc_server*.py ARGS`` replaces itself (``os.execv``, same
  pid, so Snakepit's process-group and signal handling are unaffected) with this interpreter
  in isolated mode (``-I``: neither the working directory nor ``PYTHONPATH`` is put on
  ``sys.path``, and no ``PYTHON*`` variable is read), pins ``snakepit_bridge`` to the package
  installed next to this module, appends the ``PYTHONPATH`` entries at the *end* of ``sys.path``
  (so the adapter's own modules still import, but nothing there can shadow this package or its
  dependencies) and runs ``snakepit_bridge.server`` with ARGS. The script path stays on the
  command line, so Snakepit's orphan cleanup, which matches ``grpc_server_threaded.py`` and
  ``--snakepit-run-id``, still finds the process;
* any other call (Snakepit's interpreter probes such as ``-c ...`` or ``--version``) is passed to
  the interpreter unchanged.

This is a top-level module on purpose: the shadowing ``snakepit_bridge`` in ``priv/python`` is
imported before site-packages, so the launcher must not live inside a package of that name. It
uses the standard library only.
"""

from __future__ import annotations

import fnmatch
import os
import sys
from collections.abc import Sequence

__all__ = ["BOOTSTRAP", "command_for", "main"]

SERVER_SCRIPTS = "grpc_server*.py"

# Run by the isolated interpreter as `python -I -c BOOTSTRAP PACKAGE_ROOT SCRIPT ARGS...`.
BOOTSTRAP = """\
import importlib.util, os, runpy, sys
root, script, args = sys.argv[1], sys.argv[2], sys.argv[3:]
init = os.path.join(root, "snakepit_bridge", "__init__.py")
spec = importlib.util.spec_from_file_location(
    "snakepit_bridge", init, submodule_search_locations=[os.path.dirname(init)])
package = importlib.util.module_from_spec(spec)
sys.modules["snakepit_bridge"] = package
spec.loader.exec_module(package)
for entry in os.environ.get("PYTHONPATH", "").split(os.pathsep):
    if entry and entry not in sys.path:
        sys.path.append(entry)
sys.argv = [script, *args]
runpy.run_module("snakepit_bridge.server", run_name="__main__", alter_sys=True)
"""


def _is_server_script(argument: str) -> bool:
    return fnmatch.fnmatch(os.path.basename(argument), SERVER_SCRIPTS)


def package_root() -> str:
    """The directory holding the ``snakepit_bridge`` package this launcher belongs to."""
    return os.path.dirname(os.path.abspath(__file__))


def command_for(argv: Sequence[str], executable: str | None = None) -> list[str]:
    """The command line the launcher executes for its arguments ``argv`` (without argv[0])."""
    python = executable or sys.executable
    if argv and _is_server_script(argv[0]):
        return [python, "-I", "-c", BOOTSTRAP, package_root(), *argv]
    return [python, *argv]


def main(argv: Sequence[str] | None = None) -> int:
    command = command_for(sys.argv[1:] if argv is None else argv)
    sys.stdout.flush()
    sys.stderr.flush()
    os.execv(command[0], command)
    return 127  # not reached: execv replaces the process or raises


if __name__ == "__main__":
    sys.exit(main())

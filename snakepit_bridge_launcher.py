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
import importlib.util
import os
import runpy
import sys
from collections.abc import Sequence

__all__ = ["BOOT_FLAG", "command_for", "main", "package_root"]

SERVER_SCRIPTS = "grpc_server*.py"
# First argument of the isolated second stage (never a Python option or a script name).
BOOT_FLAG = "--snakepit-bridge-isolated"


def _is_server_script(argument: str) -> bool:
    return fnmatch.fnmatch(os.path.basename(argument), SERVER_SCRIPTS)


def package_root() -> str:
    """The directory holding the ``snakepit_bridge`` package this launcher belongs to."""
    return os.path.dirname(os.path.abspath(__file__))


def command_for(argv: Sequence[str], executable: str | None = None) -> list[str]:
    """The command line the launcher executes for its arguments ``argv`` (without argv[0]).

    For a server script: ``python -I <this file> --snakepit-bridge-isolated ROOT SCRIPT ARGS``
    (``-I`` puts neither this file's directory nor the working directory on ``sys.path``).
    """
    python = executable or sys.executable
    if argv and _is_server_script(argv[0]):
        return [python, "-I", os.path.abspath(__file__), BOOT_FLAG, package_root(), *argv]
    return [python, *argv]


def _serve_isolated(root: str, script: str, args: Sequence[str]) -> None:
    """The second stage, in the isolated interpreter: pin our package, append PYTHONPATH, run."""
    init = os.path.join(root, "snakepit_bridge", "__init__.py")
    spec = importlib.util.spec_from_file_location(
        "snakepit_bridge", init, submodule_search_locations=[os.path.dirname(init)]
    )
    if spec is None or spec.loader is None:
        raise SystemExit(f"snakepit-bridge-python: no snakepit_bridge package in {root}")
    package = importlib.util.module_from_spec(spec)
    sys.modules["snakepit_bridge"] = package
    spec.loader.exec_module(package)
    for entry in os.environ.get("PYTHONPATH", "").split(os.pathsep):
        if entry and entry not in sys.path:
            sys.path.append(entry)  # after site-packages: importable, never shadowing
    sys.argv = [script, *args]
    runpy.run_module("snakepit_bridge.server", run_name="__main__", alter_sys=True)


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if args[:1] == [BOOT_FLAG] and len(args) >= 3:
        _serve_isolated(args[1], args[2], args[3:])
        return 0
    command = command_for(args)
    sys.stdout.flush()
    sys.stderr.flush()
    os.execv(command[0], command)
    return 127  # not reached: execv replaces the process or raises


if __name__ == "__main__":
    sys.exit(main())

"""``python -m snakepit_bridge.server [options]``: run the worker server (see docs/server.md)."""

from __future__ import annotations

import sys
from collections.abc import Sequence

# The server's own dependencies, installed by the `server` extra.
_EXTRA_MODULES = ("grpclib", "google", "h2", "hpack", "hyperframe", "multidict")


def run(argv: Sequence[str] | None = None, prog: str = "python -m snakepit_bridge.server") -> int:
    """Import the server and run it; a clear one-line error when the extra is not installed."""
    try:
        from snakepit_bridge.server.runtime import main
    except ImportError as exc:
        top = (exc.name or "").partition(".")[0]
        if top not in _EXTRA_MODULES:
            raise
        print(
            f"{prog}: error: the server needs the 'server' extra ({exc.name} is not installed): "
            "pip install 'snakepit-bridge[server]'",
            file=sys.stderr,
        )
        return 2
    return main(argv, prog)


if __name__ == "__main__":
    sys.exit(run())

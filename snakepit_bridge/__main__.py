"""``python -m snakepit_bridge``: the same command as the ``snakepit-bridge`` console script."""

import sys

from snakepit_bridge.cli import main

if __name__ == "__main__":
    sys.exit(main())

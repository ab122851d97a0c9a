"""``python -m benchmarks [--quick] [--json] [--markdown] [--cases NAME ...]``."""

import sys

from benchmarks.runner import main

sys.exit(main())

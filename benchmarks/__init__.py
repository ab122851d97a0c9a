"""Benchmarks of snakepit-bridge's native core against the pure-Python way and the stdlib.

Run ``python -m benchmarks`` (``--quick`` for a smoke run, ``--json`` for machine-readable
output, ``--cases NAME ...`` to pick cases or groups). The runner measures each
implementation and each group of cases in a fresh subprocess of the same interpreter, so
every ratio comes from one run on one machine. See docs/performance.md.
"""

"""The runtime thread-safety checker, one module per concern.

Users import :mod:`snakepit_bridge.thread_safety_checker`, the façade that re-exports the public
names; the modules here are its parts:

* :mod:`.hooks` - installs the native observers while a checker is enabled, dispatches events;
* :mod:`.lockset` - :class:`ThreadSafetyChecker`: the Eraser state machine per attribute and
  the concurrency bookkeeping per method and thread;
* :mod:`.locks` - which lock guards a write (``__guarded_by__``, held user locks);
* :mod:`.pitfalls` - the static scan, :func:`check_common_pitfalls`;
* :mod:`.libraries` - the thread-unsafe library table;
* :mod:`.report` - the report dict, its recommendations, :func:`print_thread_safety_report`;
* :mod:`.global_checker` - the process-wide checker, ``enable_checking`` and the decorators;
* :mod:`.runs` - a checker for one hammer run or one test;
* :mod:`.errors` - ``ThreadSafetyWarning`` and ``ThreadSafetyError``.

Whether a class declares itself thread-safe is decided by :mod:`snakepit_bridge.declaration`.
"""

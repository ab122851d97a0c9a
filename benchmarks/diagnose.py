"""Where the native hot paths spend their time: ``python -m benchmarks.diagnose [ROUNDS]``.

Not part of the benchmark run. It splits the single-thread figures of docs/performance.md into
the interpreter's share (looking the method up on the instance, calling it) and the native
code's share, by timing the same operations with parts removed: an adapter instance with no
``__dict__``, the method descriptor called directly (no lookup), ``dict.get`` the same ways.
Same timing method as the benchmarks (unrolled loops, loop overhead subtracted, thread CPU
time, interleaved rounds; best and median).
"""

from __future__ import annotations

import statistics
import sys
from typing import Any

from benchmarks import cases as C
from benchmarks.standalone import environment
from benchmarks.timing import LoopCase, compile_loop, measure_interleaved

STATEMENTS: tuple[tuple[str, str], ...] = (
    ("loop", "pass"),
    ("a.bare(x)", "a.bare(x)"),
    ("p.bare(x): adapter instance without a __dict__", "p.bare(x)"),
    ("bare(a, x): the function, no method lookup", "bare(a, x)"),
    ("a.tracked(x)", "a.tracked(x)"),
    ("tracked(a, x): the decorator object, no method lookup", "tracked(a, x)"),
    ("a.get_thread_local(k)", "a.get_thread_local(k)"),
    ("p.get_thread_local(k): instance without a __dict__", "p.get_thread_local(k)"),
    ("gtl(a, k): the method descriptor, no method lookup", "gtl(a, k)"),
    ("d.get(k)", "d.get(k)"),
    ("o.get(k): dict subclass instance with a __dict__", "o.get(k)"),
    ("dget(d, k): dict.get, no method lookup", "dget(d, k)"),
    ("getattr(tl, k, None): threading.local", "getattr(tl, k, None)"),
    ("with a.acquire_lock(): pass", "with a.acquire_lock():\n    pass"),
    ("a.acquire_lock(): the call alone", "a.acquire_lock()"),
    ("with guard: pass (guard = a.acquire_lock(), reused)", "with guard:\n    pass"),
    ("with a.lock: pass (the native RLock itself)", "with lk:\n    pass"),
    ("a.get_stats()", "a.get_stats()"),
    ("a.tracker.get_stats(): the tracker's part", "tr.get_stats()"),
)


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    rounds = int(args[0]) if args else 9
    base, decorator, quiet, _info = C.load_impl("native")
    bench_cls = C.make_bench_class(base, decorator, quiet)
    plain_cls = C.make_bench_class(base, decorator, quiet)
    a = bench_cls()  # its __init__ sets an attribute: the instance has a __dict__
    a.set_thread_local("hit", 1)
    a.tracked(1)
    p = plain_cls.__new__(plain_cls)  # native parts exist from allocation; without __init__
    p.set_thread_local("hit", 1)  # no attribute is set, so no instance __dict__ is created
    env: dict[str, Any] = C.single_env(bench_cls)
    env.update(
        a=a,
        p=p,
        gtl=base.get_thread_local,
        dget=dict.get,
        bare=bench_cls.bare,
        tracked=bench_cls.tracked,
        guard=a.acquire_lock(),
        lk=a.lock,
        tr=a.tracker,
    )
    names = list(env)
    values = tuple(env.values())
    loops = [
        LoopCase(label, compile_loop(stmt, names, label=label), values)
        for label, stmt in STATEMENTS
    ]
    measure_interleaved(loops, rounds=rounds, target_ns=30e6, fixed_n=None)
    loop_best = min(loops[0].samples)
    loop_median = statistics.median(loops[0].samples)
    print(
        f"{sys.version.split()[0]} {'GIL' if environment.gil_enabled() else 'free-threaded'}"
        f", ns per statement (thread CPU time, loop subtracted), {rounds} rounds"
    )
    width = max(len(label) for label, _ in STATEMENTS)
    print(f"{'statement':{width}s}  {'best':>8s}  {'median':>8s}")
    for lc in loops[1:]:
        best = min(lc.samples) - loop_best
        median = statistics.median(lc.samples) - loop_median
        print(f"{lc.name:{width}s}  {best:8.1f}  {median:8.1f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

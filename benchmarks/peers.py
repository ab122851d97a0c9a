"""The native peers: other C libraries for free-threaded Python that do part of what ours does.

* ``ft_utils`` (Meta): ``AtomicInt64``, ``ConcurrentDict``, ``LocalWrapper``, ``RWLock``;
* ``cereggii``: ``AtomicInt64``, ``AtomicDict`` and ``ThreadHandle`` (a per-thread handle that
  spares a shared object's reference count);
* ``fastrlock``: a reentrant lock written in Cython.

Peers are optional (``pip install -e '.[bench]'``, or ``make bench``, which installs them). Each
is first imported in a throw-away process of the same interpreter: a peer that is missing or
fails to import is reported by name with the reason, and so is one whose import would turn the
GIL back on in a free-threaded process (fastrlock declares that it needs the GIL: its fast path
relies on it). Only the peers that pass are imported into the measuring process, so no peer can
change the conditions the others are measured under.

The cases are grouped by what they do (counting requests, reentrant locking, per-thread state,
shared-cache reads, statistics); ``COMPARISONS`` says which of our cases is judged against which
peer case and whether the two have the same shape (see docs/performance.md).
"""

from __future__ import annotations

import json
import random
import statistics
import subprocess
import sys
import threading
from dataclasses import dataclass
from typing import Any

# --- the peers ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Peer:
    name: str  # the distribution name, as pip knows it
    modules: tuple[str, ...]  # what the cases import


PEERS: tuple[Peer, ...] = (
    Peer("ft_utils", ("ft_utils.concurrency", "ft_utils.local", "ft_utils.synchronization")),
    Peer("cereggii", ("cereggii",)),
    Peer("fastrlock", ("fastrlock.rlock",)),
)
PEER_NAMES: tuple[str, ...] = tuple(p.name for p in PEERS)

# Run by ``probe``: import the peer's modules in a fresh process and say what happened.
_PROBE = """
import importlib, importlib.metadata, json, sys
gil = getattr(sys, "_is_gil_enabled", lambda: True)
before = gil()
out = {"available": True}
try:
    for name in sys.argv[2:]:
        importlib.import_module(name)
except BaseException as exc:
    out = {"available": False, "reason": f"cannot be imported: {type(exc).__name__}: {exc}"}
else:
    try:
        out["version"] = importlib.metadata.version(sys.argv[1])
    except importlib.metadata.PackageNotFoundError:
        out["version"] = None
    if not before and gil():
        out = {
            "available": False,
            "version": out["version"],
            "enables_gil": True,
            "reason": "importing it enables the GIL on this free-threaded build (its module "
            "declares that it needs the GIL), which would change what every case measures",
        }
print(json.dumps(out))
"""


def probe(peer: Peer, timeout: float = 120.0) -> dict[str, Any]:
    """Whether ``peer`` can be measured here: importable, and leaving the GIL as it is."""
    try:
        proc = subprocess.run(
            [sys.executable, "-c", _PROBE, peer.name, *peer.modules],
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
        lines = proc.stdout.strip().splitlines()
        if proc.returncode != 0 or not lines:
            return {
                "available": False,
                "reason": f"the import check exited with status {proc.returncode}: "
                + (proc.stderr.strip().splitlines() or ["no output"])[-1],
            }
        result: dict[str, Any] = json.loads(lines[-1])
        return result
    except (OSError, subprocess.TimeoutExpired, ValueError) as exc:
        return {"available": False, "reason": f"the import check failed: {exc}"}


def probe_all() -> dict[str, dict[str, Any]]:
    return {peer.name: probe(peer) for peer in PEERS}


# --- the cases ------------------------------------------------------------------------------

SECTIONS: tuple[tuple[str, str], ...] = (
    ("counting", "Counting requests exactly"),
    ("locking", "Reentrant locking"),
    ("per_thread", "Per-thread state"),
    ("cache", "Shared-cache reads"),
    ("stats", "Statistics"),
)

# Who a case belongs to: ours, the standard library, pure Python, or a peer's name.
OURS, STDLIB, PYTHON = "snakepit_bridge", "stdlib", "pure Python"


@dataclass(frozen=True)
class PeerCase:
    name: str
    section: str
    who: str  # OURS, STDLIB, PYTHON or a peer name
    stmt: str
    title: str
    scaling: bool = True  # also measured with 2 threads on the shared objects


# Statement names (every case's loop takes all of them as locals; see make_env):
#   a    the adapter (PeerAdapter), shared by the threads of a scaling run
#   x    a small int; k a key present in d, cd, ad and set on the calling thread in tl and a
#   g    the calling thread's bound method a.get_thread_local (made once per thread)
#   tl   a threading.local shared by the threads; lw a LocalWrapper(tl) made per thread
#   lk   a threading.Lock and box an object with an int attribute n, both shared
#   fc   a shared ft_utils AtomicInt64; cc a shared cereggii AtomicInt64, cch its per-thread
#        handle (cc.get_handle())
#   rl   a snakepit_bridge.RLock; trl a threading.RLock; frl a fastrlock FastRLock; rww a
#        RWWriteContext made per thread over one shared ft_utils RWLock
#   d    a dict; cd an ft_utils ConcurrentDict; ad a cereggii AtomicDict, adh its per-thread
#        handle; all hold the same 4 keys
#   s16  an adapter whose tracker has the shards of 16 live threads; b16 the pure-Python
#        baseline adapter those 16 threads used too (single-thread cases only)
NAMES: tuple[str, ...] = (
    "a",
    "x",
    "k",
    "g",
    "tl",
    "lw",
    "lk",
    "box",
    "fc",
    "cc",
    "cch",
    "rl",
    "trl",
    "frl",
    "rww",
    "d",
    "cd",
    "ad",
    "adh",
    "s16",
    "b16",
)

CASES: tuple[PeerCase, ...] = (
    # Counting: a method call that counts itself, then the increment alone.
    PeerCase(
        "count_tracked", "counting", OURS, "a.tracked(x)", "a.tracked(x): @thread_safe_method"
    ),
    PeerCase(
        "count_track_request",
        "counting",
        OURS,
        "with a.track_request():\n    pass",
        "with a.track_request(): pass",
    ),
    PeerCase(
        "count_step_lock",
        "counting",
        STDLIB,
        "a.counted_lock(x)",
        "a.counted_lock(x): method, with threading.Lock: self.count += 1",
    ),
    PeerCase(
        "count_step_ft_utils",
        "counting",
        "ft_utils",
        "a.counted_ft(x)",
        "a.counted_ft(x): method, self.ft_count.incr() (ft_utils AtomicInt64)",
    ),
    PeerCase(
        "count_step_cereggii",
        "counting",
        "cereggii",
        "a.counted_cg(x)",
        "a.counted_cg(x): method, self.cg_count.increment_and_get() (cereggii AtomicInt64)",
    ),
    PeerCase(
        "count_inc_lock",
        "counting",
        STDLIB,
        "with lk:\n    box.n += 1",
        "increment alone: with lk: box.n += 1 (threading.Lock)",
    ),
    PeerCase(
        "count_inc_ft_utils",
        "counting",
        "ft_utils",
        "fc.incr()",
        "increment alone: fc.incr() (ft_utils AtomicInt64)",
    ),
    PeerCase(
        "count_inc_cereggii",
        "counting",
        "cereggii",
        "cc.increment_and_get()",
        "increment alone: cc.increment_and_get() (cereggii AtomicInt64)",
    ),
    PeerCase(
        "count_inc_cereggii_handle",
        "counting",
        "cereggii",
        "cch.increment_and_get()",
        "increment alone through a per-thread cereggii ThreadHandle",
    ),
    # Reentrant locking: an empty critical section.
    PeerCase(
        "lock_acquire",
        "locking",
        OURS,
        "with a.acquire_lock():\n    pass",
        "with a.acquire_lock(): pass",
    ),
    PeerCase(
        "lock_rlock", "locking", OURS, "with rl:\n    pass", "with rl: pass, snakepit_bridge.RLock"
    ),
    PeerCase(
        "lock_threading_rlock",
        "locking",
        STDLIB,
        "with trl:\n    pass",
        "with trl: pass, threading.RLock",
    ),
    PeerCase(
        "lock_fastrlock",
        "locking",
        "fastrlock",
        "with frl:\n    pass",
        "with frl: pass, fastrlock.rlock.FastRLock",
    ),
    PeerCase(
        "lock_rw_write",
        "locking",
        "ft_utils",
        "with rww:\n    pass",
        "with rww: pass, ft_utils RWWriteContext(RWLock) (not reentrant)",
    ),
    # Per-thread state: read a value the calling thread stored.
    PeerCase("tl_get", "per_thread", OURS, "a.get_thread_local(k)", "a.get_thread_local(k)"),
    PeerCase(
        "tl_bound", "per_thread", OURS, "g(k)", "g(k), g = a.get_thread_local bound per thread"
    ),
    PeerCase(
        "tl_threading_local",
        "per_thread",
        STDLIB,
        "getattr(tl, k, None)",
        "getattr(tl, k, None), tl = threading.local()",
    ),
    PeerCase(
        "tl_local_wrapper",
        "per_thread",
        "ft_utils",
        "getattr(lw, k, None)",
        "getattr(lw, k, None), lw = ft_utils LocalWrapper(tl) per thread",
    ),
    # Shared-cache reads: one read of a shared mapping.
    PeerCase(
        "cache_locked",
        "cache",
        OURS,
        "with a.acquire_lock():\n    d.get(k)",
        "with a.acquire_lock(): d.get(k)",
    ),
    PeerCase(
        "cache_dict", "cache", STDLIB, "d.get(k)", "d.get(k), a plain dict read without a lock"
    ),
    PeerCase(
        "cache_ft_utils", "cache", "ft_utils", "cd.get(k)", "cd.get(k), ft_utils ConcurrentDict"
    ),
    PeerCase("cache_cereggii", "cache", "cereggii", "ad.get(k)", "ad.get(k), cereggii AtomicDict"),
    PeerCase(
        "cache_cereggii_handle",
        "cache",
        "cereggii",
        "adh.get(k)",
        "adh.get(k), through a per-thread cereggii ThreadHandle",
    ),
    # Statistics with 16 threads' shards.
    PeerCase(
        "stats_native_16",
        "stats",
        OURS,
        "s16.get_stats()",
        "get_stats(), tracker used by 16 live threads",
        scaling=False,
    ),
    PeerCase(
        "stats_python_16",
        "stats",
        PYTHON,
        "b16.get_stats()",
        "get_stats(), pure-Python tracker used by the same 16 threads",
        scaling=False,
    ),
)
CASE_BY_NAME: dict[str, PeerCase] = {c.name: c for c in CASES}

# The 2-thread ceiling on the shared adapter (docs/performance.md, "Scaling"): every method
# call on a shared object writes its reference count, so nothing called as a method on it
# scales past this. Measured in every repetition next to the cases.
CEILING = PeerCase("bare_call", "ceiling", PYTHON, "a.bare(x)", "a.bare(x): ceiling")
STATS_THREADS = 16


@dataclass(frozen=True)
class Comparison:
    """One of our cases against a peer's case: a target when ``target`` is set, else a reference.

    ``kind`` is ``single`` (ratio of ns per operation, ours / peer; lower is better) or
    ``scaling`` (ratio of 2-thread speedups, ours / peer from paired runs; higher is better).
    ``shape`` says what differs between the two, whatever the verdict.
    """

    id: str
    kind: str
    ours: str
    peers: tuple[str, ...]  # judged against the best of these that was measured
    op: str
    limit: float
    target: bool
    shape: str


COMPARISONS: tuple[Comparison, ...] = (
    Comparison(
        "peers_count_step",
        "single",
        "count_tracked",
        ("count_step_ft_utils", "count_step_cereggii"),
        "<=",
        1.0,
        True,
        "same shape: a method call counted per call; ours also records start and end, the "
        "duration, the calling thread's count and the error flag, the peer one increment",
    ),
    Comparison(
        "peers_count_track_request",
        "single",
        "count_track_request",
        ("count_inc_ft_utils", "count_inc_cereggii", "count_inc_cereggii_handle"),
        "<=",
        1.0,
        False,
        "not the same shape: a request object entered and exited (start, end, duration, "
        "per-thread count, error flag) against one atomic increment",
    ),
    Comparison(
        "peers_lock_acquire",
        "single",
        "lock_acquire",
        ("lock_fastrlock",),
        "<=",
        1.0,
        True,
        "same shape: a reentrant lock around an empty block",
    ),
    Comparison(
        "peers_lock_rlock",
        "single",
        "lock_rlock",
        ("lock_fastrlock",),
        "<=",
        1.0,
        True,
        "same shape: a reentrant lock around an empty block",
    ),
    Comparison(
        "peers_lock_rwlock",
        "single",
        "lock_acquire",
        ("lock_rw_write",),
        "<=",
        1.0,
        False,
        "not the same shape: ft_utils' RWLock writer side is not reentrant (entering it again "
        "on the same thread deadlocks)",
    ),
    Comparison(
        "peers_tl",
        "single",
        "tl_get",
        ("tl_local_wrapper",),
        "<=",
        1.0,
        True,
        "same shape: a value of the calling thread, per object",
    ),
    Comparison(
        "peers_cache",
        "single",
        "cache_locked",
        ("cache_ft_utils", "cache_cereggii", "cache_cereggii_handle"),
        "<=",
        1.0,
        False,
        "not the same shape: our lock makes a whole block atomic (read, compute, write); a "
        "concurrent dict makes each single operation atomic, without a lock",
    ),
    Comparison(
        "peers_stats_16",
        "single",
        "stats_python_16",
        ("stats_native_16",),
        ">=",
        2.0,
        True,
        "pure-Python tracker / ours (here the ratio is python / native): get_stats() with 16 "
        "threads' counts; ours reports 11 tracker keys, the pure-Python tracker 4",
    ),
    Comparison(
        "peers_scaling_count_step_ft_utils",
        "scaling",
        "count_tracked",
        ("count_step_ft_utils",),
        ">=",
        1.5,
        True,
        "2 threads, one shared adapter: our per-thread shards against one shared ft_utils "
        "AtomicInt64, each counted from a method",
    ),
    Comparison(
        "peers_scaling_count_step_cereggii",
        "scaling",
        "count_tracked",
        ("count_step_cereggii",),
        ">=",
        1.5,
        True,
        "2 threads, one shared adapter: our per-thread shards against one shared cereggii "
        "AtomicInt64, each counted from a method",
    ),
    Comparison(
        "peers_scaling_count_inc_ft_utils",
        "scaling",
        "count_track_request",
        ("count_inc_ft_utils",),
        ">=",
        1.5,
        True,
        "2 threads: with a.track_request() on one shared adapter against the increment alone "
        "on one shared ft_utils AtomicInt64",
    ),
    Comparison(
        "peers_scaling_count_inc_cereggii",
        "scaling",
        "count_track_request",
        ("count_inc_cereggii",),
        ">=",
        1.5,
        True,
        "2 threads: with a.track_request() on one shared adapter against the increment alone "
        "on one shared cereggii AtomicInt64",
    ),
    Comparison(
        "peers_scaling_count_inc_cereggii_handle",
        "scaling",
        "count_track_request",
        ("count_inc_cereggii_handle",),
        ">=",
        1.5,
        False,
        "2 threads: against cereggii's own remedy for a shared object, a per-thread handle "
        "to the shared counter (the increment itself still hits one cache line)",
    ),
    Comparison(
        "peers_scaling_tl",
        "scaling",
        "tl_get",
        ("tl_local_wrapper",),
        ">=",
        1.0,
        False,
        "2 threads: a.get_thread_local(k) on a shared adapter against getattr on a per-thread "
        "LocalWrapper of a shared threading.local",
    ),
    Comparison(
        "peers_scaling_tl_bound",
        "scaling",
        "tl_bound",
        ("tl_local_wrapper",),
        ">=",
        1.0,
        False,
        "2 threads, both per-thread handles: a bound method made per thread against a "
        "per-thread LocalWrapper",
    ),
    Comparison(
        "peers_scaling_cache",
        "scaling",
        "cache_locked",
        ("cache_ft_utils", "cache_cereggii"),
        ">=",
        1.0,
        False,
        "2 threads reading one shared mapping: under our lock (the readers exclude each other) "
        "against lock-free reads",
    ),
)


# --- the adapter and the objects ------------------------------------------------------------

# Compiled at module level of a fresh namespace, as BENCH_ADAPTER_SOURCE in cases.py, so its
# methods get the interpreter's treatment of module-level functions on 3.13t.
PEER_ADAPTER_SOURCE = """
class PeerAdapter(ThreadSafeAdapter):
    def __init__(self, ft_count, cg_count):
        super().__init__()
        self.count = 0
        self.count_lock = threading.Lock()
        self.ft_count = ft_count
        self.cg_count = cg_count

    def bare(self, x):
        return x

    @thread_safe_method
    def tracked(self, x):
        return x

    def counted_lock(self, x):
        with self.count_lock:
            self.count += 1
        return x

    def counted_ft(self, x):
        self.ft_count.incr()
        return x

    def counted_cg(self, x):
        self.cg_count.increment_and_get()
        return x
"""

CACHE = {"hit": 1, "b": 2, "c": 3, "d": 4}


class _Box:
    __slots__ = ("n",)

    def __init__(self) -> None:
        self.n = 0


def import_peers(available: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """Import the peers that passed the probe: ``{peer name: {attribute: object}}``."""
    loaded: dict[str, Any] = {}
    if available.get("ft_utils", {}).get("available"):
        from ft_utils.concurrency import AtomicInt64, ConcurrentDict
        from ft_utils.local import LocalWrapper
        from ft_utils.synchronization import RWLock, RWWriteContext

        loaded["ft_utils"] = {
            "AtomicInt64": AtomicInt64,
            "ConcurrentDict": ConcurrentDict,
            "LocalWrapper": LocalWrapper,
            "RWLock": RWLock,
            "RWWriteContext": RWWriteContext,
        }
    if available.get("cereggii", {}).get("available"):
        import cereggii

        loaded["cereggii"] = {
            "AtomicInt64": cereggii.AtomicInt64,
            "AtomicDict": cereggii.AtomicDict,
        }
    if available.get("fastrlock", {}).get("available"):
        from fastrlock.rlock import FastRLock

        loaded["fastrlock"] = {"FastRLock": FastRLock}
    return loaded


def case_available(case: PeerCase, loaded: dict[str, Any]) -> bool:
    return case.who in (OURS, STDLIB, PYTHON) or case.who in loaded


class Env:
    """The shared objects of every case, and the per-thread ones made for a calling thread."""

    def __init__(self, loaded: dict[str, Any]) -> None:
        from benchmarks import cases as C
        from snakepit_bridge import RLock
        from snakepit_bridge.base_adapter_threaded import ThreadSafeAdapter, thread_safe_method

        self.loaded = loaded
        ft, cg = loaded.get("ft_utils"), loaded.get("cereggii")
        namespace: dict[str, Any] = {
            "__name__": "benchmarks.peer_adapter",
            "ThreadSafeAdapter": ThreadSafeAdapter,
            "thread_safe_method": thread_safe_method,
            "threading": threading,
        }
        exec(compile(PEER_ADAPTER_SOURCE, "<benchmarks PeerAdapter>", "exec"), namespace)
        self.adapter_cls = namespace["PeerAdapter"]
        self.fc = ft["AtomicInt64"](0) if ft else None
        self.cc = cg["AtomicInt64"](0) if cg else None
        self.a = self.adapter_cls(self.fc, self.cc)
        self.tl = threading.local()
        self.lk = threading.Lock()
        self.box = _Box()
        self.rl = RLock()
        self.trl = threading.RLock()
        self.frl = loaded["fastrlock"]["FastRLock"]() if "fastrlock" in loaded else None
        self.rw = ft["RWLock"]() if ft else None
        self.d = dict(CACHE)
        self.cd = ft["ConcurrentDict"]() if ft else None
        if self.cd is not None:
            for key, value in CACHE.items():
                self.cd[key] = value
        self.ad = cg["AtomicDict"](dict(CACHE)) if cg else None
        # Statistics: two adapters of the same class body, ours and the pure-Python baseline,
        # used by 16 threads that stay alive while the cases run (start_stats_threads).
        base, decorator, quiet, _info = C.load_impl("baseline")
        self.b16 = C.make_bench_class(base, decorator, quiet)()
        nat_base, nat_dec, nat_quiet, _info = C.load_impl("native")
        self.s16 = C.make_bench_class(nat_base, nat_dec, nat_quiet)()
        self._stats_stop = threading.Event()
        self._stats_threads: list[threading.Thread] = []

    def values(self) -> tuple[Any, ...]:
        """The statement values for the calling thread (per-thread objects made for it)."""
        ft = self.loaded.get("ft_utils")
        self.a.set_thread_local("hit", 1)
        self.tl.hit = 1
        per_thread = {
            "a": self.a,
            "x": 1,
            "k": "hit",
            "g": self.a.get_thread_local,
            "tl": self.tl,
            "lw": ft["LocalWrapper"](self.tl) if ft else None,
            "lk": self.lk,
            "box": self.box,
            "fc": self.fc,
            "cc": self.cc,
            "cch": self.cc.get_handle() if self.cc is not None else None,
            "rl": self.rl,
            "trl": self.trl,
            "frl": self.frl,
            "rww": ft["RWWriteContext"](self.rw) if ft else None,
            "d": self.d,
            "cd": self.cd,
            "ad": self.ad,
            "adh": self.ad.get_handle() if self.ad is not None else None,
            "s16": self.s16,
            "b16": self.b16,
        }
        return tuple(per_thread[name] for name in NAMES)

    def start_stats_threads(self) -> None:
        """16 threads each make one tracked call on both stats adapters, then stay alive."""
        ready = threading.Barrier(STATS_THREADS + 1)

        def work() -> None:
            self.s16.tracked(0)
            self.b16.tracked(0)
            ready.wait()
            self._stats_stop.wait()

        for i in range(STATS_THREADS):
            t = threading.Thread(target=work, name=f"stats-{i}", daemon=True)
            t.start()
            self._stats_threads.append(t)
        ready.wait(timeout=60)

    def stop_stats_threads(self) -> None:
        self._stats_stop.set()
        for t in self._stats_threads:
            t.join(timeout=60)

    def stats_threads_seen(self) -> dict[str, int]:
        native = self.s16.get_stats()["tracker"]
        python = self.b16.get_stats()["tracker"]
        return {"native": native["threads_seen"], "python": python["threads_seen"]}


# --- the measurement ------------------------------------------------------------------------


def _quartiles(values: list[float]) -> list[float]:
    if len(values) < 2:
        return [values[0], values[0]]
    q = statistics.quantiles(values, n=4, method="inclusive")
    return [q[0], q[2]]


def run(impl: str, s: dict[str, Any], selected: set[str] | None) -> dict[str, Any]:
    """Single-thread cost of every case, then 2-thread scaling of those that have it.

    Single-thread: the harness of the ``single`` group (unrolled loops, loop overhead
    subtracted, thread CPU time, interleaved rounds). Scaling: the harness of the ``scaling``
    group (serial run, then 2 threads at once on the same shared objects; speedup = serial
    time x 2 / parallel time); in every repetition each case runs once, in a fresh seeded
    order, with the bare-call ceiling, so each comparison is a median of ratios of speedups
    measured seconds apart (paired runs).
    """
    from benchmarks.standalone import environment
    from benchmarks.timing import (
        UNROLL,
        LoopCase,
        calibrate,
        compile_loop,
        measure_interleaved,
        run_in_threads,
    )
    from benchmarks.worker import cpu_speedup, raw_single, speedup, summarize_single

    if impl != "native":
        raise ValueError("the peers group measures the native package only")
    availability = probe_all()
    loaded = import_peers(availability)
    for name, peer in availability.items():
        if peer.get("available") and name not in loaded:  # pragma: no cover - defensive
            peer.update(available=False, reason="passed the import check but was not loaded")
    if environment.free_threaded_build() and environment.gil_enabled():
        raise RuntimeError("the GIL is enabled after importing the peers; nothing is comparable")
    env = Env(loaded)
    cases = [
        c for c in CASES if case_available(c, loaded) and (selected is None or c.name in selected)
    ]

    # Single thread.
    env.start_stats_threads()
    try:
        values = env.values()
        loops = [
            LoopCase("floor:loop", compile_loop("pass", NAMES, label="loop"), values),
            LoopCase("floor:bare_call", compile_loop(CEILING.stmt, NAMES, label="bare"), values),
        ]
        stmts = {"floor:loop": "pass", "floor:bare_call": CEILING.stmt}
        for case in cases:
            loops.append(
                LoopCase(case.name, compile_loop(case.stmt, NAMES, label=case.name), values)
            )
            stmts[case.name] = case.stmt
        measure_interleaved(
            loops, rounds=s["peer_rounds"], target_ns=s["round_ns"], fixed_n=s["fixed_n"]
        )
        threads_seen = env.stats_threads_seen()
    finally:
        env.stop_stats_threads()
    raw = raw_single(loops, stmts)
    single = summarize_single(raw)
    for name, entry in single["cases"].items():
        case = CASE_BY_NAME[name]
        entry.update(section=case.section, who=case.who, title=case.title)

    # Two threads on the shared objects, paired with the ceiling in every repetition.
    plan: dict[str, tuple[Any, int]] = {}
    for case in [CEILING, *(c for c in cases if c.scaling)]:
        fn = compile_loop(case.stmt, NAMES, label=case.name)
        if s["scaling_fixed_n"] is not None:
            n = s["scaling_fixed_n"]
        else:
            n = calibrate(fn, env.values(), s["peer_scaling_thread_ns"])
        plan[case.name] = (fn, n)

    def make_args(_i: int) -> tuple[Any, ...]:
        return env.values()

    speedups: dict[str, list[float]] = {name: [] for name in plan}
    cpu_speedups: dict[str, list[float]] = {name: [] for name in plan}
    parallelism: dict[str, list[float]] = {name: [] for name in plan}
    serial_ns: dict[str, list[float]] = {name: [] for name in plan}
    order = list(plan)
    rng = random.Random(0)
    for _ in range(s["peer_scaling_reps"]):
        rng.shuffle(order)
        for name in order:
            fn, n = plan[name]
            one = run_in_threads(fn, make_args, 1, n)
            two = run_in_threads(fn, make_args, 2, n)
            speedups[name].append(speedup(one, two, 2))
            cpu = cpu_speedup(one, two, 2)
            if cpu is not None:
                cpu_speedups[name].append(cpu)
            parallelism[name].append(two.parallelism)
            serial_ns[name].append(one.wall_ns / (n * UNROLL))

    scaling: dict[str, Any] = {}
    for name, (_fn, n) in plan.items():
        sp = speedups[name]
        vs_ceiling = [x / c for x, c in zip(sp, speedups[CEILING.name], strict=True)]
        scaling[name] = {
            "stmt": (CASE_BY_NAME.get(name) or CEILING).stmt,
            "ops_per_thread": n * UNROLL,
            "reps": len(sp),
            "speedup_median": statistics.median(sp),
            "speedups": [round(x, 4) for x in sp],
            "cpu_speedup_median": statistics.median(cpu_speedups[name])
            if cpu_speedups[name]
            else None,
            "parallelism_median": statistics.median(parallelism[name]),
            "serial_ns_per_op": statistics.median(serial_ns[name]),
            "vs_ceiling_median": statistics.median(vs_ceiling),
            "vs_ceiling_quartiles": _quartiles(vs_ceiling),
        }

    # Paired ratios of every scaling comparison: ours / peer, repetition by repetition.
    paired: dict[str, Any] = {}
    for comp in COMPARISONS:
        if comp.kind != "scaling" or comp.ours not in speedups:
            continue
        for peer_case in comp.peers:
            if peer_case not in speedups:
                continue
            ratios = [o / p for o, p in zip(speedups[comp.ours], speedups[peer_case], strict=True)]
            paired[f"{comp.ours}/{peer_case}"] = {
                "median": statistics.median(ratios),
                "quartiles": _quartiles(ratios),
                "ratios": [round(x, 4) for x in ratios],
            }

    info = {
        name: {k: v for k, v in peer.items() if k in ("available", "version", "reason")}
        for name, peer in availability.items()
    }
    return {
        "peers": info,
        "cases": single["cases"],
        "floors": single["floors"],
        "raw": raw,
        "scaling": scaling,
        "paired": paired,
        "stats_threads": STATS_THREADS,
        "stats_threads_seen": threads_seen,
    }

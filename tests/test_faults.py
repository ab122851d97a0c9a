"""Fault tests for the native core: exceptions, signals, fork, dying threads, bad input.

* an exception at any depth inside ``with acquire_lock()`` leaves the lock free / the level right;
* SIGINT while the main thread waits in ``acquire_lock(timeout=...)`` (in a subprocess);
* blocking waits let signal handlers and the garbage collector run (in a subprocess);
* ``os.fork()`` while another thread holds the adapter lock (in a subprocess; the child
  reports through its exit code);
* a thread dying in the middle of a tracked call;
* adapters created and destroyed by many threads while others use their thread-local values
  and ``gc.collect()`` runs; thread-local cycles back to the adapter are collected.

Hang-prone scenarios run in subprocesses with a generous timeout, so a deadlock fails the
test instead of hanging the suite. No test asserts on timings.
"""

from __future__ import annotations

import gc
import os
import random
import subprocess
import sys
import textwrap
import threading
import weakref

import pytest

from _threads import run_threads
from snakepit_bridge import RequestTracker, RLock, ThreadSafeAdapter, thread_safe_method
from snakepit_bridge._native import lock_owner

SUBPROCESS_TIMEOUT = 120  # seconds; only a hang reaches it


class Boom(Exception):
    pass


class FaultAdapter(ThreadSafeAdapter):
    @thread_safe_method
    def fail(self, exc=None):
        raise exc if exc is not None else Boom("tracked failure")

    @thread_safe_method
    def ok(self):
        return 1


def lock_is_free_for_others(adapter):
    """True when another thread can take the adapter lock right now."""
    box = []

    def probe():
        got = adapter.lock.acquire(blocking=False)
        box.append(got)
        if got:
            adapter.lock.release()

    t = threading.Thread(target=probe)
    t.start()
    t.join()
    return box[0]


def level(lock):
    return lock._recursion_count() if lock._is_owned() else 0


def run_script(code, *, expect_rc=0, env=None):
    """Run a Python snippet in a fresh interpreter (same build); return its stdout."""
    full_env = dict(os.environ)
    full_env.pop("PYTHONWARNINGS", None)
    if env:
        full_env.update(env)
    proc = subprocess.run(
        [
            sys.executable,
            "-X",
            "faulthandler",
            "-W",
            "ignore::DeprecationWarning",
            "-c",
            textwrap.dedent(code),
        ],
        capture_output=True,
        text=True,
        timeout=SUBPROCESS_TIMEOUT,
        env=full_env,
    )
    assert proc.returncode == expect_rc, (
        f"exit code {proc.returncode}, expected {expect_rc}\n"
        f"--- stdout\n{proc.stdout}\n--- stderr\n{proc.stderr}"
    )
    return proc.stdout


# --- exceptions at any depth -------------------------------------------------------------------


def _nest(adapter, depth, raise_at, timed, level_no=1):
    cm = adapter.acquire_lock(timeout=5.0) if timed else adapter.acquire_lock()
    with cm:
        assert level(adapter.lock) == level_no
        if level_no == raise_at:
            raise Boom(level_no)
        if level_no < depth:
            _nest(adapter, depth, raise_at, timed, level_no + 1)


@pytest.mark.parametrize("timed", [False, True], ids=["plain", "timeout"])
@pytest.mark.parametrize("depth", [1, 2, 3, 5])
def test_exception_at_any_depth_frees_lock(depth, timed):
    a = FaultAdapter()
    for raise_at in range(1, depth + 1):
        with pytest.raises(Boom):
            _nest(a, depth, raise_at, timed)
        assert not a.lock._is_owned()
        assert not a.lock.locked()
        assert lock_owner(a.lock) == 0
        assert lock_is_free_for_others(a)


@pytest.mark.parametrize("timed", [False, True], ids=["plain", "timeout"])
def test_exception_caught_midway_keeps_outer_levels(timed):
    a = FaultAdapter()

    def cm():
        return a.acquire_lock(timeout=5.0) if timed else a.acquire_lock()

    with cm():
        with cm():
            for raise_depth in (1, 2, 3):
                try:
                    if raise_depth == 1:
                        with cm():
                            raise Boom
                    elif raise_depth == 2:
                        with cm(), cm():
                            raise Boom
                    else:
                        with cm(), cm(), cm():
                            raise Boom
                except Boom:
                    pass
                assert level(a.lock) == 2, "an exception below level 2 changed the outer level"
            assert not lock_is_free_for_others(a)
        assert level(a.lock) == 1
    assert level(a.lock) == 0
    assert lock_is_free_for_others(a)


@pytest.mark.parametrize("exc_type", [KeyboardInterrupt, SystemExit, GeneratorExit, MemoryError])
def test_base_exceptions_release_too(exc_type):
    a = FaultAdapter()
    with pytest.raises(exc_type):
        with a.acquire_lock():
            with a.acquire_lock(timeout=1):
                raise exc_type()
    assert level(a.lock) == 0 and lock_is_free_for_others(a)


def test_exception_inside_tracked_call_inside_lock():
    a = FaultAdapter()
    for _ in range(3):
        with pytest.raises(Boom):
            with a.acquire_lock():
                a.fail()
    t = a.get_stats()["tracker"]
    assert (t["total_requests"], t["errors"], t["active_requests"]) == (3, 3, 0)
    assert lock_is_free_for_others(a)


def test_exception_in_generator_holding_lock_closed():
    """A generator suspended inside `with acquire_lock()` and closed/collected releases."""
    a = FaultAdapter()

    def gen():
        with a.acquire_lock():
            yield 1
            yield 2

    g = gen()
    next(g)
    assert level(a.lock) == 1
    g.close()  # GeneratorExit at the yield
    assert level(a.lock) == 0 and lock_is_free_for_others(a)

    g = gen()
    next(g)
    with pytest.raises(Boom):
        g.throw(Boom())
    assert level(a.lock) == 0 and lock_is_free_for_others(a)


# --- signals and blocking waits (subprocesses) ---------------------------------------------------

_HOLDER = """
import os, signal, sys, threading, time
from snakepit_bridge import ThreadSafeAdapter

class SigAdapter(ThreadSafeAdapter):
    pass

a = SigAdapter()
held = threading.Event()
release = threading.Event()

def holder():
    with a.acquire_lock():
        held.set()
        release.wait()

ht = threading.Thread(target=holder, daemon=True)
ht.start()
held.wait()
"""


@pytest.mark.parametrize(
    "how", ["acquire_lock_timeout", "acquire_lock", "lock_acquire_timeout", "condition_wait"]
)
def test_sigint_interrupts_blocked_acquire(how):
    """KeyboardInterrupt surfaces (well before the 60 s timeout would) and the lock is not
    left owned by the interrupted thread."""
    out = run_script(
        _HOLDER
        + textwrap.dedent(f"""
        how = {how!r}
        waiting = threading.Event()
        def killer():
            waiting.wait()
            time.sleep(0.3)  # let the main thread block
            os.kill(os.getpid(), signal.SIGINT)
        threading.Thread(target=killer, daemon=True).start()
        try:
            waiting.set()
            if how == "acquire_lock_timeout":
                with a.acquire_lock(timeout=60):
                    sys.exit(3)
            elif how == "acquire_lock":
                with a.acquire_lock():
                    sys.exit(3)
            elif how == "lock_acquire_timeout":
                if a.lock.acquire(timeout=60):
                    sys.exit(3)
                sys.exit(4)
            else:
                release.set()  # the holder leaves; we wait on a condition nobody notifies
                cond = threading.Condition(a.lock)
                with cond:
                    cond.wait(timeout=60)
                    sys.exit(5)
        except KeyboardInterrupt:
            print("KBI")
        except TimeoutError:
            sys.exit(4)
        if a.lock._is_owned():
            sys.exit(6)
        release.set()
        ht.join()
        if not a.lock.acquire(blocking=False):
            sys.exit(7)
        a.lock.release()
        with a.acquire_lock(timeout=5):
            pass
        print("OK")
    """)
    )
    assert out.split() == ["KBI", "OK"]


def test_signal_handler_runs_during_blocked_acquire_and_wait_continues():
    """A handler that returns normally runs while the main thread is blocked; the acquire
    then goes on waiting and succeeds once the holder releases."""
    out = run_script(
        _HOLDER
        + textwrap.dedent("""
        ran = []
        def handler(signum, frame):
            ran.append(signum)
            print("HANDLER", a.lock._is_owned(), flush=True)
            release.set()  # only now may the holder let go
        signal.signal(signal.SIGUSR1, handler)
        def killer():
            time.sleep(0.3)
            os.kill(os.getpid(), signal.SIGUSR1)
        threading.Thread(target=killer, daemon=True).start()
        with a.acquire_lock(timeout=60):
            print("ACQUIRED", a.lock._recursion_count())
        print("OK", ran == [signal.SIGUSR1], a.lock._is_owned())
    """)
    )
    assert out.split() == ["HANDLER", "False", "ACQUIRED", "1", "OK", "True", "False"]


@pytest.mark.parametrize("how", ["acquire_lock", "timeout", "condition"])
def test_gc_and_other_threads_run_while_a_thread_blocks(how):
    """gc.collect() (a stop-the-world on free-threaded builds) and other threads' work
    complete while one thread is blocked on the adapter lock held by another, or waits on
    a Condition over it (which must have released the lock at every level)."""
    out = run_script(
        _HOLDER
        + textwrap.dedent(f"""
        import gc
        how = {how!r}
        blocked_started = threading.Event()
        got = []
        cond = threading.Condition(a.lock)
        if how == "condition":
            release.set()
            ht.join()
        def blocked():
            if how == "acquire_lock":
                blocked_started.set()
                with a.acquire_lock():
                    got.append(a.lock._recursion_count())
            elif how == "timeout":
                blocked_started.set()
                with a.acquire_lock(timeout=60):
                    got.append(a.lock._recursion_count())
            else:
                with cond:
                    with a.acquire_lock():  # wait at level 2
                        blocked_started.set()
                        cond.wait(timeout=60)
                        got.append(a.lock._recursion_count())
        bt = threading.Thread(target=blocked)
        bt.start()
        blocked_started.wait()
        time.sleep(0.3)
        for _ in range(3):
            gc.collect()
        print("GC_DONE", flush=True)
        counter = []
        ws = [threading.Thread(target=lambda: counter.extend(range(1000))) for _ in range(4)]
        for w in ws: w.start()
        for w in ws: w.join()
        print("WORKERS", len(counter), flush=True)
        print("STILL_BLOCKED", bt.is_alive() and got == [], flush=True)
        if how == "condition":
            with cond:  # possible only because wait() released both levels
                cond.notify_all()
        else:
            release.set()
        bt.join()
        print("DONE", got)
    """)
    )
    want = "[2]" if how == "condition" else "[1]"
    assert out.split() == ["GC_DONE", "WORKERS", "4000", "STILL_BLOCKED", "True", "DONE", want]


# --- fork ------------------------------------------------------------------------------------


def test_fork_while_another_thread_holds_lock():
    """Child: the adapter lock is usable, the holder thread's thread-local values are gone
    (released), the tracker does not count the holder's in-flight request.

    Through os.fork(), CPython clears the thread states of the threads missing in the child
    before our after-fork hook runs, and that already drops the holder's shards: the
    thread-local and tracker checks here hold even if the hook's shard clean-up did nothing,
    and guard the whole path (defence in depth); only the lock checks depend on the hook.
    test_fork_hooks_called_directly_clean_up_the_child is the one that fails when any part of
    the hook regresses."""
    if not hasattr(os, "fork"):
        pytest.skip("no fork")
    out = run_script("""
        import gc, os, sys, threading, weakref
        from snakepit_bridge import ThreadSafeAdapter

        class Val:
            pass

        a = ThreadSafeAdapter()
        main_val = Val()
        a.set_thread_local("k", main_val)
        holder_val = Val()
        holder_ref = weakref.ref(holder_val)
        held = threading.Event(); release = threading.Event()

        def holder():
            a.set_thread_local("k", holder_val)
            with a.acquire_lock():
                with a.track_request():
                    held.set()
                    release.wait()

        t = threading.Thread(target=holder)
        t.start()
        held.wait()
        del holder_val
        before = a.get_stats()["tracker"]
        assert before["active_requests"] == 1, before

        pid = os.fork()
        if pid == 0:
            code = 0
            try:
                # 1. the lock is usable (not owned by the vanished holder)
                if not a.lock.acquire(timeout=10):
                    os._exit(10)
                if a.lock._recursion_count() != 1:
                    os._exit(11)
                a.lock.release()
                with a.acquire_lock(timeout=10):
                    with a.acquire_lock():
                        pass
                if a.lock.locked():
                    os._exit(12)
                # 2. thread-local values: ours kept, the holder's released
                if a.get_thread_local("k") is not main_val:
                    os._exit(13)
                gc.collect()
                if holder_ref() is not None:
                    os._exit(14)
                # 3. tracker: the holder's request is not running here
                st = a.get_stats()["tracker"]
                if st["active_requests"] != 0 or st["active_threads"] != 0:
                    print("child tracker", st, flush=True)
                    os._exit(15)
                with a.track_request():
                    if a.get_stats()["tracker"]["active_requests"] != 1:
                        os._exit(16)
                st2 = a.get_stats()["tracker"]
                if st2["active_requests"] != 0 or st2["total_requests"] != st["total_requests"] + 1:
                    print("child tracker after", st2, flush=True)
                    os._exit(17)
                # 4. threads work in the child
                box = []
                def lock_and_release():
                    box.append(a.lock.acquire(timeout=10) and (a.lock.release() or True))
                ct = threading.Thread(target=lock_and_release)
                ct.start(); ct.join()
                if box != [True]:
                    os._exit(18)
            except BaseException as exc:
                print("child error", repr(exc), flush=True)
                os._exit(19)
            os._exit(0)

        release.set()
        t.join()
        _, status = os.waitpid(pid, 0)
        print("CHILD", os.waitstatus_to_exitcode(status))
        st = a.get_stats()["tracker"]
        print("PARENT", st["active_requests"], st["total_requests"], a.lock.locked())
    """)
    assert out.split() == ["CHILD", "0", "PARENT", "0", "1", "False"]


def test_fork_hooks_called_directly_clean_up_the_child():
    """The native fork hooks on their own. The C library's fork() (through ctypes) skips
    CPython's after-fork clean-up, so in the child the holder thread's state, shards and locks
    are still there, exactly what our after-fork-child hook must deal with; the test then calls
    the hooks as os.fork() would (_before_fork, then _after_fork_child in the child and
    _after_fork_parent in the parent). The holder is parked in a read() system call when the
    fork happens, so it holds neither the GIL nor an attached thread state that the child
    could wait for."""
    if not hasattr(os, "fork") or not sys.platform.startswith("linux"):
        pytest.skip("needs fork() and /proc")
    pytest.importorskip("ctypes", reason="calls the C library's fork() through ctypes")
    out = run_script("""
        import ctypes, os, sys, threading, time
        from snakepit_bridge import RLock, ThreadSafeAdapter, _native

        libc = ctypes.CDLL(None, use_errno=True)
        a = ThreadSafeAdapter()
        a.set_thread_local("k", "main")
        standalone = RLock()
        mine = RLock()  # held by the forking thread: must stay held, at its level
        mine.acquire(); mine.acquire()
        held = threading.Event()
        r, w = os.pipe()

        def holder():
            a.set_thread_local("k", "holder")
            with standalone, a.acquire_lock(), a.track_request():
                held.set()
                os.read(r, 1)

        t = threading.Thread(target=holder)
        t.start()
        held.wait()
        deadline = time.monotonic() + 60
        while True:  # wait until the holder is inside read(r): syscall 0 (x86-64) or 63 (arm64)
            fields = open(f"/proc/self/task/{t.native_id}/syscall").read().split()
            if fields[0] in ("0", "63") and int(fields[1], 16) == r:
                break
            if time.monotonic() > deadline:
                sys.exit("the holder never blocked in read()")
            time.sleep(0.001)
        assert a.get_stats()["tracker"]["active_requests"] == 1
        sys.stdout.flush()

        def child():
            # Not yet cleaned up: what CPython's own clean-up would otherwise have hidden.
            if _native.lock_owner(a.lock) != t.ident or _native.lock_owner(standalone) != t.ident:
                return 10
            if _native._live_shards(a.tracker) != 2:
                return 11
            _native._after_fork_child()
            # 1. locks of the vanished thread are free and usable; the forker's are still its own
            if a.lock.locked() or standalone.locked():
                return 12
            if not (a.lock.acquire(timeout=10) and standalone.acquire(timeout=10)):
                return 13
            a.lock.release(); standalone.release()
            with a.acquire_lock(timeout=10):
                pass
            if _native.lock_owner(mine) != threading.get_ident() or mine._recursion_count() != 2:
                return 14
            mine.release(); mine.release()
            if mine.locked():
                return 15
            # 2. the vanished thread's shard is gone, ours (and our value) is kept
            if _native._live_shards(a.tracker) != 1 or a.get_thread_local("k") != "main":
                return 16
            # 3. its request is not running here; counting goes on
            st = a.get_stats()["tracker"]
            busy = st["active_requests"] or st["active_threads"] or a.tracker.active_requests()
            if busy:
                return 17
            with a.track_request():
                if a.get_stats()["tracker"]["active_requests"] != 1:
                    return 18
            if a.get_stats()["tracker"]["active_requests"] != 0:
                return 19
            return 0

        _native._before_fork()
        pid = libc.fork()
        if pid == 0:
            try:
                code = child()
            except BaseException as exc:
                os.write(2, f"child error {exc!r}\\n".encode())
                code = 30
            os._exit(code)
        _native._after_fork_parent()
        if pid < 0:
            sys.exit(f"fork failed: {ctypes.get_errno()}")
        os.write(w, b"x")
        t.join()
        _, status = os.waitpid(pid, 0)
        print("CHILD", os.waitstatus_to_exitcode(status))
        st = a.get_stats()["tracker"]
        print("PARENT", st["active_requests"], st["total_requests"], a.lock.locked(),
              mine._recursion_count())
    """)
    assert out.split() == ["CHILD", "0", "PARENT", "0", "1", "False", "2"]


def test_fork_inside_acquire_lock_child_exits_the_with():
    """The forking thread holds the lock: in the child it is still that thread's, and
    leaving the `with` releases it normally (no RuntimeError)."""
    if not hasattr(os, "fork"):
        pytest.skip("no fork")
    out = run_script("""
        import os, threading
        from snakepit_bridge import ThreadSafeAdapter
        a = ThreadSafeAdapter()
        other = threading.Thread(target=lambda: None); other.start(); other.join()
        with a.acquire_lock():
            with a.acquire_lock():
                pid = os.fork()
                if pid == 0:
                    try:
                        if a.lock._recursion_count() != 2:
                            os._exit(20)
                    except BaseException:
                        os._exit(21)
        if pid == 0:
            try:
                if a.lock.locked():
                    os._exit(22)
                with a.acquire_lock(timeout=5):
                    pass
            except BaseException as exc:
                print("child", repr(exc), flush=True)
                os._exit(23)
            os._exit(0)
        _, status = os.waitpid(pid, 0)
        print("CHILD", os.waitstatus_to_exitcode(status), a.lock.locked())
    """)
    assert out.split() == ["CHILD", "0", "False"]


# --- a thread dying mid tracked call -----------------------------------------------------------


def test_thread_dying_mid_tracked_call(monkeypatch):
    seen = []
    monkeypatch.setattr(threading, "excepthook", lambda args: seen.append(args.exc_type))
    a = FaultAdapter()
    n = 12

    def die(i):
        if i % 3 == 0:
            a.fail()  # escapes the thread's target
        elif i % 3 == 1:
            with a.track_request():
                with a.acquire_lock():
                    raise Boom("escaping from track_request + lock")
        else:
            a.fail(SystemExit(0))  # a thread's silent exit

    barrier = threading.Barrier(n)
    ts = [threading.Thread(target=lambda i=i: (barrier.wait(), die(i))) for i in range(n)]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    # threading.excepthook also sees SystemExit (the default hook ignores it silently)
    assert sorted(map(str, seen)) == sorted([str(Boom)] * 8 + [str(SystemExit)] * 4)
    t = a.get_stats()["tracker"]
    assert t["active_requests"] == 0
    assert t["active_threads"] == 0
    assert t["total_requests"] == n
    assert t["errors"] == n
    assert t["threads_seen"] == n
    assert lock_is_free_for_others(a)


def test_tracker_threads_ending_between_reads():
    """Shards of threads that ended are still counted exactly (no loss on thread exit)."""
    tr = RequestTracker()
    n, per = 32, 200

    def work(i):
        for k in range(per):
            tr.start_request()
            tr.end_request(error=(k % 10 == 0))

    # several waves, stats read concurrently with threads ending
    stop = threading.Event()
    reads = []

    def reader():
        while not stop.is_set():
            s = tr.get_stats()
            reads.append((s["total_requests"], s["active_requests"]))

    rt = threading.Thread(target=reader)
    rt.start()
    try:
        for _ in range(3):
            run_threads(work, n)
    finally:
        stop.set()
        rt.join()
    s = tr.get_stats()
    assert s["total_requests"] == 3 * n * per
    assert s["errors"] == 3 * n * per // 10
    assert s["active_requests"] == 0
    assert s["threads_seen"] == 3 * n
    totals = [r[0] for r in reads]
    assert totals == sorted(totals), "total_requests went backwards while threads ended"
    assert all(0 <= act <= n for _, act in reads)


# --- adapter churn, thread-locals and the GC -----------------------------------------------


def test_adapter_churn_with_thread_locals_and_gc():
    """Creators make and drop adapters (some with thread-local cycles back to the adapter);
    readers set/get/clear thread-local values on adapters they grab; a thread runs
    gc.collect() meanwhile. At the end every adapter and every value has been released.

    The collector is a party of the workers' barrier, so it starts collecting only once every
    worker thread has been started: a collector looping on gc.collect() while the test was
    still starting the workers stalled it, since on 3.13t each collection stops the world and
    a thread start needs the world running (starting twelve threads took seconds, or never
    finished, depending on the heap size and the machine's load). Creators and readers wait
    every tenth round for a collection that ends after they got there, so collections overlap
    the churn of both however the threads are scheduled, and the collector pauses briefly
    between collections so the workers always run."""

    class ChurnAdapter(ThreadSafeAdapter):
        pass

    class Val:
        __slots__ = ("__weakref__", "owner", "tag")

        def __init__(self, owner, tag):
            self.owner = owner
            self.tag = tag

    created = []  # counts via list.append (atomic)
    adapters_freed = []
    values_made = []
    values_freed = []
    pool = []  # shared adapters; list ops are thread-safe
    n_creators, n_readers, rounds = 6, 6, 300
    n_churners = n_creators + n_readers
    checkpoints = set(range(5, rounds, 10))  # rounds where a creator waits for a collection
    churn_done = threading.Event()
    churners_finished = []
    collections = []  # one entry per collection made while the churn ran
    collected = threading.Condition()
    keep = []  # weakrefs must outlive their referents

    def track_adapter(a):
        keep.append(weakref.ref(a, lambda _: adapters_freed.append(1)))
        created.append(1)

    def track_value(v):
        keep.append(weakref.ref(v, lambda _: values_freed.append(1)))
        values_made.append(1)

    def creator(i):
        rng = random.Random(i)
        for r in range(rounds):
            if r in checkpoints:
                wait_for_a_collection()
            a = ChurnAdapter()
            track_adapter(a)
            v = Val(a if rng.random() < 0.5 else None, (i, r))  # half are cycles
            track_value(v)
            a.set_thread_local("v", v)
            if a.get_thread_local("v") is not v:
                raise AssertionError("creator read back a different value")
            if rng.random() < 0.5:
                pool.append(a)
                if len(pool) > 16:
                    try:
                        pool.pop(0)
                    except IndexError:
                        pass
            del a, v

    def reader(i):
        rng = random.Random(1000 + i)
        for r in range(rounds * 2):
            if r // 2 in checkpoints and r % 2 == 0:
                wait_for_a_collection()
            try:
                a = pool[rng.randrange(len(pool))] if pool else None
            except IndexError:
                a = None
            if a is None:
                continue
            v = Val(a if rng.random() < 0.3 else None, ("r", i, r))
            track_value(v)
            a.set_thread_local(("r", i), v)
            got = a.get_thread_local(("r", i))
            if got is not v:
                raise AssertionError(f"reader {i} read {got!r}, wrote {v!r}")
            if a.get_thread_local("v", None) is not None:
                raise AssertionError("reader sees another thread's thread-local value")
            if rng.random() < 0.5:
                a.clear_thread_local(("r", i))
            elif rng.random() < 0.2:
                a.clear_thread_local()
            del a, v, got

    def churner(i):
        try:
            creator(i) if i < n_creators else reader(i - n_creators)
        finally:
            churners_finished.append(i)
            if len(churners_finished) == n_churners:
                churn_done.set()

    def wait_for_a_collection():
        with collected:
            seen = len(collections)
            if not collected.wait_for(lambda: len(collections) > seen, SUBPROCESS_TIMEOUT):
                raise AssertionError("no collection ran during the churn")

    def collector():
        while not churn_done.is_set():
            gc.collect()
            with collected:
                collections.append(1)
                collected.notify_all()
            churn_done.wait(0.001)  # let the world run between two stop-the-world collections

    run_threads(lambda i: churner(i) if i < n_churners else collector(), n_churners + 1)
    assert len(collections) >= len(checkpoints)
    pool.clear()
    for _ in range(3):
        gc.collect()
    assert len(created) == n_creators * rounds
    assert len(adapters_freed) == len(created), "adapters leaked"
    assert len(values_freed) == len(values_made), "thread-local values leaked"


@pytest.mark.skipif(sys.version_info < (3, 12), reason="dict watchers exist from 3.12")
def test_bypassing_writes_race_adapter_deaths_and_dicts_changing_hands():
    """While observed, threads write adapters' instance dicts directly (vars(adapter) kept past
    the adapter's death, dicts handed from one adapter to another and written by other threads)
    and with object.__setattr__, as adapters die and the collector runs; the observer takes a
    contended lock (on 3.13t the writing thread is then detached and others change the same
    dicts). Nothing breaks, every report names an adapter of the class and a name that was
    written, and nothing is left pending.

    An adapter's __dict__ is replaced only by the one thread that uses that adapter: replacing an
    object's __dict__ while other threads set its attributes crashes CPython 3.13t itself, with
    or without this library (the setter frees the old dict that a concurrent setattr still
    writes through a borrowed pointer; python/cpython gh-149816)."""
    from snakepit_bridge import _native

    class Churned(ThreadSafeAdapter):
        pass

    names = {"k", "s", "__dict__"}
    reports = []
    observer_lock = threading.Lock()

    def observer(adapter, name, owns, deferred):
        with observer_lock:
            reports.append((type(adapter), name, deferred is None))

    shared = [Churned() for _ in range(4)]
    kept_dicts = [vars(Churned())]  # dicts that outlive their adapters; list ops are thread-safe
    rounds = 400

    def worker(index):
        rng = random.Random(index)
        mine = Churned()  # this thread's own: only it replaces its __dict__
        for i in range(rounds):
            a = Churned()
            object.__setattr__(a, "k", [i])
            _native.report_pending_writes()  # while `a` lives: its report is delivered
            kept_dicts.append(vars(a))
            target = shared[rng.randrange(len(shared))]
            object.__setattr__(target, "s", [index, i])
            kept = kept_dicts[rng.randrange(len(kept_dicts))]
            choice = rng.random()
            if choice < 0.15:
                mine.__dict__ = dict(vars(mine))  # through __setattr__: "__dict__"
            elif choice < 0.3:
                mine.__dict__ = kept  # a dead adapter's dict, or one another thread's uses
            elif choice < 0.45:
                kept["k"] = [i]  # to a dead adapter's dict, or a live one's
            elif choice < 0.5:
                vars(target).clear()
            object.__setattr__(mine, "k", [index, i])
            if i % 50 == 0:
                gc.collect()
            del a
        _native.report_pending_writes()

    _native.set_write_observer(observer)
    try:
        run_threads(worker, 6)
        left = _native._pending_writes()[0]
    finally:
        _native.set_write_observer(None)
    assert left == 0
    assert reports and all(cls is Churned and name in names for cls, name, _ in reports)
    assert sum(1 for _, name, sync in reports if name == "k" and not sync) >= 6 * rounds


@pytest.mark.parametrize("where", ["same_thread", "live_thread", "dead_thread"])
def test_thread_local_cycle_back_to_adapter_is_collected(where):
    freed = []

    class Val:
        def __init__(self, adapter):
            self.adapter = adapter

    a = FaultAdapter()
    ra = weakref.ref(a, lambda _: freed.append("adapter"))
    done = threading.Event()
    go = threading.Event()
    refs = []

    def setter():
        # pyflakes takes the `del a` below for an unbinding of the closure's `a` (it is bound).
        adapter = a  # noqa: F821
        v = Val(adapter)
        refs.append(weakref.ref(v, lambda _: freed.append("value")))
        adapter.set_thread_local("cycle", v)
        adapter.set_thread_local(adapter, v)  # the adapter itself as a key too
        adapter.set_thread_local("dict", {"back": adapter, "self": v})

    if where == "same_thread":
        setter()
    else:

        def body():
            setter()
            done.set()
            if where == "live_thread":
                go.wait()  # stays alive while the adapter is dropped

        t = threading.Thread(target=body)
        t.start()
        done.wait()
        if where == "dead_thread":
            t.join()
    del a
    for _ in range(3):
        gc.collect()
    try:
        assert ra() is None, "adapter in a thread-local cycle was not collected"
        assert sorted(freed) == ["adapter", "value"]
    finally:
        if where == "live_thread":
            go.set()
            t.join()


def test_thread_local_value_released_when_thread_ends():
    """No cycle: a value is released when its thread ends (weakref callback)."""
    freed = []

    class Val:
        pass

    a = FaultAdapter()
    refs = []

    def body():
        v = Val()
        refs.append(weakref.ref(v, lambda _: freed.append(1)))
        a.set_thread_local("x", v)

    t = threading.Thread(target=body)
    t.start()
    t.join()
    # Thread teardown may finish a moment after join() returns on some builds; a GC pass
    # is harmless and no cycle is involved.
    gc.collect()
    assert freed == [1]
    assert a.get_thread_local("x") is None


def test_value_stored_by_a_destructor_during_thread_end_is_released():
    """Thread end releases the thread's values; a value's __del__ that stores another value
    on the same adapter must not leave that new value (or a thread record) behind."""
    proc = subprocess.run(
        [
            sys.executable,
            "-c",
            textwrap.dedent("""
        import gc, threading, weakref
        from snakepit_bridge import ThreadSafeAdapter
        a = ThreadSafeAdapter()
        made = []
        class V:
            def __init__(self, readd):
                self.readd = readd
                made.append(weakref.ref(self))
            def __del__(self):
                if self.readd:
                    a.set_thread_local("again", V(False))
        def body():
            a.set_thread_local("x", V(True))
        for _ in range(20):
            t = threading.Thread(target=body); t.start(); t.join()
        gc.collect()
        print("ALIVE", sum(r() is not None for r in made))
    """),
        ],
        capture_output=True,
        text=True,
        timeout=SUBPROCESS_TIMEOUT,
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.split() == ["ALIVE", "0"]
    assert "Exception ignored" not in proc.stderr, proc.stderr


def _churn_locks(rounds: int, keep_every: int) -> list:
    """Create and free native locks (RLocks and adapters' locks); return every keep_every-th."""
    kept = []
    for i in range(rounds):
        lock = RLock()
        with lock:
            pass
        adapter = ThreadSafeAdapter()
        with adapter.acquire_lock():
            pass
        if i % keep_every == 0:
            kept.append(lock)  # survivors between freed neighbours
        del lock, adapter
    return kept


def test_locks_created_and_freed_from_many_threads():
    """Every native lock sits in one registry list (the fork hook walks it). Locks created and
    freed from many threads at once splice neighbours in that list; a lock being freed that
    looked at its own link without the registry lock raced with a neighbour being removed
    (ThreadSanitizer reports it here, in the test process). The survivors still work."""
    kept = run_threads(lambda _: _churn_locks(2000, 97), 8)
    survivors = [lock for row in kept for lock in row]
    assert len(survivors) == 8 * len(range(0, 2000, 97))
    for lock in survivors:
        assert lock.acquire(timeout=5)
        lock.release()
        assert not lock.locked()


def test_lock_registry_is_whole_in_a_child_forked_after_churn():
    """After that churn, the fork hook walks every lock in a child, and each still works there."""
    if not hasattr(os, "fork"):
        pytest.skip("no fork")
    out = run_script(f"""
        import os, sys
        sys.path.insert(0, {os.path.dirname(os.path.abspath(__file__))!r})
        from _threads import run_threads
        from test_faults import _churn_locks

        kept = run_threads(lambda _: _churn_locks(2000, 97), 8)
        survivors = [lock for row in kept for lock in row]
        pid = os.fork()
        if pid == 0:
            ok = all(lock.acquire(timeout=5) for lock in survivors)
            for lock in survivors:
                lock.release()
            os._exit(0 if ok else 1)
        _, status = os.waitpid(pid, 0)
        print("CHILD", os.waitstatus_to_exitcode(status), len(survivors))
    """)
    assert out.split() == ["CHILD", "0", str(8 * len(range(0, 2000, 97)))]

"""Randomized stress of one shared ``ThreadSafeAdapter``.

N threads (16 by default) start together (``snakepit_bridge.concurrency.run_concurrently``:
a ``threading.Barrier``, worker exceptions re-raised, stacks of stuck threads) and, for a fixed
duration, each repeatedly picks a random step (its own ``random.Random`` seeded from the run's
seed and its index, so the *choices* are reproducible; the interleaving is not):

* unlocked work (including a racy read of the shared counter),
* a locked read-modify-write of an unlocked counter (``with adapter.acquire_lock():``),
* nested ``acquire_lock()`` 2-4 deep with the read-modify-write at the innermost level,
* ``lock.acquire(timeout=...)`` / ``blocking=False`` / ``acquire_lock(timeout=...)`` with
  ``release``, tolerating timeouts,
* thread-local ``set`` / ``get`` / ``clear(key)`` / ``clear()`` against a private mirror,
* tracked calls (decorated methods, nested decorated calls, ``track_request()``) that
  sometimes raise,
* ``get_stats()`` / ``get_stats_dict()`` reads,
* ``threading.Condition(adapter.lock)`` waits and notifies, at recursion depth 1 or 2.

Oracles (any violation fails the run):

* the counter, updated only under the lock, equals the number of locked updates;
* tracker ``total_requests`` equals the number of tracked calls, ``errors`` the number that
  raised, ``requests_by_thread`` each thread's own count; ``active_requests`` returns to 0;
* thread-local values read back are the very objects that thread wrote (identity);
* lock ownership and recursion level are right after every nested exit and ``Condition.wait``;
* stats read while running are sane (active within bounds, monotonic totals per reader);
* the lock is free at the end, and no worker raised or hung.

Use ``run(seed=..., duration=...)`` from tests, or run it as a script::

    python tests/stress_runner.py --seed 1 --duration 10 [--threads 16]
    python -m tests.stress_runner --seed 1 --duration 10
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import random
import sys
import threading
import time
import traceback
from collections import Counter

from snakepit_bridge import environment
from snakepit_bridge._native import ThreadSafeAdapter, thread_safe_method
from snakepit_bridge.concurrency import ConcurrencyTimeoutError, run_concurrently

__all__ = ["StressAdapter", "StressError", "StressFailure", "StressResult", "main", "run"]

_MISSING = object()
# Hashable keys of several types (no two of them compare equal: no 1 / True / 1.0).
_TL_KEYS = ("cache", 7, ("pair", 2), frozenset({"x", "y"}), "ключ", 2.5)


class StressError(Exception):
    """Raised on purpose inside tracked calls."""


class StressFailure(AssertionError):
    """An oracle was violated, a worker raised, or a worker hung."""


class StressAdapter(ThreadSafeAdapter):
    __thread_safe__ = True

    def __init__(self) -> None:
        super().__init__()
        self.counter = 0

    def _locked_bump(self, spin: int) -> None:
        with self.acquire_lock():
            v = self.counter
            for _ in range(spin):  # widen the read-modify-write window
                pass
            self.counter = v + 1

    @thread_safe_method
    def tracked(self, fail: bool, inner: bool, spin: int) -> int:
        """A tracked call; ``inner`` calls another decorated method (must count once)."""
        if inner:
            self.tracked_inner(spin)
        if fail:
            raise StressError("planned failure")
        return spin

    @thread_safe_method
    def tracked_inner(self, spin: int) -> int:
        for _ in range(spin):
            pass
        return spin

    @thread_safe_method
    def tracked_locked(self, fail: bool, spin: int) -> None:
        """A tracked call doing a locked update (counts as one call and one update)."""
        self._locked_bump(spin)
        if fail:
            raise StressError("planned failure after the update")


@dataclasses.dataclass
class StressResult:
    seed: int
    threads: int
    duration: float
    steps: int
    locked_updates: int
    tracked_calls: int
    tracked_errors: int
    timeouts: int
    condition_waits: int
    step_counts: dict[str, int]
    final_stats: dict

    def summary(self) -> str:
        return json.dumps(dataclasses.asdict(self), default=str, sort_keys=True)


class _Worker:
    """Per-thread state; only its own thread touches it while running."""

    def __init__(
        self,
        index: int,
        seed: int,
        adapter: StressAdapter,
        cond: threading.Condition,
        nthreads: int,
    ) -> None:
        self.index = index
        self.rng = random.Random(seed * 1_000_003 + index)
        self.adapter = adapter
        self.lock = adapter.lock
        self.cond = cond
        self.nthreads = nthreads
        self.name = f"stress-{seed}-{index}"
        self.steps = 0
        self.locked_updates = 0
        self.tracked_calls = 0
        self.tracked_errors = 0
        self.timeouts = 0
        self.condition_waits = 0
        self.step_counts: Counter[str] = Counter()
        self.mirror: dict = {}
        self.tl_seq = 0
        self.last_total = 0
        self.failures: list[str] = []

    # -- helpers -----------------------------------------------------------------------------

    def fail(self, msg: str) -> None:
        if len(self.failures) < 20:
            self.failures.append(f"[{self.name} step {self.steps}] {msg}")

    def level(self) -> int:
        return self.lock._recursion_count() if self.lock._is_owned() else 0

    def check_level(self, want: int, where: str) -> None:
        owned = self.lock._is_owned()
        if want == 0:
            if owned:
                self.fail(f"{where}: lock still owned (level {self.lock._recursion_count()})")
        else:
            if not owned:
                self.fail(f"{where}: lock not owned, expected level {want}")
            elif self.lock._recursion_count() != want:
                self.fail(f"{where}: level {self.lock._recursion_count()}, expected {want}")

    def bump(self) -> None:
        """Read-modify-write of the shared counter; the caller holds the lock."""
        a = self.adapter
        v = a.counter
        for _ in range(self.rng.randrange(8)):
            pass
        a.counter = v + 1
        self.locked_updates += 1

    # -- steps -------------------------------------------------------------------------------

    def step_unlocked(self) -> None:
        x = 0
        for i in range(self.rng.randrange(1, 40)):
            x += i * i
        _ = self.adapter.counter  # racy read, allowed: only writes need the lock

    def step_locked(self) -> None:
        with self.adapter.acquire_lock():
            self.bump()
        self.check_level(0, "after locked step")

    def step_nested(self) -> None:
        depth = self.rng.randint(2, 4)
        self._nest(1, depth)
        self.check_level(0, f"after nested {depth}")

    def _nest(self, level: int, depth: int) -> None:
        with self.adapter.acquire_lock():
            self.check_level(level, f"nested level {level}/{depth}")
            if level == depth:
                self.bump()
            else:
                self._nest(level + 1, depth)
            self.check_level(level, f"nested level {level}/{depth} after inner")

    def step_timeout(self) -> None:
        kind = self.rng.randrange(3)
        if kind == 0:
            timeout = self.rng.choice((0, 0.0001, 0.001, 0.005))
            got = self.lock.acquire(timeout=timeout)
            if got:
                try:
                    self.check_level(1, "after acquire(timeout)")
                    self.bump()
                finally:
                    self.lock.release()
            else:
                self.timeouts += 1
        elif kind == 1:
            if self.lock.acquire(blocking=False):
                try:
                    self.bump()
                finally:
                    self.lock.release()
            else:
                self.timeouts += 1
        else:
            timeout = self.rng.choice((0.0001, 0.001, 0.005))
            try:
                with self.adapter.acquire_lock(timeout=timeout):
                    self.check_level(1, "inside acquire_lock(timeout)")
                    self.bump()
            except TimeoutError as exc:
                self.timeouts += 1
                if "StressAdapter" not in str(exc):
                    self.fail(f"TimeoutError does not name the adapter class: {exc!r}")
        self.check_level(0, "after timeout step")

    def step_thread_local(self) -> None:
        a = self.adapter
        key = self.rng.choice(_TL_KEYS)
        r = self.rng.random()
        if r < 0.40:
            self.tl_seq += 1
            value = (self.index, self.tl_seq)
            a.set_thread_local(key, value)
            self.mirror[key] = value
        elif r < 0.85:
            got = a.get_thread_local(key, _MISSING)
            want = self.mirror.get(key, _MISSING)
            if got is not want:
                self.fail(f"thread-local {key!r}: read {got!r}, this thread wrote {want!r}")
            got_default = a.get_thread_local(key)
            if got_default is not (None if want is _MISSING else want):
                self.fail(f"thread-local {key!r} without default: read {got_default!r}")
        elif r < 0.97:
            a.clear_thread_local(key)
            self.mirror.pop(key, None)
        else:
            a.clear_thread_local()
            self.mirror.clear()

    def step_tracked(self) -> None:
        a = self.adapter
        fail = self.rng.random() < 0.25
        spin = self.rng.randrange(16)
        kind = self.rng.randrange(4)
        self.tracked_calls += 1
        if fail:
            self.tracked_errors += 1
        try:
            if kind == 0:
                a.tracked(fail, False, spin)
            elif kind == 1:
                a.tracked(fail, True, spin)  # nested decorated call: one request
            elif kind == 2:
                self.locked_updates += 1  # the update happens before the planned raise
                a.tracked_locked(fail, spin)
            else:
                with a.track_request():
                    if fail:
                        raise StressError("planned failure in track_request()")
        except StressError:
            if not fail:
                self.fail("StressError from a call that was not meant to fail")
        else:
            if fail:
                self.fail("a failing tracked call did not raise")
        self.check_level(0, "after tracked call")

    def step_stats(self) -> None:
        a = self.adapter
        stats = a.get_stats() if self.rng.random() < 0.5 else a.get_stats_dict()
        if stats.get("adapter_class") != "StressAdapter" or stats.get("thread_safe") is not True:
            self.fail(f"bad stats header: {stats!r}")
            return
        t = stats["tracker"]
        active, total, errors = t["active_requests"], t["total_requests"], t["errors"]
        if not 0 <= active <= self.nthreads - 1:  # this thread is not inside a tracked call
            self.fail(f"active_requests={active} out of [0, {self.nthreads - 1}]")
        if total < self.last_total:
            self.fail(f"total_requests went back from {self.last_total} to {total}")
        self.last_total = total
        if total < self.tracked_calls:
            self.fail(f"total_requests={total} < this thread's own {self.tracked_calls} calls")
        if not 0 <= errors <= total:
            self.fail(f"errors={errors} not within [0, total_requests={total}]")
        mine = t["requests_by_thread"].get(self.name, 0)
        if mine != self.tracked_calls:
            self.fail(
                f"requests_by_thread[{self.name!r}]={mine}, this thread made {self.tracked_calls}"
            )
        stats["tracker"]["total_requests"] = -1  # fresh dict: mutating it must not matter

    def step_condition(self) -> None:
        depth = self.rng.choice((1, 1, 2))
        with self.cond:
            if depth == 2:
                self.lock.acquire()
            try:
                self.check_level(depth, "condition entered")
                if self.rng.random() < 0.5:
                    self.condition_waits += 1
                    self.cond.wait(timeout=self.rng.choice((0.0002, 0.001, 0.003)))
                    self.check_level(depth, "after Condition.wait")
                else:
                    self.bump()
                    self.cond.notify_all()
            finally:
                if depth == 2:
                    self.lock.release()
        self.check_level(0, "after condition step")

    STEPS = (
        ("unlocked", 14),
        ("locked", 18),
        ("nested", 10),
        ("timeout", 10),
        ("thread_local", 16),
        ("tracked", 16),
        ("stats", 6),
        ("condition", 10),
    )

    def run(self, duration: float) -> None:
        """This worker's steps for ``duration`` seconds (it starts when all are released)."""
        threading.current_thread().name = self.name  # before the first tracked call
        names = [n for n, _ in self.STEPS]
        weights = [w for _, w in self.STEPS]
        methods = {n: getattr(self, "step_" + n) for n in names}
        deadline = time.monotonic() + duration
        while time.monotonic() < deadline:
            # Draw a batch of choices at once: fewer RNG calls, same reproducibility.
            for name in self.rng.choices(names, weights, k=32):
                self.steps += 1
                self.step_counts[name] += 1
                methods[name]()
        # Final thread-local check: every value this thread still has is its own.
        for key in _TL_KEYS:
            got = self.adapter.get_thread_local(key, _MISSING)
            want = self.mirror.get(key, _MISSING)
            if got is not want:
                self.fail(f"final thread-local {key!r}: {got!r}, wrote {want!r}")


def run(
    seed: int = 1, duration: float = 2.0, threads: int = 16, *, hang_timeout: float = 120.0
) -> StressResult:
    """Run the stress; return a StressResult or raise StressFailure / a worker's exception."""
    adapter = StressAdapter()
    cond = threading.Condition(adapter.lock)
    workers = [_Worker(i, seed, adapter, cond, threads) for i in range(threads)]
    old_interval = sys.getswitchinterval()
    if environment.gil_enabled():
        sys.setswitchinterval(1e-5)  # more interleavings on GIL builds
    try:
        run_concurrently(
            lambda index: workers[index].run(duration),
            threads,
            with_index=True,
            timeout=duration + hang_timeout,
        )
    except ConcurrencyTimeoutError as exc:  # its message holds the stuck threads' stacks
        raise StressFailure(f"seed {seed}: workers hung (deadlock?): {exc}") from None
    except Exception as exc:  # a worker raised; the note says which one
        details = "".join(traceback.format_exception(exc))
        raise StressFailure(f"seed {seed}: a worker raised:\n{details}") from exc
    finally:
        sys.setswitchinterval(old_interval)

    failures = [f for w in workers for f in w.failures]
    locked = sum(w.locked_updates for w in workers)
    calls = sum(w.tracked_calls for w in workers)
    errors = sum(w.tracked_errors for w in workers)
    if adapter.counter != locked:
        failures.append(
            f"counter={adapter.counter} but {locked} locked updates were made (lost updates)"
        )
    lock = adapter.lock
    if lock.locked() or lock._is_owned():
        failures.append("adapter lock still held after all workers finished")
    stats = adapter.get_stats()
    t = stats["tracker"]
    if t["total_requests"] != calls:
        failures.append(f"tracker total_requests={t['total_requests']}, tracked calls made={calls}")
    if t["errors"] != errors:
        failures.append(f"tracker errors={t['errors']}, calls that raised={errors}")
    if t["active_requests"] != 0:
        failures.append(f"tracker active_requests={t['active_requests']} after all calls ended")
    if "completed_requests" in t and t["completed_requests"] != calls:
        failures.append(f"tracker completed_requests={t['completed_requests']}, calls={calls}")
    by_thread = t["requests_by_thread"]
    failures.extend(
        f"requests_by_thread[{w.name!r}]={by_thread.get(w.name, 0)}, made {w.tracked_calls}"
        for w in workers
        if by_thread.get(w.name, 0) != w.tracked_calls
    )
    if sum(by_thread.values()) != calls:
        failures.append(f"sum(requests_by_thread)={sum(by_thread.values())}, calls={calls}")
    active_threads_ever = sum(1 for w in workers if w.tracked_calls)
    if t["threads_seen"] != active_threads_ever:
        failures.append(
            f"threads_seen={t['threads_seen']}, threads that made calls={active_threads_ever}"
        )
    if failures:
        raise StressFailure(
            f"seed {seed}: {len(failures)} oracle failure(s):\n  " + "\n  ".join(failures[:40])
        )

    counts: Counter[str] = Counter()
    for w in workers:
        counts.update(w.step_counts)
    return StressResult(
        seed=seed,
        threads=threads,
        duration=duration,
        steps=sum(w.steps for w in workers),
        locked_updates=locked,
        tracked_calls=calls,
        tracked_errors=errors,
        timeouts=sum(w.timeouts for w in workers),
        condition_waits=sum(w.condition_waits for w in workers),
        step_counts=dict(counts),
        final_stats=stats,
    )


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--duration", type=float, default=10.0, help="seconds (default 10)")
    p.add_argument("--threads", type=int, default=16)
    p.add_argument("--rounds", type=int, default=1, help="repeat with seed, seed+1, ...")
    args = p.parse_args(argv)
    for r in range(args.rounds):
        seed = args.seed + r
        try:
            res = run(seed=seed, duration=args.duration, threads=args.threads)
        except StressFailure as exc:
            print(f"stress: FAIL {exc}", file=sys.stderr)
            return 1
        print(f"stress: ok {res.summary()}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

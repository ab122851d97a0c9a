"""Randomized stress of one shared adapter, fixed seeds, short fixed duration.

The runner lives in tests/stress_runner.py (also a script for longer runs and for TSan).
Runs on both builds; on GIL builds the runner shrinks the switch interval.
"""

from __future__ import annotations

import contextlib
import importlib.util
import sys
import threading
from pathlib import Path

import pytest

from _threads import run_threads


def _load_runner():
    # By path, so it works whatever pytest's import mode and whether tests/ is a package.
    name = "snakepit_stress_runner"
    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.spec_from_file_location(
        name, Path(__file__).with_name("stress_runner.py")
    )
    mod = importlib.util.module_from_spec(spec)
    sys.modules[name] = mod
    spec.loader.exec_module(mod)
    return mod


stress_runner = _load_runner()

DURATION = 2.5  # seconds per run: fixed, never asserted on


@pytest.mark.parametrize("seed", [1, 2])
def test_randomized_stress(seed):
    res = stress_runner.run(seed=seed, duration=DURATION, threads=16)
    # Every kind of step actually ran (the mix is what the oracles are about).
    for name, _ in stress_runner._Worker.STEPS:
        assert res.step_counts.get(name, 0) > 0, f"step {name!r} never ran"
    assert res.locked_updates > 0
    assert res.tracked_errors > 0 and res.tracked_calls > res.tracked_errors
    assert res.final_stats["tracker"]["active_requests"] == 0


def test_stress_few_threads_many_conflicts():
    # 3 threads on 2 cores: different interleavings from the 16-thread run.
    stress_runner.run(seed=3, duration=1.5, threads=3)


def test_stress_runner_reports_lost_updates(monkeypatch):
    """The runner's counter oracle can fail: an adapter whose counter drops one write in 50
    (under a working lock) must make run() report lost updates."""

    class StressAdapter(stress_runner.StressAdapter):  # same name: the stats oracle stays quiet
        def __init__(self) -> None:
            self._writes = 0
            super().__init__()

        @property
        def counter(self) -> int:
            return self.__dict__.get("_counter", 0)

        @counter.setter
        def counter(self, value: int) -> None:
            self._writes += 1
            if self._writes % 50:
                self.__dict__["_counter"] = value

    monkeypatch.setattr(stress_runner, "StressAdapter", StressAdapter)
    with pytest.raises(stress_runner.StressFailure, match="lost updates"):
        stress_runner.run(seed=3, duration=0.5, threads=8)


def test_stress_runner_reports_a_lock_that_does_not_lock(monkeypatch):
    """With acquire_lock() a no-op, run() must report the lock-level oracle's failures."""

    class StressAdapter(stress_runner.StressAdapter):
        def acquire_lock(self, timeout=None):
            return contextlib.nullcontext()

    monkeypatch.setattr(stress_runner, "StressAdapter", StressAdapter)
    with pytest.raises(stress_runner.StressFailure, match="lock not owned"):
        stress_runner.run(seed=3, duration=0.5, threads=8)


def test_stress_runner_reports_a_worker_exception(monkeypatch):
    def step_stats(self):
        raise RuntimeError("stats exploded")

    monkeypatch.setattr(stress_runner._Worker, "step_stats", step_stats)
    with pytest.raises(stress_runner.StressFailure, match="a worker raised") as info:
        stress_runner.run(seed=3, duration=0.3, threads=4)
    assert "RuntimeError: stats exploded" in str(info.value)
    assert "raised in worker" in str(info.value)  # the harness's note names the worker


def test_stress_runner_reports_a_hang_with_the_stuck_stacks(monkeypatch):
    release = threading.Event()

    def step_condition(self):
        release.wait()  # a worker that never comes back (until the test lets it go)

    monkeypatch.setattr(stress_runner._Worker, "step_condition", step_condition)
    try:
        with pytest.raises(stress_runner.StressFailure, match="workers hung") as info:
            stress_runner.run(seed=3, duration=0.2, threads=4, hang_timeout=0.5)
    finally:
        release.set()
    assert "in step_condition" in str(info.value)


def test_a_lock_that_does_not_lock_loses_updates():
    """Why the counter oracle matters: the bump's read-modify-write window really loses
    updates without the lock (bounded retries: likely, not certain, in one round)."""

    class Broken(stress_runner.StressAdapter):
        def acquire_lock(self, timeout=None):
            return contextlib.nullcontext()

    n, per = 8, 3000
    switch = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)
    try:
        for _ in range(20):
            adapter = Broken()
            run_threads(lambda _i: [adapter._locked_bump(20) for _ in range(per)], n)
            if adapter.counter < n * per:
                return
    finally:
        sys.setswitchinterval(switch)
    pytest.fail("a broken lock lost no update in 20 rounds: the counter oracle would be blind")


def test_stress_runner_cli(capsys):
    assert stress_runner.main(["--seed", "5", "--duration", "0.3", "--threads", "4"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("stress: ok ")

"""Async and streaming tools through the registry, the hammer engine and the CLI.

Each kind of tool (sync, ``async def``, generator, async generator), declared with ``@tool`` and
``@thread_safe_method`` in both orders: what the registry says about it, how the sync and the
awaitable dispatch run it, and exact counts (the adapter's own, the tracker's and the hammer's)
after a 16-thread hammer.
"""

from __future__ import annotations

import asyncio
import functools
import gc
import inspect
import json
import os
import subprocess
import sys
import textwrap
import warnings
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest

from snakepit_bridge import ThreadSafeAdapter, thread_safe_method, tool
from snakepit_bridge.base_adapter import AsyncToolError, BaseAdapter, acall, tool_specs
from snakepit_bridge.hammer import (
    ToolCall,
    UnawaitedCoroutineError,
    UsageError,
    build_mix,
    run_hammer,
)

THREADS = 16
REQUESTS = 1600  # 100 per thread on average
RUN_TIMEOUT = 300.0  # seconds for a CLI subprocess; only there so that a hang fails

KINDS = ("sync", "async", "gen", "agen")
ORDERS = ("outer", "inner")  # @thread_safe_method over @tool, and @tool over @thread_safe_method
TOOLS = [f"{kind}_{order}" for kind in KINDS for order in ORDERS]


class Kinds(ThreadSafeAdapter):
    """One tool per kind and decorator order; each counts, under the lock, bodies that ran to
    their end (``done``) and stream items produced (``items``)."""

    __thread_safe__ = True

    def __init__(self) -> None:
        super().__init__()
        self.done = 0
        self.items = 0

    def _item(self) -> None:
        with self.acquire_lock():
            self.items += 1

    def _finish(self) -> None:
        with self.acquire_lock():
            self.done += 1

    # -- sync -------------------------------------------------------------------------------
    @thread_safe_method
    @tool
    def sync_outer(self, n: int = 3) -> int:
        self._finish()
        return n

    @tool
    @thread_safe_method
    def sync_inner(self, n: int = 3) -> int:
        self._finish()
        return n

    # -- async ------------------------------------------------------------------------------
    @thread_safe_method
    @tool
    async def async_outer(self, n: int = 3) -> int:
        await asyncio.sleep(0)
        self._finish()
        return n

    @tool
    @thread_safe_method
    async def async_inner(self, n: int = 3) -> int:
        await asyncio.sleep(0)
        self._finish()
        return n

    # -- generators -------------------------------------------------------------------------
    @thread_safe_method
    @tool
    def gen_outer(self, n: int = 3) -> Iterator[int]:
        for i in range(n):
            self._item()
            yield i
        self._finish()

    @tool
    @thread_safe_method
    def gen_inner(self, n: int = 3) -> Iterator[int]:
        for i in range(n):
            self._item()
            yield i
        self._finish()

    # -- async generators -------------------------------------------------------------------
    @thread_safe_method
    @tool
    async def agen_outer(self, n: int = 3) -> AsyncIterator[int]:
        for i in range(n):
            await asyncio.sleep(0)
            self._item()
            yield i
        self._finish()

    @tool
    @thread_safe_method
    async def agen_inner(self, n: int = 3) -> AsyncIterator[int]:
        for i in range(n):
            await asyncio.sleep(0)
            self._item()
            yield i
        self._finish()

    # -- failing mid-stream -----------------------------------------------------------------
    @thread_safe_method
    @tool
    def gen_fail_outer(self, after: int = 2) -> Iterator[int]:
        yield from range(after)
        raise ValueError(f"stream broke after {after} items")

    @tool
    @thread_safe_method
    def gen_fail_inner(self, after: int = 2) -> Iterator[int]:
        yield from range(after)
        raise ValueError(f"stream broke after {after} items")

    @thread_safe_method
    @tool
    async def agen_fail_outer(self, after: int = 2) -> AsyncIterator[int]:
        for i in range(after):
            await asyncio.sleep(0)
            yield i
        raise ValueError(f"stream broke after {after} items")

    @tool
    @thread_safe_method
    async def agen_fail_inner(self, after: int = 2) -> AsyncIterator[int]:
        for i in range(after):
            await asyncio.sleep(0)
            yield i
        raise ValueError(f"stream broke after {after} items")

    # -- waiting until cancelled ------------------------------------------------------------
    @thread_safe_method
    @tool
    async def wait_outer(self, started: asyncio.Event) -> None:
        started.set()
        await asyncio.Event().wait()  # never set: only cancellation ends it

    @tool
    @thread_safe_method
    async def wait_inner(self, started: asyncio.Event) -> None:
        started.set()
        await asyncio.Event().wait()


def _hide(func: Any) -> Any:
    """A wrapper without functools.wraps: the registry sees a sync function."""

    def hidden(self: Any, **kwargs: Any) -> Any:
        return func(self, **kwargs)

    return hidden


def _wrap(func: Any) -> Any:
    """A sync wrapper with functools.wraps: the registry sees the async function under it."""

    @functools.wraps(func)
    def wrapped(self: Any, **kwargs: Any) -> Any:
        return func(self, **kwargs)

    return wrapped


class Others(BaseAdapter):
    """Async tools in other shapes (a plain BaseAdapter: nothing tracked)."""

    @tool
    async def plain(self) -> str:
        return "plain"

    @staticmethod
    @tool
    async def static() -> str:
        return "static"

    @classmethod
    @tool
    async def klass(cls) -> str:
        return cls.__name__

    @tool
    @_wrap
    async def wrapped(self) -> str:
        return "wrapped"

    @tool
    @_hide
    async def hidden(self) -> str:
        return "hidden"

    @tool(supports_streaming=True)
    def listed(self) -> list[int]:
        return [1, 2]

    @tool(supports_streaming=False)  # a generator streams whatever the declaration says
    def generated(self) -> Iterator[int]:
        yield 1


def _tracker(adapter: ThreadSafeAdapter) -> dict[str, Any]:
    return dict(adapter.get_stats()["tracker"])


# --------------------------------------------------------------------------------------------
# The registry's flags
# --------------------------------------------------------------------------------------------


def test_the_registry_says_which_tools_are_async_and_which_stream() -> None:
    specs = {spec.name: spec for spec in Kinds().get_tools()}
    for order in ORDERS:
        assert (specs[f"sync_{order}"].is_async, specs[f"sync_{order}"].supports_streaming) == (
            False,
            False,
        )
        assert (specs[f"async_{order}"].is_async, specs[f"async_{order}"].supports_streaming) == (
            True,
            False,
        )
        assert (specs[f"gen_{order}"].is_async, specs[f"gen_{order}"].supports_streaming) == (
            False,
            True,
        )
        assert (specs[f"agen_{order}"].is_async, specs[f"agen_{order}"].supports_streaming) == (
            True,
            True,
        )
    others = {spec.name: spec for spec in Others().get_tools()}
    assert {name for name, spec in others.items() if spec.is_async} == {
        "plain",
        "static",
        "klass",
        "wrapped",
    }
    assert {name for name, spec in others.items() if spec.supports_streaming} == {
        "listed",
        "generated",
    }
    assert specs["agen_outer"].to_dict()["is_async"] is True
    assert specs["sync_outer"].to_dict()["is_async"] is False


def test_the_flags_survive_from_mapping_and_are_read_for_adapters_of_their_own() -> None:
    for spec in Kinds().get_tools():
        assert type(spec).from_mapping(spec.to_dict()) == spec

    class OwnAdapter:
        """Not a BaseAdapter: lists its tools as mappings; the kinds come from its methods."""

        def get_tools(self) -> list[dict[str, Any]]:
            return [{"name": "fetch"}, {"name": "feed"}, {"name": "said", "is_async": True}]

        def call_tool(self, tool_name: str, **kwargs: Any) -> Any:
            return getattr(self, tool_name)(**kwargs)

        async def fetch(self) -> int:
            return 1

        async def feed(self) -> AsyncIterator[int]:
            yield 1

    specs = {spec.name: spec for spec in tool_specs(OwnAdapter())}
    assert (specs["fetch"].is_async, specs["fetch"].supports_streaming) == (True, False)
    assert (specs["feed"].is_async, specs["feed"].supports_streaming) == (True, True)
    assert specs["said"].is_async  # no such method: what the entry says


# --------------------------------------------------------------------------------------------
# Sync and awaitable dispatch
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["async_outer", "async_inner", "agen_outer", "agen_inner"])
def test_the_sync_forms_refuse_an_async_tool_before_anything_runs(name: str) -> None:
    adapter = Kinds()
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no "coroutine ... was never awaited" either
        with pytest.raises(AsyncToolError, match=rf"tool '{name}' of Kinds is async.*acall_tool"):
            adapter.call_tool(name)
        with pytest.raises(TypeError, match="acall_tool"):
            adapter.execute_tool(name, {"n": 1})
    assert adapter.done == 0 and _tracker(adapter)["total_requests"] == 0


def test_a_coroutine_from_a_tool_the_registry_sees_as_sync_is_closed_unrun() -> None:
    adapter = Others()
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # closed: no "never awaited" warning when collected
        with pytest.raises(AsyncToolError, match="returned a coroutine.*closed unrun") as caught:
            adapter.call_tool("hidden")
    assert caught.value.tool_name == "hidden"
    assert asyncio.run(adapter.acall_tool("hidden")) == "hidden"  # the awaitable form runs it


def test_the_awaitable_forms_run_every_kind() -> None:
    adapter = Kinds()

    async def main() -> dict[str, Any]:
        got: dict[str, Any] = {}
        for order in ORDERS:
            got[f"sync_{order}"] = await adapter.acall_tool(f"sync_{order}", n=4)
            got[f"async_{order}"] = await adapter.aexecute_tool(f"async_{order}", {"n": 5})
            got[f"gen_{order}"] = list(await adapter.acall_tool(f"gen_{order}", n=2))
            stream = await adapter.acall_tool(f"agen_{order}", n=3)
            got[f"agen_{order}"] = [item async for item in stream]
        return got

    got = asyncio.run(main())
    for order in ORDERS:
        assert got[f"sync_{order}"] == 4 and got[f"async_{order}"] == 5
        assert got[f"gen_{order}"] == [0, 1] and got[f"agen_{order}"] == [0, 1, 2]
    others = Others()
    assert asyncio.run(others.acall_tool("static")) == "static"
    assert asyncio.run(others.acall_tool("klass")) == "Others"
    assert asyncio.run(others.acall_tool("wrapped")) == "wrapped"
    tracker = _tracker(adapter)
    assert adapter.done == 8 and tracker["total_requests"] == 8
    assert tracker["active_requests"] == 0 and tracker["errors"] == 0


def test_the_awaitable_forms_check_like_the_sync_ones() -> None:
    adapter = Kinds()
    with pytest.raises(AttributeError, match="no tool 'missing'"):
        asyncio.run(adapter.acall_tool("missing"))
    with pytest.raises(TypeError, match="bad arguments for tool 'async_outer'"):
        asyncio.run(adapter.acall_tool("async_outer", nope=1))
    with pytest.raises(TypeError, match="arguments must be a mapping"):
        asyncio.run(adapter.aexecute_tool("async_outer", [1]))  # type: ignore[arg-type]


def test_acall_serves_an_adapter_that_only_has_call_tool() -> None:
    class OwnAdapter:
        def call_tool(self, tool_name: str, **kwargs: Any) -> Any:
            async def value() -> Any:
                return (tool_name, kwargs)

            return value() if tool_name == "later" else (tool_name, kwargs)

    assert asyncio.run(acall(OwnAdapter(), "later", x=1)) == ("later", {"x": 1})
    assert asyncio.run(acall(OwnAdapter(), "now")) == ("now", {})


# --------------------------------------------------------------------------------------------
# Requests that end early
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("order", ORDERS)
def test_a_generator_closed_early_ends_its_request(order: str) -> None:
    adapter = Kinds()
    stream = adapter.call_tool(f"gen_{order}", n=5)
    assert next(stream) == 0
    assert _tracker(adapter)["active_requests"] == 1
    stream.close()
    tracker = _tracker(adapter)
    assert (tracker["active_requests"], tracker["total_requests"], tracker["errors"]) == (0, 1, 0)
    assert adapter.done == 0  # it did not run to its end

    async def break_out() -> None:
        async for item in await adapter.acall_tool(f"agen_{order}", n=5):
            assert item == 0
            assert _tracker(adapter)["active_requests"] == 1
            break  # `async for` does not close it: dropping it ends the request

    async def close_explicitly() -> None:
        stream = await adapter.acall_tool(f"agen_{order}", n=5)
        assert await stream.__anext__() == 0
        await stream.aclose()

    asyncio.run(close_explicitly())
    tracker = _tracker(adapter)
    assert (tracker["active_requests"], tracker["total_requests"], tracker["errors"]) == (0, 2, 0)
    # Abandoned by a `break` and dropped: the request ends too (whether a dropped async
    # generator counts as an error is the native core's rule, tested in test_native_tracked).
    asyncio.run(break_out())
    gc.collect()  # it may sit in a reference cycle with the frame that iterated it
    tracker = _tracker(adapter)
    assert (tracker["active_requests"], tracker["total_requests"]) == (0, 3)
    assert adapter.done == 0


@pytest.mark.parametrize("order", ORDERS)
def test_a_cancelled_task_ends_its_request_as_an_error(order: str) -> None:
    adapter = Kinds()

    async def main() -> None:
        started = asyncio.Event()
        task = asyncio.create_task(adapter.acall_tool(f"wait_{order}", started=started))
        await started.wait()
        assert _tracker(adapter)["active_requests"] == 1
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    asyncio.run(main())
    tracker = _tracker(adapter)
    assert (tracker["active_requests"], tracker["total_requests"], tracker["errors"]) == (0, 1, 1)


# --------------------------------------------------------------------------------------------
# The hammer engine
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", TOOLS)
def test_a_16_thread_hammer_gives_exact_counts_for_every_kind(name: str) -> None:
    adapter = Kinds()
    result = run_hammer(
        lambda: adapter,
        lambda shared: build_mix(shared, tools=[name], arguments={name: {"n": 3}}),
        threads=THREADS,
        requests=REQUESTS,
        seed=1,
    )
    (call,) = result.mix
    kind = name.split("_")[0]
    assert call.is_async == (kind in ("async", "agen"))
    assert call.streaming == (kind in ("gen", "agen"))
    assert result.completed == REQUESTS and result.failed == 0, result.error_groups
    assert result.per_tool[name].requests == REQUESTS and result.per_tool[name].errors == 0
    assert len(result.requests_per_thread) == THREADS
    assert adapter.done == REQUESTS  # every body ran to its end: every stream was drained
    assert adapter.items == (3 * REQUESTS if kind in ("gen", "agen") else 0)
    tracker = _tracker(adapter)
    assert tracker["total_requests"] == REQUESTS
    assert tracker["active_requests"] == 0 and tracker["total_active_requests"] == 0
    assert tracker["errors"] == 0 and result.exit_code == 0


FAILING = ["gen_fail_outer", "gen_fail_inner", "agen_fail_outer", "agen_fail_inner"]


@pytest.mark.parametrize("name", FAILING)
def test_an_error_raised_mid_stream_is_counted_once(name: str) -> None:
    adapter = Kinds()
    result = run_hammer(
        lambda: adapter,
        lambda shared: build_mix(shared, tools=[name]),
        threads=THREADS,
        requests=REQUESTS,
        seed=2,
    )
    assert result.completed == REQUESTS and result.failed == REQUESTS
    (group,) = result.error_groups
    assert (group.tool, group.type, group.count) == (name, "ValueError", REQUESTS)
    assert group.message == "stream broke after 2 items"
    tracker = _tracker(adapter)
    assert (tracker["total_requests"], tracker["errors"], tracker["active_requests"]) == (
        REQUESTS,
        REQUESTS,
        0,
    )
    assert result.exit_code == 1


class OwnAsync:
    """Not a BaseAdapter: its call_tool returns the coroutine of an async method."""

    def __init__(self, listed_async: bool) -> None:
        self.listed_async = listed_async
        self.ran = 0

    def get_tools(self) -> list[dict[str, Any]]:
        return [{"name": "fetch", "is_async": self.listed_async}]

    def call_tool(self, tool_name: str, **kwargs: Any) -> Any:
        return self._fetch()

    async def _fetch(self) -> int:
        await asyncio.sleep(0)
        self.ran += 1  # one loop per thread, but one thread here: no race
        return self.ran


def test_a_never_awaited_coroutine_is_an_error_never_a_success() -> None:
    adapter = OwnAsync(listed_async=False)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # closed, so no "never awaited" warning at collection
        result = run_hammer(lambda: adapter, [ToolCall("fetch", {})], threads=1, requests=50)
    assert result.failed == 50 and result.completed == 50 and adapter.ran == 0
    (group,) = result.error_groups
    assert group.type == "snakepit_bridge.hammer.UnawaitedCoroutineError"
    assert "never ran" in group.message and "is_async" in group.message
    assert result.exit_code == 1
    assert issubclass(UnawaitedCoroutineError, TypeError)
    # Listed as async, the same adapter's coroutines are awaited: they run and succeed.
    listed = OwnAsync(listed_async=True)
    result = run_hammer(lambda: listed, lambda a: build_mix(a), threads=1, requests=50)
    assert result.failed == 0 and listed.ran == 50


def test_a_hidden_coroutine_of_a_base_adapter_is_an_error_too() -> None:
    result = run_hammer(Others, [ToolCall("hidden", {})], threads=2, requests=20)
    (group,) = result.error_groups
    assert (group.type, group.count) == ("snakepit_bridge.base_adapter.AsyncToolError", 20)


class Scoped(ThreadSafeAdapter):
    """Counts the worker scopes the hammer opens and closes, and where."""

    __thread_safe__ = True

    def __init__(self, fail_on_enter: bool = False) -> None:
        super().__init__()
        self.fail_on_enter = fail_on_enter
        self.entered: list[int] = []  # id of the running loop, per scope
        self.exited: list[int] = []
        self.loops_seen: set[int] = set()

    class _Scope:
        def __init__(self, adapter: Scoped) -> None:
            self.adapter = adapter

        async def __aenter__(self) -> None:
            if self.adapter.fail_on_enter:
                raise ConnectionRefusedError("no server")
            with self.adapter.acquire_lock():
                self.adapter.entered.append(id(asyncio.get_running_loop()))

        async def __aexit__(self, *exc: object) -> None:
            with self.adapter.acquire_lock():
                self.adapter.exited.append(id(asyncio.get_running_loop()))

    def hammer_worker_scope(self) -> Scoped._Scope:
        return Scoped._Scope(self)

    @thread_safe_method
    @tool
    async def where(self) -> None:
        loop = id(asyncio.get_running_loop())
        with self.acquire_lock():
            self.loops_seen.add(loop)


def test_each_worker_enters_and_leaves_the_adapters_scope_on_its_own_loop() -> None:
    adapter = Scoped()
    result = run_hammer(lambda: adapter, lambda a: build_mix(a), threads=4, requests=400)
    assert result.failed == 0 and result.completed == 400
    assert len(adapter.entered) == 4 and len(set(adapter.entered)) == 4
    assert sorted(adapter.exited) == sorted(adapter.entered)
    assert adapter.loops_seen <= set(adapter.entered)


def test_a_scope_that_cannot_be_entered_stops_the_run() -> None:
    with pytest.raises(ConnectionRefusedError, match="no server") as caught:
        run_hammer(lambda: Scoped(fail_on_enter=True), lambda a: build_mix(a), threads=3)
    assert "hammer_worker_scope() in " in caught.value.__notes__[0]


def test_build_mix_still_refuses_unknown_tools() -> None:
    with pytest.raises(UsageError, match="unknown tool"):
        build_mix(Kinds(), tools=["nope"])


# --------------------------------------------------------------------------------------------
# The CLI (the bug this fixes: an async tool "succeeded" without its body ever running)
# --------------------------------------------------------------------------------------------

CLI_ADAPTERS = """
import asyncio

from snakepit_bridge import ThreadSafeAdapter, thread_safe_method, tool


class AsyncOnly(ThreadSafeAdapter):
    __thread_safe__ = True

    @thread_safe_method
    @tool
    async def slow(self) -> int:
        await asyncio.sleep(0)
        return 1


class OwnAsync:
    def get_tools(self):
        return [{"name": "fetch"}]

    def call_tool(self, tool_name, **kwargs):
        return self._fetch()

    async def _fetch(self):
        await asyncio.sleep(0)
"""


@pytest.fixture
def cli_env(tmp_path: Path) -> dict[str, str]:
    (tmp_path / "async_cli_adapters.py").write_text(textwrap.dedent(CLI_ADAPTERS))
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(tmp_path), env.get("PYTHONPATH")) if p)
    return env


def _cli(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-W", "error::RuntimeWarning", "-m", "snakepit_bridge", *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=RUN_TIMEOUT,
        stdin=subprocess.DEVNULL,
    )


def test_cli_runs_async_tools_to_their_end(cli_env: dict[str, str]) -> None:
    proc = _cli(
        cli_env, "hammer", "async_cli_adapters:AsyncOnly", "--requests", "1000", "--quiet", "--json"
    )
    assert proc.returncode == 0, proc.stderr
    assert "never awaited" not in proc.stderr
    report = json.loads(proc.stdout)
    assert report["requests"] == {"completed": 1000, "succeeded": 1000, "failed": 0}
    tracker = report["adapter_stats"]["tracker"]
    assert tracker["total_requests"] == 1000 and tracker["active_requests"] == 0


def test_cli_fails_a_run_with_never_awaited_coroutines_and_says_why(
    cli_env: dict[str, str],
) -> None:
    proc = _cli(
        cli_env, "hammer", "async_cli_adapters:OwnAsync", "--requests", "200", "--threads", "4",
        "--quiet",
    )  # fmt: skip
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert "200 completed, 0 succeeded, 200 failed" in proc.stdout
    assert "UnawaitedCoroutineError" in proc.stdout
    assert "returned a coroutine that nothing awaited (its body never ran)" in proc.stdout
    assert "never awaited" not in proc.stderr  # closed, not left to the collector
    again = _cli(
        cli_env, "hammer", "async_cli_adapters:OwnAsync", "--requests", "20", "--quiet", "--json"
    )
    report = json.loads(again.stdout)
    assert report["exit_code"] == 1
    assert report["errors"][0]["type"] == "snakepit_bridge.hammer.UnawaitedCoroutineError"


def test_inspect_agrees_with_the_registry() -> None:
    """The registry reads the same truth inspect gives about the decorated methods."""
    for name in TOOLS:
        raw = vars(Kinds)[name]
        spec = next(s for s in Kinds().get_tools() if s.name == name)
        assert spec.is_async == (
            inspect.iscoroutinefunction(raw) or inspect.isasyncgenfunction(raw)
        ), name


def test_the_server_runs_on_its_loop_exactly_the_tools_the_registry_calls_async() -> None:
    from snakepit_bridge.server.tools import build_catalog

    catalog = build_catalog(Kinds())
    for spec in Kinds().get_tools():
        kind = catalog.kind(spec.name)
        assert kind is not None and kind.spec == spec
        assert kind.on_loop == spec.is_async and kind.tracked
    own = build_catalog(OwnAsync(listed_async=True))
    assert own.tools["fetch"].on_loop and not own.tools["fetch"].tracked

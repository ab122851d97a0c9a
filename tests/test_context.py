"""Per-request context: one shared adapter, many concurrent requests, each with its own context."""

from __future__ import annotations

import contextvars
import gc
import threading
import time
import weakref

from _threads import run_threads
from snakepit_bridge.base_adapter import BaseAdapter, tool
from snakepit_bridge.base_adapter_threaded import ThreadSafeAdapter, thread_safe_method
from snakepit_bridge.context import RequestContext, current_request, request_scope


class Session:
    def __init__(self, session_id: str) -> None:
        self.session_id = session_id


class Shared(ThreadSafeAdapter):
    __thread_safe__ = True

    @thread_safe_method
    @tool
    def whoami(self, pause: float = 0.0) -> str | None:
        """The session id this request sees, read after a pause that lets others overwrite it."""
        time.sleep(pause)
        return self.session_id


def test_concurrent_requests_on_one_adapter_each_see_their_own_session() -> None:
    adapter = Shared()

    def request(index: int) -> list[str | None]:
        seen = []
        for round_ in range(20):
            sid = f"s-{index}-{round_}"
            # As the server runs a request: a fresh execution context each time.
            result = contextvars.Context().run(
                adapter.execute_tool, "whoami", {"pause": 0.0005}, Session(sid)
            )
            seen.append(result == sid)
        return seen

    results = run_threads(request, 8)
    assert all(all(r) for r in results)


def test_a_context_set_on_one_thread_is_not_seen_on_another() -> None:
    adapter = Shared()
    adapter.set_session_context(Session("main"))
    seen: list[str | None] = []
    thread = threading.Thread(target=lambda: seen.append(adapter.session_id))
    thread.start()
    thread.join(30)
    assert seen == [None]
    assert adapter.session_id == "main"


def test_request_scope_supplies_the_session_when_none_was_set() -> None:
    adapter = Shared()
    request = RequestContext(
        session_id="sess", tool_name="whoami", correlation_id="c-1", metadata={"k": "v"}
    )
    assert current_request() is None
    with request_scope(request):
        assert current_request() is request
        assert adapter.session_id == "sess"
        assert adapter.session_context is request
        assert adapter.call_tool("whoami") == "sess"
        adapter.set_session_context(Session("explicit"))  # an explicit context wins
        assert adapter.session_id == "explicit"
    assert current_request() is None


def test_contexts_are_per_adapter() -> None:
    first, second = Shared(), Shared()
    first.set_session_context(Session("a"))
    assert first.session_id == "a"
    assert second.session_id is None
    second.set_session_context(Session("b"))
    first.set_session_context(Session("c"))  # replaces, does not pile up
    assert (first.session_id, second.session_id) == ("c", "b")


def test_upstream_names_still_work() -> None:
    class Upstream(BaseAdapter):
        def __init__(self) -> None:
            self.session_context = None  # what upstream's BaseAdapter.__init__ did

    adapter = Upstream()
    assert (adapter.session_context, adapter._session_context) == (None, None)
    adapter.set_session_context(Session("u"))
    assert adapter._session_context.session_id == "u"
    adapter.session_context = Session("v")
    assert adapter.session_id == "v"


def test_a_stored_context_does_not_keep_the_adapter_alive() -> None:
    adapter = Shared()
    adapter.set_session_context(Session("gone"))
    ref = weakref.ref(adapter)
    del adapter
    gc.collect()
    assert ref() is None


def test_time_remaining() -> None:
    assert RequestContext("s", "t").time_remaining() is None
    remaining = RequestContext("s", "t", deadline=time.monotonic() + 10).time_remaining()
    assert remaining is not None and 0 < remaining <= 10

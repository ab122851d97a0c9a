"""Threads that CPython did not start: a C library's thread calling back into Python.

Each callback from such a thread gets a fresh Python thread state (ctypes wraps it in
PyGILState_Ensure/Release), so one OS thread sees a sequence of thread states. Every one of them
must be tracked and must have working thread-local storage, not only the first.
"""

from __future__ import annotations

import ctypes
import shutil
import subprocess
import sysconfig
import weakref
from pathlib import Path

import pytest

from snakepit_bridge import ThreadSafeAdapter, _native, thread_safe_method

# A C thread that calls a function pointer n times, then ends.
_SOURCE = r"""
#include <pthread.h>
typedef void (*callback)(int);
static callback the_callback;
static int the_count;
static void *run(void *unused) {
    (void)unused;
    for (int i = 0; i < the_count; i++) {
        the_callback(i);
    }
    return NULL;
}
int call_from_one_c_thread(callback cb, int count) {
    pthread_t thread;
    the_callback = cb;
    the_count = count;
    if (pthread_create(&thread, NULL, run, NULL) != 0) {
        return -1;
    }
    return pthread_join(thread, NULL);
}
"""


@pytest.fixture(scope="module")
def c_thread_library(tmp_path_factory: pytest.TempPathFactory) -> ctypes.CDLL:
    compiler = (sysconfig.get_config_var("CC") or "cc").split()[0]
    if shutil.which(compiler) is None:
        pytest.skip(f"no C compiler ({compiler}) to build the foreign-thread helper")
    folder = tmp_path_factory.mktemp("cthread")
    source, library = folder / "cthread.c", folder / "libcthread.so"
    source.write_text(_SOURCE)
    subprocess.run(
        [compiler, "-shared", "-fPIC", "-O1", "-pthread", str(source), "-o", str(library)],
        check=True,
        capture_output=True,
    )
    return ctypes.CDLL(str(Path(library)))  # CDLL: the GIL (or thread state) is released


class Token:
    """A weak-referenceable value, to see when storage releases it."""


class Counter(ThreadSafeAdapter):
    @thread_safe_method
    def tracked(self, i: int) -> int:
        return i


CALLBACK = ctypes.CFUNCTYPE(None, ctypes.c_int)


def test_every_thread_state_of_a_c_thread_is_tracked_and_has_storage(c_thread_library: ctypes.CDLL) -> None:
    adapter = Counter()
    seen: list[tuple[int, object, object]] = []
    errors: list[BaseException] = []
    values: list[weakref.ref[Token]] = []

    def callback(i: int) -> None:
        try:
            before = adapter.get_thread_local("mine", "fresh")
            adapter.set_thread_local("mine", i)
            token = Token()
            values.append(weakref.ref(token))
            adapter.set_thread_local("token", token)
            seen.append((adapter.tracked(i), before, adapter.get_thread_local("mine")))
        except BaseException as exc:  # ctypes would only print it
            errors.append(exc)

    keep = CALLBACK(callback)  # referenced until the C thread has ended
    assert c_thread_library.call_from_one_c_thread(keep, 5) == 0
    assert errors == []
    # A new thread state per callback: its storage starts empty and then holds its value.
    assert seen == [(i, "fresh", i) for i in range(5)]
    tracker = adapter.get_stats()["tracker"]
    assert tracker["total_requests"] == 5 and tracker["completed_requests"] == 5
    assert tracker["active_requests"] == 0
    # Each state's values died with that state, while the adapter lives on.
    assert len(values) == 5 and all(ref() is None for ref in values)
    assert _native._live_shards(adapter.tracker) == 0

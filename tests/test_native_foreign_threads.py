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


def test_every_thread_state_of_a_c_thread_is_tracked_and_has_storage(
    c_thread_library: ctypes.CDLL,
) -> None:
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
        except BaseException as exc:  # noqa: BLE001 - ctypes would only print it
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


# A C helper that runs the calling thread's own Python thread state on a second OS thread.
_SHARED_STATE_SOURCE = r"""
#include <Python.h>
#include <pthread.h>
static PyThreadState *shared_state;
static PyObject *the_callable;
static void *run(void *unused) {
    (void)unused;
    PyEval_RestoreThread(shared_state);
    PyObject *result = PyObject_CallNoArgs(the_callable);
    if (result == NULL) {
        PyErr_Print();
    }
    Py_XDECREF(result);
    (void)PyEval_SaveThread();
    return NULL;
}
int run_my_thread_state_on_another_os_thread(PyObject *callable) {
    pthread_t thread;
    the_callable = callable;
    shared_state = PyEval_SaveThread();
    int rc = pthread_create(&thread, NULL, run, NULL);
    if (rc == 0) {
        rc = pthread_join(thread, NULL);
    }
    PyEval_RestoreThread(shared_state);
    return rc;
}
"""


def test_one_thread_state_on_two_os_threads_never_frees_a_live_record(tmp_path: Path) -> None:
    """A thread state used by a second OS thread (as a subinterpreter's run_string did on
    3.11) must not replace, and so free, the record the first OS thread still caches: the
    second thread gets a clear RuntimeError and the first keeps working.  In a subprocess, as
    the bug was a use-after-free."""
    compiler = (sysconfig.get_config_var("CC") or "cc").split()[0]
    if shutil.which(compiler) is None:
        pytest.skip(f"no C compiler ({compiler}) to build the helper")
    source, library = tmp_path / "shared_state.c", tmp_path / "libsharedstate.so"
    source.write_text(_SHARED_STATE_SOURCE)
    include = sysconfig.get_paths()["include"]
    subprocess.run(
        [
            compiler,
            "-shared",
            "-fPIC",
            "-O1",
            "-pthread",
            f"-I{include}",
            str(source),
            "-o",
            str(library),
        ],
        check=True,
        capture_output=True,
    )
    from _hang import run_python

    proc = run_python(
        f"""
        import ctypes, gc, threading
        from snakepit_bridge import ThreadSafeAdapter, thread_safe_method

        class A(ThreadSafeAdapter):
            @thread_safe_method
            def work(self, i):
                return i

        a = A()
        a.set_thread_local("k", 1)  # this OS thread's record now exists
        a.work(0)
        outcome = []

        def on_the_other_os_thread():
            try:
                a.set_thread_local("k", 2)
                outcome.append("stored")
            except RuntimeError as exc:
                outcome.append(str(exc))

        helper = ctypes.PyDLL({str(library)!r})
        helper.run_my_thread_state_on_another_os_thread.argtypes = [ctypes.py_object]
        assert helper.run_my_thread_state_on_another_os_thread(on_the_other_os_thread) == 0
        print("OTHER:", outcome)
        # The first OS thread's record is intact: its value, its tracking, new adapters.
        for _ in range(100):
            b = A()
            b.set_thread_local("x", 1)
            b.work(1)
            del b
        gc.collect()
        mine, worked = a.get_thread_local("k"), a.work(2)  # in this order, then the stats
        print("MINE:", mine, worked, a.get_stats()["tracker"]["total_requests"])
        """,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    lines = proc.stdout.splitlines()
    assert lines[0].startswith(
        "OTHER: ['snakepit_bridge: this Python thread state already belongs to OS thread"
    ), lines
    assert "one thread state shared by several OS threads is not supported" in lines[0]
    assert lines[1] == "MINE: 1 2 2", lines


def test_subinterpreters_are_refused_on_every_version() -> None:
    """The module refuses to load in a subinterpreter, also on 3.11 (where the
    Py_mod_multiple_interpreters slot does not exist)."""
    from _hang import run_python

    proc = run_python(
        """
        try:
            import _interpreters as interpreters
        except ImportError:
            import _xxsubinterpreters as interpreters
        iid = interpreters.create()
        code = "import snakepit_bridge._native"
        try:
            failure = interpreters.run_string(iid, code)  # 3.13: returns the error
        except Exception as exc:  # 3.11/3.12: raises RunFailedError
            failure = exc
        print(repr(failure))
        """,
        timeout=120,
    )
    if "No module named '_xxsubinterpreters'" in proc.stderr:
        pytest.skip("this interpreter has no subinterpreter module")
    assert proc.returncode == 0, proc.stderr
    assert "ImportError" in proc.stdout, proc.stdout
    assert "does not support" in proc.stdout and "subinterpreters" in proc.stdout, proc.stdout

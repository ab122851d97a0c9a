/* snakepit_bridge._native: wires the native types into one module.
 *
 * Multi-phase init, heap types created with PyType_FromModuleAndSpec, all state in module
 * state, and Py_mod_gil = not used: importing this module leaves the GIL disabled on
 * free-threaded builds. */
#include "adapter.h"
#include "fork.h"
#include "guards.h"
#include "method.h"
#include "request.h"
#include "tracked.h"
#include "watch.h"

PyModuleDef snakepit_module_def;

static snakepit_state *
get_state(PyObject *module)
{
    return (snakepit_state *)PyModule_GetState(module);
}

/* ---------------------------------------------------------------- functions */

static PyObject *
set_observer(PyObject *module, PyObject *observer, int calls)
{
    snakepit_state *st = get_state(module);
    if (observer != Py_None && !PyCallable_Check(observer)) {
        PyErr_Format(PyExc_TypeError, "observer must be callable or None, not %.200s",
                     Py_TYPE(observer)->tp_name);
        return NULL;
    }
    PyObject *replacement = observer == Py_None ? NULL : Py_NewRef(observer);
    observer_lock(st);
    PyObject **slot = calls ? &st->call_observer : &st->write_observer;
    PyObject *previous = *slot;
    *slot = replacement;
    atomic_store_explicit(calls ? &st->observing_calls : &st->observing_writes, replacement != NULL,
                          SNAKEPIT_RELAXED);
    observer_unlock(st);
    if (!calls) {
        watch_observer_changed(st, previous != NULL, replacement != NULL);
    }
    Py_XDECREF(previous);
    Py_RETURN_NONE;
}

static PyObject *
set_write_observer(PyObject *module, PyObject *observer)
{
    return set_observer(module, observer, 0);
}

static PyObject *
set_call_observer(PyObject *module, PyObject *observer)
{
    return set_observer(module, observer, 1);
}

static PyObject *
lock_owner(PyObject *module, PyObject *lock)
{
    snakepit_state *st = get_state(module);
    if (!PyObject_TypeCheck(lock, st->rlock_type)) {
        PyErr_Format(PyExc_TypeError, "lock_owner() needs a snakepit_bridge RLock, not %.200s",
                     Py_TYPE(lock)->tp_name);
        return NULL;
    }
    return PyLong_FromUnsignedLong(snakepit_lock_owner(&((rlock_object *)lock)->lock));
}

static PyObject *
declares_thread_safe(PyObject *module, PyObject *obj)
{
    PyTypeObject *type = PyType_Check(obj) ? (PyTypeObject *)obj : Py_TYPE(obj);
    int declared = adapter_declares_thread_safe(get_state(module), type);
    return declared < 0 ? NULL : PyBool_FromLong(declared);
}

static PyObject *
report_pending_writes(PyObject *Py_UNUSED(module), PyObject *Py_UNUSED(ignored))
{
    return PyLong_FromSsize_t(watch_report_pending());
}

/* For tests: the reports recorded and not delivered yet over every thread, and how many were
 * dropped for want of room. */
static PyObject *
pending_writes(PyObject *Py_UNUSED(module), PyObject *Py_UNUSED(ignored))
{
    Py_ssize_t pending;
    uint64_t dropped;
    watch_pending_count(&pending, &dropped);
    return Py_BuildValue("(nK)", pending, (unsigned long long)dropped);
}

/* For tests: how many threads currently hold a shard of this tracker. */
static PyObject *
live_shards(PyObject *module, PyObject *tracker)
{
    snakepit_state *st = get_state(module);
    if (!PyObject_TypeCheck(tracker, st->tracker_type)) {
        PyErr_Format(PyExc_TypeError, "_live_shards() needs a RequestTracker, not %.200s",
                     Py_TYPE(tracker)->tp_name);
        return NULL;
    }
    Py_ssize_t count = 0;
    registry_lock(st);
    SNAKEPIT_LIST_FOR_EACH (link, &((tracker_object *)tracker)->set.slots) {
        (void)link;
        count++;
    }
    registry_unlock(st);
    return PyLong_FromSsize_t(count);
}

static PyMethodDef module_functions[] = {
    {"set_write_observer", set_write_observer, METH_O,
     "set_write_observer(observer, /)\n--\n\n"
     "Report every attribute write or delete on an adapter to\n"
     "observer(adapter, name, owns_adapter_lock, deferred); None removes it.  A write\n"
     "through the adapter's __setattr__ is reported before it happens (deferred is None;\n"
     "an exception aborts the write).  On 3.12+ a write that bypasses it (object.__setattr__,\n"
     "vars(adapter)) is reported after it, on the writing thread, at its next report point\n"
     "(deferred is the writing code's (filename, line); an exception is unraisable)."},
    {"report_pending_writes", report_pending_writes, METH_NOARGS,
     "report_pending_writes()\n--\n\n"
     "Deliver now the calling thread's reports of writes that bypassed __setattr__ (see\n"
     "set_write_observer); returns how many reached an observer."},
    {"set_call_observer", set_call_observer, METH_O,
     "set_call_observer(observer, /)\n--\n\n"
     "Call observer(method, adapter, entering) around every decorated call on an adapter;\n"
     "None removes it."},
    {"declares_thread_safe", declares_thread_safe, METH_O,
     "declares_thread_safe(cls_or_adapter, /)\n--\n\n"
     "Whether the class declares itself thread-safe: the nearest class of its MRO that sets\n"
     "__thread_safe__ in its own body decides, and only the bool True declares.\n"
     "ThreadSafeAdapter's own attribute does not count.  The one rule get_stats(), the\n"
     "checker and the server use."},
    {"lock_owner", lock_owner, METH_O,
     "lock_owner(lock, /)\n--\n\nThread ident of the lock's owner, 0 when free (a snapshot)."},
    {"_pending_writes", pending_writes, METH_NOARGS,
     "_pending_writes()\n--\n\n(recorded and not delivered yet, dropped for want of room): the "
     "reports\n"
     "of writes that bypassed __setattr__, over every thread (tests)."},
    {"_live_shards", live_shards, METH_O,
     "_live_shards(tracker, /)\n--\n\nNumber of threads holding a shard of the tracker (tests)."},
    {NULL, NULL, 0, NULL},
};

/* ---------------------------------------------------------------- exec */

static int
add_type(PyObject *module, PyType_Spec *spec, PyObject *base, PyTypeObject **slot, int public)
{
    *slot = (PyTypeObject *)PyType_FromModuleAndSpec(module, spec, base);
    if (*slot == NULL) {
        return -1;
    }
    return public ? PyModule_AddType(module, *slot) : 0;
}

static int
module_exec(PyObject *module)
{
    /* Only the main interpreter: per-thread records are cached in C thread-local storage
     * and found through one Py_tss key, fork hooks and thread-exit handling assume one
     * interpreter's thread states, and a subinterpreter's thread state can be run by several
     * OS threads in turn (seen to crash on 3.11, which has no Py_mod_multiple_interpreters
     * slot to refuse the import with).  So refuse it on every version. */
    if (PyInterpreterState_Get() != PyInterpreterState_Main()) {
        PyErr_SetString(PyExc_ImportError,
                        "snakepit_bridge._native does not support subinterpreters: "
                        "import it in the main interpreter");
        return -1;
    }
    snakepit_state *st = get_state(module);
    st->has_dict_watcher = 0; /* until watch_module_init: module_free reads it */
    snakepit_clock_init(&st->clock);
    atomic_store_explicit(&st->next_set_id, 1, SNAKEPIT_RELAXED); /* 0 marks an empty cache */

#define SNAKEPIT_INTERN(field, text)                                    \
    if ((st->str_##field = PyUnicode_InternFromString(text)) == NULL) { \
        return -1;                                                      \
    }
    SNAKEPIT_INTERNED_NAMES(SNAKEPIT_INTERN)
#undef SNAKEPIT_INTERN
    snakepit_list_init(&st->registry.sets);
    snakepit_list_init(&st->registry.locks);
    st->record_tss = PyThread_tss_alloc();
    if (st->record_tss == NULL || PyThread_tss_create(st->record_tss) != 0) {
        PyErr_SetString(PyExc_RuntimeError, "cannot create thread-specific storage");
        return -1;
    }
    st->record_key = PyObject_CallNoArgs((PyObject *)&PyBaseObject_Type);
    if (st->record_key == NULL) {
        return -1;
    }
    st->current_request = PyContextVar_New("snakepit_bridge.current_request", NULL);
    if (st->current_request == NULL) {
        return -1;
    }

    PyObject *base_module = PyImport_ImportModule("snakepit_bridge.base_adapter");
    if (base_module == NULL) {
        return -1;
    }
    PyObject *base_adapter = PyObject_GetAttrString(base_module, "BaseAdapter");
    Py_DECREF(base_module);
    if (base_adapter == NULL) {
        return -1;
    }
    int r = add_type(module, &snakepit_adapter_spec, base_adapter, &st->adapter_type, 1);
    Py_DECREF(base_adapter);
    if (r < 0 || add_type(module, &snakepit_rlock_spec, NULL, &st->rlock_type, 1) < 0
        || add_type(module, &snakepit_tracker_spec, NULL, &st->tracker_type, 1) < 0
        || add_type(module, &snakepit_request_spec, NULL, &st->request_type, 0) < 0
        || add_type(module, &snakepit_tracked_coroutine_spec, NULL, &st->tracked_coroutine_type, 0)
               < 0
        || add_type(module, &snakepit_tracked_generator_spec, NULL, &st->tracked_generator_type, 0)
               < 0
        || add_type(module, &snakepit_tracked_async_generator_spec, NULL,
                    &st->tracked_async_generator_type, 0)
               < 0
        || add_type(module, &snakepit_tracked_step_spec, NULL, &st->tracked_step_type, 0) < 0
        || add_type(module, &snakepit_method_spec, NULL, &st->method_type, 1) < 0
        || add_type(module, &snakepit_timed_guard_spec, NULL, &st->timed_guard_type, 0) < 0
        || add_type(module, &snakepit_part_spec, NULL, &st->part_type, 0) < 0
        || add_type(module, &snakepit_lock_guard_spec, NULL, &st->lock_guard_type, 0) < 0
        || add_type(module, &snakepit_record_spec, NULL, &st->record_type, 0) < 0
        || adapter_type_ready(st) < 0) {
        return -1;
    }
    if (add_type(module, &snakepit_guard_method_spec, NULL, &st->guard_method_type, 0) < 0
        || lock_guard_type_ready(st) < 0) {
        return -1;
    }

#ifdef Py_GIL_DISABLED
    int free_threaded = 1;
#else
    int free_threaded = 0;
#endif
    const char *clock_source = st->clock.use_tsc ? "tsc" : "clock_gettime(CLOCK_MONOTONIC)";
#ifdef NDEBUG
    PyObject *debug_build = Py_False;
#else
    PyObject *debug_build = Py_True; /* the invariant assertions are live */
#endif
    if (watch_module_init(st) < 0) {
        return -1;
    }
    if (PyModule_AddStringConstant(module, "__version__", "0.1.0") < 0
        || PyModule_AddObjectRef(module, "dict_writes_observed",
                                 st->has_dict_watcher ? Py_True : Py_False)
               < 0
        || PyModule_AddObjectRef(module, "debug_build", debug_build) < 0
        || PyModule_AddObjectRef(module, "free_threaded", free_threaded ? Py_True : Py_False) < 0
        || PyModule_AddStringConstant(module, "clock_source", clock_source) < 0) {
        return -1;
    }
    return snakepit_fork_init(module);
}

static int
module_traverse(PyObject *module, visitproc visit, void *arg)
{
    snakepit_state *st = get_state(module);
    Py_VISIT(st->adapter_type);
    Py_VISIT(st->rlock_type);
    Py_VISIT(st->timed_guard_type);
    Py_VISIT(st->lock_guard_type);
    Py_VISIT(st->guard_method_type);
    Py_VISIT(st->tracker_type);
    Py_VISIT(st->request_type);
    Py_VISIT(st->tracked_step_type);
    Py_VISIT(st->tracked_async_generator_type);
    Py_VISIT(st->tracked_generator_type);
    Py_VISIT(st->tracked_coroutine_type);
    Py_VISIT(st->current_request);
    Py_VISIT(st->method_type);
    Py_VISIT(st->part_type);
    Py_VISIT(st->record_type);
    Py_VISIT(st->write_observer);
    Py_VISIT(st->call_observer);
    return 0;
}

static int
module_clear(PyObject *module)
{
    snakepit_state *st = get_state(module);
    atomic_store_explicit(&st->observing_writes, 0, SNAKEPIT_RELAXED);
    atomic_store_explicit(&st->observing_calls, 0, SNAKEPIT_RELAXED);
    if (st->write_observer != NULL) {
        watch_observer_changed(st, 1, 0);
    }
    Py_CLEAR(st->write_observer);
    Py_CLEAR(st->call_observer);
    Py_CLEAR(st->adapter_type);
    Py_CLEAR(st->rlock_type);
    Py_CLEAR(st->timed_guard_type);
    Py_CLEAR(st->lock_guard_type);
    Py_CLEAR(st->guard_method_type);
    Py_CLEAR(st->tracker_type);
    Py_CLEAR(st->request_type);
    Py_CLEAR(st->tracked_step_type);
    Py_CLEAR(st->tracked_async_generator_type);
    Py_CLEAR(st->tracked_generator_type);
    Py_CLEAR(st->tracked_coroutine_type);
    Py_CLEAR(st->current_request);
    Py_CLEAR(st->method_type);
    Py_CLEAR(st->part_type);
    Py_CLEAR(st->record_type);
    Py_CLEAR(st->record_key);
#define SNAKEPIT_CLEAR_NAME(field, text) Py_CLEAR(st->str_##field);
    SNAKEPIT_INTERNED_NAMES(SNAKEPIT_CLEAR_NAME)
#undef SNAKEPIT_CLEAR_NAME
    return 0;
}

static void
module_free(void *module)
{
    snakepit_state *st = get_state((PyObject *)module);
    (void)module_clear((PyObject *)module);
    watch_module_free(st);
    if (st->record_tss != NULL) {
        PyThread_tss_free(st->record_tss); /* deletes the key too */
        st->record_tss = NULL;
    }
}

static PyModuleDef_Slot module_slots[] = {
    {Py_mod_exec, module_exec},
#ifdef Py_mod_multiple_interpreters
    {Py_mod_multiple_interpreters, Py_MOD_MULTIPLE_INTERPRETERS_NOT_SUPPORTED},
#endif
#ifdef Py_mod_gil
    {Py_mod_gil, Py_MOD_GIL_NOT_USED},
#endif
    {0, NULL},
};

PyModuleDef snakepit_module_def = {
    PyModuleDef_HEAD_INIT,
    .m_name = "snakepit_bridge._native",
    .m_doc = "Native core of snakepit-bridge: ThreadSafeAdapter, RLock, RequestTracker and "
             "thread_safe_method.",
    .m_size = sizeof(snakepit_state),
    .m_methods = module_functions,
    .m_slots = module_slots,
    .m_traverse = module_traverse,
    .m_clear = module_clear,
    .m_free = module_free,
};

PyMODINIT_FUNC
PyInit__native(void)
{
    return PyModuleDef_Init(&snakepit_module_def);
}

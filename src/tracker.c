/* RequestTracker.  See tracker.h. */
#include "tracker.h"

#include "request.h"

#include <string.h>

tracker_object *
tracker_new(snakepit_state *st)
{
    tracker_object *self = (tracker_object *)st->tracker_type->tp_alloc(st->tracker_type, 0);
    if (self == NULL) {
        return NULL;
    }
    self->state = st;
    shard_set_init(st, &self->set);
    return self;
}

static PyObject *
tracker_tp_new(PyTypeObject *type, PyObject *args, PyObject *kwargs)
{
    if (PyTuple_GET_SIZE(args) != 0 || (kwargs != NULL && PyDict_GET_SIZE(kwargs) != 0)) {
        PyErr_SetString(PyExc_TypeError, "RequestTracker() takes no arguments");
        return NULL;
    }
    snakepit_state *st = PyType_GetModuleState(type);
    if (st == NULL) {
        return NULL;
    }
    return (PyObject *)tracker_new(st);
}

static void
tracker_dealloc(PyObject *op)
{
    tracker_object *self = (tracker_object *)op;
    PyTypeObject *tp = Py_TYPE(op);
    shard_set_fini(&self->set);
    tp->tp_free(op);
    Py_DECREF(tp);
}

static int
set_int(PyObject *dict, PyObject *key, int64_t value)
{
    PyObject *number = PyLong_FromLongLong(value);
    if (number == NULL) {
        return -1;
    }
    int r = PyDict_SetItem(dict, key, number);
    Py_DECREF(number);
    return r;
}

static int
set_float(PyObject *dict, PyObject *key, double value)
{
    PyObject *number = PyFloat_FromDouble(value);
    if (number == NULL) {
        return -1;
    }
    int r = PyDict_SetItem(dict, key, number);
    Py_DECREF(number);
    return r;
}

/* Merge the entries of the snapshot that carry equal names (threads may share a name, and
 * ended threads' names are kept apart from live ones), keeping each name at its first
 * position: a duplicate's count is added to the first entry and the duplicate marked with -1
 * (counts are never negative).  Only for exact str names, whose hash and equality run no
 * Python code and cannot fail; then every name goes into the table once, with no lookup.
 * An open-addressing table of entry indices keyed by the cached str hash. */
#define MERGE_INLINE_TABLE (2 * SNAKEPIT_SNAPSHOT_INLINE)

typedef struct {
    Py_hash_t hash;
    Py_ssize_t index; /* -1: empty */
} merge_cell;

static int
merge_equal_names(retired_name *entries, Py_ssize_t n)
{
    merge_cell inline_table[MERGE_INLINE_TABLE];
    merge_cell *table = inline_table;
    size_t size = MERGE_INLINE_TABLE;
    while (size < 2 * (size_t)n) {
        size *= 2;
    }
    if (size > MERGE_INLINE_TABLE) {
        table = PyMem_Malloc(size * sizeof(merge_cell));
        if (table == NULL) {
            PyErr_NoMemory();
            return -1;
        }
    }
    for (size_t c = 0; c < size; c++) {
        table[c].index = -1;
    }
    size_t mask = size - 1;
    for (Py_ssize_t i = 0; i < n; i++) {
        PyObject *name = entries[i].name;
        Py_hash_t hash = PyObject_Hash(name); /* cached in the str; cannot fail */
        for (size_t c = (size_t)hash & mask;; c = (c + 1) & mask) {
            if (table[c].index < 0) {
                table[c].hash = hash;
                table[c].index = i;
                break;
            }
            PyObject *other = entries[table[c].index].name;
            if (table[c].hash == hash && (other == name || PyUnicode_Compare(other, name) == 0)) {
                entries[table[c].index].requests += entries[i].requests;
                entries[i].requests = -1;
                break;
            }
        }
    }
    if (table != inline_table) {
        PyMem_Free(table);
    }
    return 0;
}

static PyObject *
requests_by_thread(snakepit_state *st, shard_snapshot *snap)
{
    PyObject *by_thread = PyDict_New();
    if (by_thread == NULL) {
        return NULL;
    }
    int exact = 1;
    for (Py_ssize_t i = 0; i < snap->n_by_name && exact; i++) {
        exact = PyUnicode_CheckExact(snap->by_name[i].name);
    }
    if (exact) {
        if (snap->n_by_name > 1 && merge_equal_names(snap->by_name, snap->n_by_name) < 0) {
            goto error;
        }
        for (Py_ssize_t i = 0; i < snap->n_by_name; i++) {
            if (snap->by_name[i].requests >= 0
                && set_int(by_thread, snap->by_name[i].name, snap->by_name[i].requests) < 0) {
                goto error;
            }
        }
    }
    else {
        /* A str subclass as a thread name: merged by the dict itself (its own hash and
         * equality, which may run Python code; no lock is held here). */
        for (Py_ssize_t i = 0; i < snap->n_by_name; i++) {
            PyObject *previous;
            if (snakepit_dict_get_ref(by_thread, snap->by_name[i].name, &previous) < 0) {
                goto error;
            }
            int64_t total = snap->by_name[i].requests;
            if (previous != NULL) {
                total += PyLong_AsLongLong(previous);
                Py_DECREF(previous);
                if (PyErr_Occurred()) {
                    goto error;
                }
            }
            if (set_int(by_thread, snap->by_name[i].name, total) < 0) {
                goto error;
            }
        }
    }
    if (snap->other_requests > 0) {
        if (set_int(by_thread, st->str_other_threads, snap->other_requests) < 0) {
            goto error;
        }
    }
    return by_thread;
error:
    Py_DECREF(by_thread);
    return NULL;
}

/* The TSC ratio is measured against the monotonic clock since import; after a second
 * it is accurate to a few parts per billion and is kept, saving two clock reads. */
static double
cached_seconds_per_tick(snakepit_state *st)
{
    uint64_t bits = atomic_load_explicit(&st->seconds_per_tick_bits, SNAKEPIT_RELAXED);
    double ratio;
    if (bits != 0) {
        memcpy(&ratio, &bits, sizeof(ratio));
        return ratio;
    }
    ratio = snakepit_seconds_per_tick(&st->clock);
    if (snakepit_mono_ns() - st->clock.base_ns >= 1000000000u) {
        memcpy(&bits, &ratio, sizeof(bits));
        atomic_store_explicit(&st->seconds_per_tick_bits, bits, SNAKEPIT_RELAXED);
    }
    return ratio;
}

PyObject *
tracker_stats_dict(tracker_object *self)
{
    snakepit_state *st = self->state;
    shard_snapshot snap;
    if (shard_set_snapshot(&self->set, &snap) < 0) {
        return NULL;
    }
    double seconds_per_tick = cached_seconds_per_tick(st);
    /* Requests ended on another thread are added there: a reader may see the end before the
     * start it read on another slot; never report that as a negative count. */
    int64_t active = snap.active_requests > 0 ? snap.active_requests : 0;
    double total = (double)snap.busy_ticks * seconds_per_tick;
    PyObject *by_thread = NULL;
    /* Built from C data only: a forked child may call this, and a Python container shared
     * between threads (a template to copy, say) may reach the child with its per-object
     * lock held by a thread that does not exist there. */
    PyObject *stats = PyDict_New();
    if (stats == NULL) {
        goto error;
    }
    by_thread = requests_by_thread(st, &snap);
    if (by_thread == NULL) {
        goto error;
    }
    if (set_int(stats, st->str_total_requests, snap.started) < 0
        || set_int(stats, st->str_completed_requests, snap.completed) < 0
        || set_int(stats, st->str_active_requests, active) < 0
        || set_int(stats, st->str_total_active_requests, active) < 0 /* upstream's name */
        || set_int(stats, st->str_active_threads, snap.active_threads) < 0
        || set_int(stats, st->str_threads_seen, snap.threads_seen) < 0
        || PyDict_SetItem(stats, st->str_requests_by_thread, by_thread) < 0
        || set_int(stats, st->str_errors, snap.errors) < 0
        || set_float(stats, st->str_total_duration, total) < 0
        || set_float(stats, st->str_mean_duration,
                     snap.completed ? total / (double)snap.completed : 0.0)
               < 0
        || set_float(stats, st->str_max_duration, (double)snap.max_ticks * seconds_per_tick) < 0) {
        goto error;
    }
    Py_DECREF(by_thread);
    shard_snapshot_release(&snap);
    return stats;
error:
    Py_XDECREF(by_thread);
    Py_XDECREF(stats);
    shard_snapshot_release(&snap);
    return NULL;
}

static PyObject *
tracker_py_start(PyObject *op, PyObject *Py_UNUSED(ignored))
{
    tracker_object *self = (tracker_object *)op;
    shard_slot *slot = shard_get(&self->set);
    if (slot == NULL) {
        if (PyErr_Occurred()) {
            return NULL;
        }
        Py_RETURN_NONE; /* an exiting thread is not tracked */
    }
    tracker_begin(self->state, self, slot);
    Py_RETURN_NONE;
}

static int
tracker_finish(tracker_object *self, int error)
{
    shard_slot *slot = shard_find(&self->set);
    if (slot == NULL && shard_thread_exiting()) {
        return 0; /* matching the untracked start of an exiting thread */
    }
    if (slot == NULL || slot->depth == 0) {
        PyErr_SetString(PyExc_RuntimeError,
                        "end_request() without a matching start_request() in this thread");
        return -1;
    }
    tracker_end(self->state, slot, error);
    return 0;
}

static PyObject *
tracker_py_end(PyObject *op, PyObject *args, PyObject *kwargs)
{
    static char *kwlist[] = {"error", NULL};
    int error = 0;
    if (!PyArg_ParseTupleAndKeywords(args, kwargs, "|p:end_request", kwlist, &error)) {
        return NULL;
    }
    if (tracker_finish((tracker_object *)op, error) < 0) {
        return NULL;
    }
    Py_RETURN_NONE;
}

static PyObject *
tracker_py_track(PyObject *op, PyObject *Py_UNUSED(ignored))
{
    return request_new((tracker_object *)op);
}

static PyObject *
tracker_py_stats(PyObject *op, PyObject *Py_UNUSED(ignored))
{
    return tracker_stats_dict((tracker_object *)op);
}

static PyObject *
tracker_py_active(PyObject *op, PyObject *Py_UNUSED(ignored))
{
    return PyLong_FromLongLong(shard_set_active(&((tracker_object *)op)->set));
}

static PyMethodDef tracker_methods[] = {
    {"start_request", tracker_py_start, METH_NOARGS,
     "Start a request on the calling thread (nested starts count once)."},
    {"end_request", (PyCFunction)(void (*)(void))tracker_py_end, METH_VARARGS | METH_KEYWORDS,
     "end_request(error=False)\n--\n\nEnd the calling thread's request; RuntimeError if none."},
    {"track_request", tracker_py_track, METH_NOARGS,
     "A new request object: a context manager counting its body as one request (an error\n"
     "if it raises).  It may be exited on another thread, and requests of tasks that\n"
     "interleave on one thread count separately."},
    {"get_stats", tracker_py_stats, METH_NOARGS,
     "A fresh dict of exact totals aggregated over every thread's shard."},
    {"active_requests", tracker_py_active, METH_NOARGS,
     "Requests running now (get_stats()['active_requests'] without building the dict)."},
    {NULL, NULL, 0, NULL},
};

static PyType_Slot tracker_slots[] = {
    {Py_tp_new, tracker_tp_new},
    {Py_tp_dealloc, tracker_dealloc},
    {Py_tp_methods, tracker_methods},
    {Py_tp_doc,
     "RequestTracker()\n--\n\nPer-thread sharded request counter: total, active, per-thread "
     "counts, errors and durations.\nCounting never makes threads contend; totals are exact "
     "and aggregated when read."},
    {0, NULL},
};

PyType_Spec snakepit_tracker_spec = {
    .name = "snakepit_bridge._native.RequestTracker",
    .basicsize = sizeof(tracker_object),
    .flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_IMMUTABLETYPE,
    .slots = tracker_slots,
};

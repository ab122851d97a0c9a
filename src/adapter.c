/* ThreadSafeAdapter.  See adapter.h. */
#include "adapter.h"

#include "guards.h"
#include "request.h"
#include "watch.h"

extern PyModuleDef snakepit_module_def;

static PyObject *
adapter_tp_new(PyTypeObject *type, PyObject *Py_UNUSED(args), PyObject *Py_UNUSED(kwargs))
{
    /* Arguments belong to the subclass's __init__; everything native is made here. */
    PyObject *module = PyType_GetModuleByDef(type, &snakepit_module_def);
    if (module == NULL) {
        return NULL;
    }
    snakepit_state *st = PyModule_GetState(module);
    adapter_object *self = (adapter_object *)type->tp_alloc(type, 0);
    if (self == NULL) {
        return NULL;
    }
    self->state = st;
    self->lock = rlock_new(st);
    if (self->lock == NULL) {
        Py_DECREF(self);
        return NULL;
    }
    self->tracker = tracker_new(st);
    if (self->tracker == NULL) {
        Py_DECREF(self);
        return NULL;
    }
    self->set_id = self->tracker->set.id;
    if (watch_adapter_new(self) < 0) {
        Py_DECREF(self);
        return NULL;
    }
    return (PyObject *)self;
}

static int
adapter_tp_init(PyObject *self, PyObject *args, PyObject *kwargs)
{
    if (PyTuple_GET_SIZE(args) != 0 || (kwargs != NULL && PyDict_GET_SIZE(kwargs) != 0)) {
        PyErr_Format(PyExc_TypeError,
                     "%s.__init__() of ThreadSafeAdapter takes no arguments; define "
                     "__init__ in the subclass to accept them",
                     Py_TYPE(self)->tp_name);
        return -1;
    }
    return 0;
}

static int
adapter_traverse(PyObject *op, visitproc visit, void *arg)
{
    adapter_object *self = (adapter_object *)op;
    Py_VISIT(Py_TYPE(op));
    Py_VISIT(self->dict);
    if (self->tracker != NULL) {
        /* Thread-local values live in the tracker's shards but belong to the adapter. */
        return shard_set_traverse_values(&self->tracker->set, visit, arg);
    }
    return 0;
}

static int
adapter_clear(PyObject *op)
{
    adapter_object *self = (adapter_object *)op;
    watch_adapter_forget(self); /* before the dict goes (and, in dealloc, the lock) */
    Py_CLEAR(self->dict);
    if (self->tracker != NULL) {
        shard_set_clear_values(&self->tracker->set);
    }
    return 0;
}

static void
adapter_dealloc(PyObject *op)
{
    adapter_object *self = (adapter_object *)op;
    PyTypeObject *tp = Py_TYPE(op);
    PyObject_GC_UnTrack(op);
    if (self->weakreflist != NULL) {
        PyObject_ClearWeakRefs(op);
    }
    (void)adapter_clear(op);
    Py_CLEAR(self->tracker);
    Py_CLEAR(self->lock);
    tp->tp_free(op);
    Py_DECREF(tp);
}

/* ---------------------------------------------------------------- observation */

/* The observed write: report it (with any report this thread recorded before), then make it,
 * telling the dict watcher that this store is already reported (see watch.h). */
static Py_NO_INLINE int
adapter_setattro_observed(PyObject *op, PyObject *name, PyObject *value)
{
    adapter_object *self = (adapter_object *)op;
    snakepit_state *st = self->state;
    (void)watch_report_pending();
    PyObject *observer = observer_get(st, &st->write_observer);
    if (observer == NULL) {
        return PyObject_GenericSetAttr(op, name, value);
    }
    PyObject *owns = snakepit_lock_is_owned(&self->lock->lock) ? Py_True : Py_False;
    PyObject *r = PyObject_CallFunctionObjArgs(observer, op, name, owns, Py_None, NULL);
    Py_DECREF(observer);
    if (r == NULL) {
        return -1;
    }
    Py_DECREF(r);
    watch_scope saved;
    watch_scope_enter(&saved, self, name);
    int result = PyObject_GenericSetAttr(op, name, value);
    watch_scope_exit(&saved);
    return result;
}

static int
adapter_setattro(PyObject *op, PyObject *name, PyObject *value)
{
    if (atomic_load_explicit(&((adapter_object *)op)->state->observing_writes, SNAKEPIT_RELAXED)) {
        return adapter_setattro_observed(op, name, value);
    }
    return PyObject_GenericSetAttr(op, name, value);
}

#if PY_VERSION_HEX < 0x030C0000
/* On 3.11, object.__setattr__(adapter, ...) (which frozen dataclasses' __init__ uses) refuses
 * any object whose class chain overrides tp_setattro in C ("can't apply this __setattr__";
 * bpo-41295's check, relaxed in 3.12 to type objects only).  So on 3.11 the observed write is
 * offered as Python-visible __setattr__/__delattr__ methods instead: the slot then dispatches
 * through them, and the check sees only Python-level overrides.  (object.__setattr__ itself
 * bypasses them, on every version: it calls object's own slot by design.) */
static PyObject *
adapter_py_setattr(PyObject *op, PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs != 2) {
        PyErr_Format(PyExc_TypeError, "__setattr__ expected 2 arguments, got %zd", nargs);
        return NULL;
    }
    if (adapter_setattro(op, args[0], args[1]) < 0) {
        return NULL;
    }
    Py_RETURN_NONE;
}

static PyObject *
adapter_py_delattr(PyObject *op, PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs != 1) {
        PyErr_Format(PyExc_TypeError, "__delattr__ expected 1 argument, got %zd", nargs);
        return NULL;
    }
    if (adapter_setattro(op, args[0], NULL) < 0) {
        return NULL;
    }
    Py_RETURN_NONE;
}

static PyMethodDef adapter_attribute_methods[] = {
    {"__setattr__", (PyCFunction)(void (*)(void))adapter_py_setattr, METH_FASTCALL,
     "Implement setattr(self, name, value); reported to the write observer, if any."},
    {"__delattr__", (PyCFunction)(void (*)(void))adapter_py_delattr, METH_FASTCALL,
     "Implement delattr(self, name); reported to the write observer, if any."},
};

static int
add_attribute_methods(snakepit_state *st)
{
    for (size_t i = 0; i < sizeof(adapter_attribute_methods) / sizeof(adapter_attribute_methods[0]);
         i++) {
        PyObject *descr = PyDescr_NewMethod(st->adapter_type, &adapter_attribute_methods[i]);
        if (descr == NULL) {
            return -1;
        }
        int r = PyObject_SetAttrString((PyObject *)st->adapter_type,
                                       adapter_attribute_methods[i].ml_name, descr);
        Py_DECREF(descr);
        if (r < 0) {
            return -1;
        }
    }
    return 0;
}
#endif

/* ---------------------------------------------------------------- methods */

static PyObject *
adapter_acquire_lock(PyObject *op, PyObject *const *args, Py_ssize_t nargs, PyObject *kwnames)
{
    adapter_object *self = (adapter_object *)op;
    Py_ssize_t nkw = kwnames ? PyTuple_GET_SIZE(kwnames) : 0;
    PyObject *timeout = NULL;
    if (nargs + nkw > 1) {
        PyErr_SetString(PyExc_TypeError, "acquire_lock() takes at most 1 argument (timeout)");
        return NULL;
    }
    if (nargs == 1) {
        timeout = args[0];
    }
    else if (nkw == 1) {
        PyObject *kw = PyTuple_GET_ITEM(kwnames, 0);
        if (PyUnicode_Compare(kw, self->state->str_timeout) != 0) {
            PyErr_Format(PyExc_TypeError, "acquire_lock() got an unexpected keyword argument %R",
                         kw);
            return NULL;
        }
        timeout = args[0];
    }
    if (timeout == NULL || timeout == Py_None) {
        /* The common path allocates nothing after a thread's first call: its guard. */
        shard_slot *slot = adapter_slot_get(self);
        if (slot == NULL) {
            /* An exiting thread keeps no shard: give it a guard of its own. */
            return PyErr_Occurred() ? NULL : lock_guard_new(self->state, self->lock);
        }
        if (slot->guard == NULL) {
            PyObject *guard = lock_guard_new(self->state, self->lock);
            if (guard == NULL) {
                return NULL;
            }
            slot->guard = guard;
        }
        return Py_NewRef(slot->guard);
    }
    int64_t timeout_us;
    if (snakepit_parse_timeout(timeout, 1, &timeout_us) < 0) {
        return NULL;
    }
    PyObject *name = PyType_GetName(Py_TYPE(op));
    if (name == NULL) {
        return NULL;
    }
    PyObject *guard = timed_guard_new(self->state, self->lock, name, timeout_us);
    Py_DECREF(name);
    return guard;
}

/* get_thread_local()'s arguments when given by keyword or in a wrong number: kept out of
 * line so that the common positional call needs no stack frame for them. */
static Py_NO_INLINE int
get_thread_local_parse_slow(PyObject *const *args, Py_ssize_t nargs, PyObject *kwnames,
                            PyObject **key, PyObject **fallback)
{
    static const char *names[] = {"key", "default"};
    PyObject *parsed[2] = {NULL, NULL};
    Py_ssize_t nkw = kwnames ? PyTuple_GET_SIZE(kwnames) : 0;
    if (nargs > 2) {
        PyErr_SetString(PyExc_TypeError, "get_thread_local() takes at most 2 arguments");
        return -1;
    }
    for (Py_ssize_t i = 0; i < nargs; i++) {
        parsed[i] = args[i];
    }
    for (Py_ssize_t i = 0; i < nkw; i++) {
        PyObject *kw = PyTuple_GET_ITEM(kwnames, i);
        int index = -1;
        for (int j = 0; j < 2; j++) {
            if (PyUnicode_CompareWithASCIIString(kw, names[j]) == 0) {
                index = j;
            }
        }
        if (index < 0 || parsed[index] != NULL) {
            PyErr_Format(PyExc_TypeError,
                         index < 0 ? "get_thread_local() got an unexpected keyword argument %R"
                                   : "get_thread_local() got multiple values for argument %R",
                         kw);
            return -1;
        }
        parsed[index] = args[nargs + i];
    }
    if (parsed[0] == NULL) {
        PyErr_SetString(PyExc_TypeError, "get_thread_local() missing required argument 'key'");
        return -1;
    }
    *key = parsed[0];
    if (parsed[1] != NULL) {
        *fallback = parsed[1];
    }
    return 0;
}

static PyObject *
adapter_get_thread_local(PyObject *op, PyObject *const *args, Py_ssize_t nargs, PyObject *kwnames)
{
    adapter_object *self = (adapter_object *)op;
    PyObject *key, *fallback = Py_None;
    if (kwnames == NULL && (nargs == 1 || nargs == 2)) {
        key = args[0];
        if (nargs == 2) {
            fallback = args[1];
        }
    }
    else if (get_thread_local_parse_slow(args, nargs, kwnames, &key, &fallback) < 0) {
        return NULL;
    }
    shard_slot *slot = adapter_slot_find(self);
    if (slot == NULL || slot->values == NULL) {
        /* Still reject unhashable keys, so a miss and a hit fail alike. */
        if (PyObject_Hash(key) == -1) {
            return NULL;
        }
        return Py_NewRef(fallback);
    }
    /* Hold the dict: a key's __eq__ may clear this thread's storage mid-lookup.  (The dict
     * is reachable from Python through gc.get_referents(adapter), so no assumption about
     * the keys it holds is safe.) */
    PyObject *values = Py_NewRef(slot->values);
    PyObject *value;
    int found = snakepit_dict_get_ref(values, key, &value);
    Py_DECREF(values);
    if (found < 0) {
        return NULL;
    }
    return found ? value : Py_NewRef(fallback);
}

static PyObject *
adapter_set_thread_local(PyObject *op, PyObject *const *args, Py_ssize_t nargs)
{
    adapter_object *self = (adapter_object *)op;
    if (nargs != 2) {
        PyErr_Format(PyExc_TypeError, "set_thread_local() takes exactly 2 arguments (%zd given)",
                     nargs);
        return NULL;
    }
    shard_slot *slot = adapter_slot_get(self);
    if (slot == NULL) {
        if (!PyErr_Occurred()) {
            PyErr_SetString(PyExc_RuntimeError,
                            "set_thread_local() while this thread is exiting: its storage is gone");
        }
        return NULL;
    }
    if (slot->values == NULL) {
        /* Hashing may run Python code that stores a value first: keep whichever dict won. */
        if (PyObject_Hash(args[0]) == -1) {
            return NULL;
        }
        PyObject *fresh = PyDict_New();
        if (fresh == NULL) {
            return NULL;
        }
        if (slot->values == NULL) {
            slot->values = fresh;
        }
        else {
            Py_DECREF(fresh);
        }
    }
    /* Hold the dict: replacing a value may run a __del__ that clears this storage. */
    PyObject *values = Py_NewRef(slot->values);
    int r = PyDict_SetItem(values, args[0], args[1]);
    Py_DECREF(values);
    if (r < 0) {
        return NULL;
    }
    Py_RETURN_NONE;
}

static PyObject *
adapter_clear_thread_local(PyObject *op, PyObject *const *args, Py_ssize_t nargs)
{
    adapter_object *self = (adapter_object *)op;
    if (nargs > 1) {
        PyErr_Format(PyExc_TypeError, "clear_thread_local() takes at most 1 argument (%zd given)",
                     nargs);
        return NULL;
    }
    PyObject *key = nargs == 1 ? args[0] : Py_None;
    if (key != Py_None && PyObject_Hash(key) == -1) {
        return NULL;
    }
    shard_slot *slot = adapter_slot_find(self);
    if (slot == NULL || slot->values == NULL) {
        Py_RETURN_NONE;
    }
    if (key == Py_None) {
        /* Detach first: releasing values may run code that touches this storage. */
        PyObject *values = slot->values;
        slot->values = NULL;
        Py_DECREF(values);
        Py_RETURN_NONE;
    }
    PyObject *values = Py_NewRef(slot->values);
    int r = PyDict_DelItem(values, key);
    Py_DECREF(values);
    if (r < 0) {
        if (!PyErr_ExceptionMatches(PyExc_KeyError)) {
            return NULL;
        }
        PyErr_Clear();
    }
    Py_RETURN_NONE;
}

static PyObject *
adapter_track_request(PyObject *op, PyObject *Py_UNUSED(ignored))
{
    return request_new(((adapter_object *)op)->tracker);
}

int
adapter_declares_thread_safe(snakepit_state *st, PyTypeObject *type)
{
    PyObject *mro = type->tp_mro; /* immutable once the type is ready */
    if (mro == NULL || !PyTuple_Check(mro)) {
        return 0;
    }
    for (Py_ssize_t i = 0; i < PyTuple_GET_SIZE(mro); i++) {
        PyTypeObject *base = (PyTypeObject *)PyTuple_GET_ITEM(mro, i);
        if (base == st->adapter_type) {
            return 0; /* upstream's attribute on the base class, not the user's declaration */
        }
#if PY_VERSION_HEX >= 0x030C0000
        PyObject *dict = PyType_GetDict(base);
#else
        PyObject *dict = Py_XNewRef(base->tp_dict);
#endif
        if (dict == NULL) {
            continue;
        }
        PyObject *value;
        int found = snakepit_dict_get_ref(dict, st->str_dunder_thread_safe, &value);
        Py_DECREF(dict);
        if (found < 0) {
            return -1;
        }
        if (found) {
            int declared = value == Py_True;
            Py_DECREF(value);
            return declared;
        }
    }
    return 0;
}

static PyObject *
adapter_stats(PyObject *op, PyObject *Py_UNUSED(ignored))
{
    adapter_object *self = (adapter_object *)op;
    snakepit_state *st = self->state;
    PyObject *name = NULL, *tracker = NULL, *stats = NULL;
    name = PyType_GetName(Py_TYPE(op));
    if (name == NULL) {
        goto done;
    }
    int safe = adapter_declares_thread_safe(st, Py_TYPE(op));
    if (safe < 0) {
        goto done;
    }
    tracker = tracker_stats_dict(self->tracker);
    if (tracker == NULL) {
        goto done;
    }
    stats = PyDict_New();
    if (stats == NULL) {
        goto done;
    }
    if (PyDict_SetItem(stats, st->str_adapter_class, name) < 0
        || PyDict_SetItem(stats, st->str_thread_safe, safe ? Py_True : Py_False) < 0
        || PyDict_SetItem(stats, st->str_tracker, tracker) < 0) {
        Py_CLEAR(stats);
    }
done:
    Py_XDECREF(name);
    Py_XDECREF(tracker);
    return stats;
}

static PyMethodDef adapter_methods[] = {
    {"acquire_lock", (PyCFunction)(void (*)(void))adapter_acquire_lock,
     METH_FASTCALL | METH_KEYWORDS,
     "acquire_lock(timeout=None)\n--\n\n"
     "Context manager over the adapter's reentrant lock.  With a timeout, TimeoutError\n"
     "names the adapter class and the thread holding the lock."},
    {"get_thread_local", (PyCFunction)(void (*)(void))adapter_get_thread_local,
     METH_FASTCALL | METH_KEYWORDS,
     "get_thread_local(key, default=None)\n--\n\n"
     "This thread's value for key on this adapter, or default (which is not stored)."},
    {"set_thread_local", (PyCFunction)(void (*)(void))adapter_set_thread_local, METH_FASTCALL,
     "set_thread_local(key, value, /)\n--\n\n"
     "Store value for key, for this adapter and this thread only."},
    {"clear_thread_local", (PyCFunction)(void (*)(void))adapter_clear_thread_local, METH_FASTCALL,
     "clear_thread_local(key=None, /)\n--\n\n"
     "Remove this thread's value for key, or all of this thread's values on this adapter."},
    {"track_request", adapter_track_request, METH_NOARGS,
     "A new context manager counting its body as one request of this adapter (it may be\n"
     "exited on another thread; interleaving tasks of one thread count separately)."},
    {"get_stats", adapter_stats, METH_NOARGS,
     "A fresh dict: adapter_class, thread_safe and the tracker's statistics."},
    {"get_stats_dict", adapter_stats, METH_NOARGS,
     "The same fresh dict as ThreadSafeAdapter.get_stats(), even when a subclass overrides it."},
    {NULL, NULL, 0, NULL},
};

/* As PyObject_GenericSetDict, and the new dict is watched instead of the old (watch.h). */
static int
adapter_set_dict(PyObject *op, PyObject *value, void *Py_UNUSED(context))
{
    if (value == NULL) {
        PyErr_SetString(PyExc_TypeError, "cannot delete __dict__");
        return -1;
    }
    if (!PyDict_Check(value)) {
        PyErr_Format(PyExc_TypeError, "__dict__ must be set to a dictionary, not a '%.200s'",
                     Py_TYPE(value)->tp_name);
        return -1;
    }
    return watch_adapter_set_dict((adapter_object *)op, value);
}

static PyGetSetDef adapter_getset[] = {
    {"__dict__", PyObject_GenericGetDict, adapter_set_dict, NULL, NULL},
    {NULL, NULL, NULL, NULL, NULL},
};

static PyMemberDef adapter_members[] = {
    {"__dictoffset__", Py_T_PYSSIZET, offsetof(adapter_object, dict), Py_READONLY, NULL},
    {"__weaklistoffset__", Py_T_PYSSIZET, offsetof(adapter_object, weakreflist), Py_READONLY, NULL},
    {NULL, 0, 0, 0, NULL},
};

static PyType_Slot adapter_slots[] = {
    {Py_tp_new, adapter_tp_new},
    {Py_tp_init, adapter_tp_init},
    {Py_tp_dealloc, adapter_dealloc},
    {Py_tp_traverse, adapter_traverse},
    {Py_tp_clear, adapter_clear},
    {Py_tp_setattro, adapter_setattro},
    {Py_tp_methods, adapter_methods},
    {Py_tp_members, adapter_members},
    {Py_tp_getset, adapter_getset},
    {Py_tp_doc,
     "ThreadSafeAdapter()\n--\n\n"
     "Base class of thread-safe Snakepit adapters: a reentrant lock (acquire_lock()),\n"
     "per-adapter per-thread storage (get/set/clear_thread_local) and a request tracker\n"
     "(get_stats()), all native."},
    {0, NULL},
};

PyType_Spec snakepit_adapter_spec = {
    .name = "snakepit_bridge._native.ThreadSafeAdapter",
    .basicsize = sizeof(adapter_object),
    /* Made immutable in adapter_type_ready(), after its descriptors are in place. */
    .flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_BASETYPE | Py_TPFLAGS_HAVE_GC,
    .slots = adapter_slots,
};

/* ---------------------------------------------------------------- part descriptors */

enum { PART_LOCK, PART_TRACKER };

typedef struct {
    PyObject_HEAD
    int part;
    PyObject *name;
} part_object;

static PyObject *
part_get(PyObject *op, PyObject *obj, PyObject *Py_UNUSED(type))
{
    part_object *self = (part_object *)op;
    if (obj == NULL || obj == Py_None) {
        return Py_NewRef(op);
    }
    snakepit_state *st = PyType_GetModuleState(Py_TYPE(op));
    if (st == NULL) {
        return NULL;
    }
    if (!adapter_check(st, obj)) {
        PyErr_Format(PyExc_TypeError, "descriptor %R needs a ThreadSafeAdapter, not %.200s",
                     self->name, Py_TYPE(obj)->tp_name);
        return NULL;
    }
    adapter_object *adapter = (adapter_object *)obj;
    return Py_NewRef(self->part == PART_LOCK ? (PyObject *)adapter->lock
                                             : (PyObject *)adapter->tracker);
}

static void
part_dealloc(PyObject *op)
{
    PyTypeObject *tp = Py_TYPE(op);
    Py_XDECREF(((part_object *)op)->name);
    PyObject_Free(op);
    Py_DECREF(tp);
}

static PyObject *
part_repr(PyObject *op)
{
    return PyUnicode_FromFormat("<native adapter attribute %R>", ((part_object *)op)->name);
}

static PyType_Slot part_slots[] = {
    {Py_tp_descr_get, part_get},
    {Py_tp_dealloc, part_dealloc},
    {Py_tp_repr, part_repr},
    {Py_tp_doc,
     "Read-only view of an adapter's native lock or tracker; instance attributes shadow it."},
    {0, NULL},
};

PyType_Spec snakepit_part_spec = {
    .name = "snakepit_bridge._native._AdapterPart",
    .basicsize = sizeof(part_object),
    .flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_IMMUTABLETYPE | Py_TPFLAGS_DISALLOW_INSTANTIATION,
    .slots = part_slots,
};

static int
add_part(snakepit_state *st, const char *name, int part)
{
    part_object *descr = PyObject_New(part_object, st->part_type);
    if (descr == NULL) {
        return -1;
    }
    descr->part = part;
    descr->name = PyUnicode_InternFromString(name);
    if (descr->name == NULL) {
        Py_DECREF(descr);
        return -1;
    }
    int r = PyObject_SetAttr((PyObject *)st->adapter_type, descr->name, (PyObject *)descr);
    Py_DECREF(descr);
    return r;
}

int
adapter_type_ready(snakepit_state *st)
{
    if (add_part(st, "lock", PART_LOCK) < 0 || add_part(st, "_lock", PART_LOCK) < 0
        || add_part(st, "tracker", PART_TRACKER) < 0
        || add_part(st, "_tracker", PART_TRACKER) < 0) {
        return -1;
    }
    if (PyObject_SetAttr((PyObject *)st->adapter_type, st->str_dunder_thread_safe, Py_True) < 0) {
        return -1;
    }
#if PY_VERSION_HEX < 0x030C0000
    if (add_attribute_methods(st) < 0) {
        return -1;
    }
#endif
    st->adapter_type->tp_flags |= Py_TPFLAGS_IMMUTABLETYPE;
    PyType_Modified(st->adapter_type);
    return 0;
}

/* RLock.  See rlock.h. */
#include "rlock.h"

rlock_object *
rlock_new(snakepit_state *st)
{
    rlock_object *self = (rlock_object *)st->rlock_type->tp_alloc(st->rlock_type, 0);
    if (self == NULL) {
        return NULL;
    }
    if (snakepit_lock_init(&self->lock) < 0) {
        Py_DECREF(self);
        return NULL;
    }
    self->state = st;
    registry_lock(st);
    snakepit_list_push(&st->registry.locks, &self->registry_link);
    registry_unlock(st);
    return self;
}

static PyObject *
rlock_tp_new(PyTypeObject *type, PyObject *args, PyObject *kwargs)
{
    if (PyTuple_GET_SIZE(args) != 0 || (kwargs != NULL && PyDict_GET_SIZE(kwargs) != 0)) {
        PyErr_SetString(PyExc_TypeError, "RLock() takes no arguments");
        return NULL;
    }
    snakepit_state *st = PyType_GetModuleState(type);
    if (st == NULL) {
        return NULL;
    }
    return (PyObject *)rlock_new(st);
}

static void
rlock_dealloc(PyObject *op)
{
    rlock_object *self = (rlock_object *)op;
    PyTypeObject *tp = Py_TYPE(op);
    if (self->weakreflist != NULL) {
        PyObject_ClearWeakRefs(op);
    }
    snakepit_state *st = self->state;
    if (st != NULL) {
        /* Read the link under the registry lock too: removing a neighbour rewrites it. */
        registry_lock(st);
        if (snakepit_list_linked(&self->registry_link)) {
            snakepit_list_remove(&self->registry_link);
        }
        registry_unlock(st);
    }
    snakepit_lock_fini(&self->lock);
    for (int which = 0; which < 2; which++) {
        PyObject_Free(rlock_spare_take(self, which));
    }
    tp->tp_free(op);
    Py_DECREF(tp);
}

int
rlock_check(PyObject *op)
{
    return Py_TYPE(op)->tp_dealloc == rlock_dealloc;
}

PyObject *
rlock_release_to_none(rlock_object *self)
{
    if (snakepit_lock_release(&self->lock) < 0) {
        return NULL;
    }
    Py_RETURN_NONE;
}

/* acquire(blocking=True, timeout=-1): the arguments of threading.RLock.acquire, parsed by hand
 * (vectorcall, no argument tuple or keyword dict to build). */
static int
acquire_args(PyObject *const *args, Py_ssize_t nargs, PyObject *kwnames, PyObject **blocking,
             PyObject **timeout)
{
    if (nargs > 2) {
        PyErr_Format(PyExc_TypeError, "acquire() takes at most 2 arguments (%zd given)", nargs);
        return -1;
    }
    *blocking = nargs > 0 ? args[0] : NULL;
    *timeout = nargs > 1 ? args[1] : NULL;
    Py_ssize_t nkw = kwnames != NULL ? PyTuple_GET_SIZE(kwnames) : 0;
    for (Py_ssize_t i = 0; i < nkw; i++) {
        PyObject *name = PyTuple_GET_ITEM(kwnames, i);
        PyObject **slot = PyUnicode_CompareWithASCIIString(name, "blocking") == 0  ? blocking
                          : PyUnicode_CompareWithASCIIString(name, "timeout") == 0 ? timeout
                                                                                   : NULL;
        if (slot == NULL) {
            PyErr_Format(PyExc_TypeError, "acquire() got an unexpected keyword argument %R", name);
            return -1;
        }
        if (*slot != NULL) {
            PyErr_Format(PyExc_TypeError, "acquire() got multiple values for argument %R", name);
            return -1;
        }
        *slot = args[nargs + i];
    }
    return 0;
}

static PyObject *
rlock_py_acquire(PyObject *op, PyObject *const *args, Py_ssize_t nargs, PyObject *kwnames)
{
    PyObject *blocking_obj, *timeout_obj;
    if (acquire_args(args, nargs, kwnames, &blocking_obj, &timeout_obj) < 0) {
        return NULL;
    }
    int blocking = blocking_obj != NULL ? PyObject_IsTrue(blocking_obj) : 1;
    if (blocking < 0) {
        return NULL;
    }
    int64_t timeout_us;
    if (snakepit_parse_timeout(timeout_obj, 0, &timeout_us) < 0) {
        return NULL;
    }
    if (!blocking) {
        if (timeout_us != -1) {
            PyErr_SetString(PyExc_ValueError, "can't specify a timeout for a non-blocking call");
            return NULL;
        }
        timeout_us = 0;
    }
    int r = snakepit_lock_acquire(&((rlock_object *)op)->lock, timeout_us);
    if (r < 0) {
        return NULL;
    }
    return PyBool_FromLong(r);
}

static PyObject *
rlock_py_release(PyObject *op, PyObject *Py_UNUSED(ignored))
{
    return rlock_release_to_none((rlock_object *)op);
}

static PyObject *
rlock_py_locked(PyObject *op, PyObject *Py_UNUSED(ignored))
{
    return PyBool_FromLong(snakepit_lock_owner(&((rlock_object *)op)->lock) != 0);
}

static PyObject *
rlock_py_is_owned(PyObject *op, PyObject *Py_UNUSED(ignored))
{
    return PyBool_FromLong(snakepit_lock_is_owned(&((rlock_object *)op)->lock));
}

static PyObject *
rlock_py_recursion_count(PyObject *op, PyObject *Py_UNUSED(ignored))
{
    return PyLong_FromUnsignedLong(snakepit_lock_recursion_count(&((rlock_object *)op)->lock));
}

/* threading.Condition support: release completely and return the state to restore. */
static PyObject *
rlock_py_release_save(PyObject *op, PyObject *Py_UNUSED(ignored))
{
    snakepit_lock *lock = &((rlock_object *)op)->lock;
    if (!snakepit_lock_is_owned(lock)) {
        PyErr_SetString(PyExc_RuntimeError, "cannot release un-acquired lock");
        return NULL;
    }
    /* Built before releasing: a MemoryError must leave the lock held as it was. */
    PyObject *saved = Py_BuildValue("(kk)", atomic_load_explicit(&lock->level, SNAKEPIT_RELAXED),
                                    snakepit_lock_owner(lock));
    if (saved == NULL) {
        return NULL;
    }
    unsigned long level, owner;
    if (snakepit_lock_release_save(lock, &level, &owner) < 0) {
        Py_DECREF(saved);
        return NULL;
    }
    return saved;
}

static PyObject *
rlock_py_acquire_restore(PyObject *op, PyObject *state)
{
    if (!PyTuple_Check(state) || PyTuple_GET_SIZE(state) != 2) {
        PyErr_Format(
            PyExc_TypeError,
            "_acquire_restore() needs the (count, owner) tuple from _release_save(), not %.200s",
            Py_TYPE(state)->tp_name);
        return NULL;
    }
    long count = PyLong_AsLong(PyTuple_GET_ITEM(state, 0));
    if (count == -1 && PyErr_Occurred()) {
        return NULL;
    }
    unsigned long owner = PyLong_AsUnsignedLong(PyTuple_GET_ITEM(state, 1));
    if (owner == (unsigned long)-1 && PyErr_Occurred()) {
        return NULL;
    }
    if (count <= 0 || owner == 0) {
        PyErr_SetString(PyExc_ValueError,
                        "_acquire_restore() needs the state from _release_save()");
        return NULL;
    }
    snakepit_lock_acquire_restore(&((rlock_object *)op)->lock, (unsigned long)count, owner);
    Py_RETURN_NONE;
}

static PyObject *
rlock_repr(PyObject *op)
{
    snakepit_lock *lock = &((rlock_object *)op)->lock;
    unsigned long owner = snakepit_lock_owner(lock);
    unsigned long level = atomic_load_explicit(&lock->level, SNAKEPIT_RELAXED);
    return PyUnicode_FromFormat("<%s %s object owner=%lu count=%lu at %p>",
                                owner ? "locked" : "unlocked", Py_TYPE(op)->tp_name, owner,
                                owner ? level : 0ul, op);
}

static PyMethodDef rlock_methods[] = {
    {"acquire", (PyCFunction)(void (*)(void))rlock_py_acquire, METH_FASTCALL | METH_KEYWORDS,
     "acquire(blocking=True, timeout=-1) -> bool\n\nAcquire the lock, reentrantly."},
    {"release", rlock_py_release, METH_NOARGS,
     "Release the lock once; RuntimeError if the caller does not own it."},
    {"locked", rlock_py_locked, METH_NOARGS, "True if any thread holds the lock."},
    {"_is_owned", rlock_py_is_owned, METH_NOARGS, "True if the calling thread holds the lock."},
    {"_recursion_count", rlock_py_recursion_count, METH_NOARGS,
     "How many times the calling thread holds the lock."},
    {"_release_save", rlock_py_release_save, METH_NOARGS, "For threading.Condition."},
    {"_acquire_restore", rlock_py_acquire_restore, METH_O, "For threading.Condition."},
    {NULL, NULL, 0, NULL},
};

static PyMemberDef rlock_members[] = {
    {"__weaklistoffset__", Py_T_PYSSIZET, offsetof(rlock_object, weakreflist), Py_READONLY, NULL},
    {NULL, 0, 0, 0, NULL},
};

static PyType_Slot rlock_slots[] = {
    {Py_tp_new, rlock_tp_new},
    {Py_tp_dealloc, rlock_dealloc},
    {Py_tp_repr, rlock_repr},
    {Py_tp_methods, rlock_methods},
    {Py_tp_members, rlock_members},
    {Py_tp_doc, "RLock()\n--\n\nReentrant lock with the threading.RLock contract, usable by "
                "threading.Condition.\nEvery ThreadSafeAdapter owns one (adapter.lock)."},
    {0, NULL},
};

PyType_Spec snakepit_rlock_spec = {
    .name = "snakepit_bridge._native.RLock",
    .basicsize = sizeof(rlock_object),
    /* Made immutable once __enter__/__exit__ are installed (lock_guard_type_ready). */
    .flags = Py_TPFLAGS_DEFAULT,
    .slots = rlock_slots,
};

/* The context managers of acquire_lock().  See guards.h. */
#include "guards.h"

#include "shards.h"

/* ---------------------------------------------------------------- timed guard */

typedef struct {
    PyObject_HEAD
    rlock_object *lock;
    PyObject *owner_name;
    int64_t timeout_us;
} timed_guard;

PyObject *
timed_guard_new(snakepit_state *st, rlock_object *lock, PyObject *owner_name, int64_t timeout_us)
{
    timed_guard *self = PyObject_New(timed_guard, st->timed_guard_type);
    if (self == NULL) {
        return NULL;
    }
    self->lock = (rlock_object *)Py_NewRef(lock);
    self->owner_name = Py_NewRef(owner_name);
    self->timeout_us = timeout_us;
    return (PyObject *)self;
}

static void
timed_guard_dealloc(PyObject *op)
{
    timed_guard *self = (timed_guard *)op;
    PyTypeObject *tp = Py_TYPE(op);
    Py_XDECREF(self->lock);
    Py_XDECREF(self->owner_name);
    PyObject_Free(op);
    Py_DECREF(tp);
}

/* Whether a Python thread with this ident is running now (sys._current_frames() lists
 * every thread state that runs Python code; slow, for error messages only).  -1 if unknown. */
static int
thread_is_running(unsigned long ident)
{
    PyObject *frames = PySys_GetObject("_current_frames"); /* borrowed */
    if (frames == NULL) {
        return -1;
    }
    PyObject *current = PyObject_CallNoArgs(frames);
    if (current == NULL) {
        PyErr_Clear();
        return -1;
    }
    PyObject *key = PyLong_FromUnsignedLong(ident);
    int running = key != NULL ? PyDict_Contains(current, key) : -1;
    Py_XDECREF(key);
    Py_DECREF(current);
    if (running < 0) {
        PyErr_Clear();
    }
    return running;
}

/* "thread 'Worker-3' (ident 1234)" for the thread with this ident, as far as threading knows;
 * says so when no such thread runs any more (it ended holding the lock). */
static PyObject *
describe_thread(unsigned long ident)
{
    PyObject *name = snakepit_thread_name(ident);
    if (name != NULL) {
        PyObject *text = PyUnicode_FromFormat("thread %R (ident %lu)", name, ident);
        Py_DECREF(name);
        return text;
    }
    if (thread_is_running(ident) == 0) {
        return PyUnicode_FromFormat("thread ident %lu, which has ended without releasing it",
                                    ident);
    }
    return PyUnicode_FromFormat("thread ident %lu", ident);
}

static PyObject *
timed_guard_enter(PyObject *op, PyObject *Py_UNUSED(ignored))
{
    timed_guard *self = (timed_guard *)op;
    int r = snakepit_lock_acquire(&self->lock->lock, self->timeout_us);
    if (r < 0) {
        return NULL;
    }
    if (r == 0) {
        unsigned long owner = snakepit_lock_owner(&self->lock->lock);
        PyObject *holder = owner ? describe_thread(owner) : PyUnicode_FromString("another thread");
        if (holder == NULL) {
            return NULL;
        }
        PyObject *seconds = PyFloat_FromDouble((double)self->timeout_us / 1e6);
        if (seconds != NULL) {
            PyErr_Format(PyExc_TimeoutError,
                         "could not acquire the lock of %U within %R s: it is held by %U",
                         self->owner_name, seconds, holder);
            Py_DECREF(seconds);
        }
        Py_DECREF(holder);
        return NULL;
    }
    Py_RETURN_NONE;
}

static PyObject *
timed_guard_exit(PyObject *op, PyObject *const *Py_UNUSED(args), Py_ssize_t Py_UNUSED(nargs))
{
    return rlock_release_to_none(((timed_guard *)op)->lock);
}

static PyMethodDef timed_guard_methods[] = {
    {"__enter__", timed_guard_enter, METH_NOARGS, NULL},
    {"__exit__", (PyCFunction)(void (*)(void))timed_guard_exit, METH_FASTCALL, NULL},
    {NULL, NULL, 0, NULL},
};

static PyType_Slot timed_guard_slots[] = {
    {Py_tp_dealloc, timed_guard_dealloc},
    {Py_tp_methods, timed_guard_methods},
    {Py_tp_doc, "Context manager returned by acquire_lock(timeout=...)."},
    {0, NULL},
};

PyType_Spec snakepit_timed_guard_spec = {
    .name = "snakepit_bridge._native._TimedLockGuard",
    .basicsize = sizeof(timed_guard),
    .flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_IMMUTABLETYPE | Py_TPFLAGS_DISALLOW_INSTANTIATION,
    .slots = timed_guard_slots,
};

/* ---------------------------------------------------------------- lock guard
 *
 * What `with adapter.acquire_lock():` enters.  A `with` statement looks __enter__ and
 * __exit__ up on the type and binds them, which for ordinary C methods allocates a bound
 * method object each time.  Here both names are descriptors that return one of two callables
 * the guard made once: its "enter" (called with no arguments) and its "exit" (called with
 * exc_type, exc, tb).  Each does only its own job and checks its arguments, so
 * `guard.__exit__()` is a TypeError, never an acquire.  Each thread has its own guard per
 * adapter (kept in its shard), so none of these reference counts is contended, and the
 * statement allocates nothing.
 *
 * RLock's __enter__ and __exit__ are descriptors of the same type.  An RLock is shared by
 * threads, so callables made once per lock would share their reference counts; its
 * descriptors bind a new callable each time, as a C method would, but one the collector does
 * not track, and on GIL builds in the memory of the last one freed, which the lock keeps
 * (rlock.h): no allocation. */

/* A bound __enter__ / __exit__; also the class-level descriptors (lock NULL), which take the
 * guard or RLock as their first argument (contextlib.ExitStack calls them that way). */
typedef struct {
    PyObject_HEAD
    vectorcallfunc vectorcall;
    int is_exit;
    int of_rlock; /* RLock's: __enter__ returns True, __exit__ takes any arguments */
    rlock_object *lock; /* NULL for the class-level descriptor */
} guard_method;

typedef struct {
    PyObject_HEAD
    rlock_object *lock;
    guard_method *enter;
    guard_method *exit;
} lock_guard;

static void guard_dealloc(PyObject *op);

/* The lock a class-level descriptor acts on for `obj` (borrowed), or NULL with TypeError. */
static rlock_object *
lock_of(guard_method *self, PyObject *obj)
{
    if (self->of_rlock) {
        if (rlock_check(obj)) {
            return (rlock_object *)obj;
        }
    }
    else if (Py_TYPE(obj)->tp_dealloc == guard_dealloc) {
        return ((lock_guard *)obj)->lock;
    }
    PyErr_Format(PyExc_TypeError, "descriptor needs %s, not %.200s",
                 self->of_rlock ? "an RLock" : "an acquire_lock() guard", Py_TYPE(obj)->tp_name);
    return NULL;
}

static PyObject *
guard_method_vectorcall(PyObject *op, PyObject *const *args, size_t nargsf, PyObject *kwnames)
{
    guard_method *self = (guard_method *)op;
    Py_ssize_t nargs = PyVectorcall_NARGS(nargsf);
    rlock_object *lock = self->lock;
    Py_ssize_t expected = (self->is_exit ? 3 : 0) + (lock == NULL);
    const char *name = self->is_exit ? "__exit__" : "__enter__";
    if (kwnames != NULL && PyTuple_GET_SIZE(kwnames) != 0) {
        PyErr_Format(PyExc_TypeError, "%s() takes no keyword arguments", name);
        return NULL;
    }
    if (self->is_exit && self->of_rlock) {
        /* Any arguments, as threading.RLock's C __exit__ (and this type's before). */
        if (nargs < (lock == NULL)) {
            PyErr_SetString(PyExc_TypeError, "__exit__() needs an RLock as its first argument");
            return NULL;
        }
    }
    else if (nargs != expected) {
        PyErr_Format(PyExc_TypeError, "%s() takes %zd positional argument%s (%zd given)", name,
                     expected, expected == 1 ? "" : "s", nargs);
        return NULL;
    }
    if (lock == NULL && (lock = lock_of(self, args[0])) == NULL) {
        return NULL;
    }
    if (self->is_exit) {
        return rlock_release_to_none(lock);
    }
    if (snakepit_lock_acquire(&lock->lock, -1) < 0) {
        return NULL;
    }
    return Py_NewRef(self->of_rlock ? Py_True : Py_None);
}

static guard_method *
guard_method_new(PyTypeObject *type, rlock_object *lock, int is_exit, int of_rlock)
{
    guard_method *method = PyObject_New(guard_method, type);
    if (method == NULL) {
        return NULL;
    }
    method->vectorcall = guard_method_vectorcall;
    method->is_exit = is_exit;
    method->of_rlock = of_rlock;
    method->lock = (rlock_object *)Py_XNewRef(lock);
    return method;
}

/* A new bound __enter__ / __exit__ of an RLock, in its spare memory if it has some. */
static PyObject *
rlock_method_bind(PyTypeObject *type, rlock_object *lock, int is_exit)
{
    guard_method *method = rlock_spare_take(lock, is_exit);
    if (method == NULL) {
        return (PyObject *)guard_method_new(type, lock, is_exit, 1);
    }
    (void)PyObject_Init((PyObject *)method, type);
    method->vectorcall = guard_method_vectorcall;
    method->is_exit = is_exit;
    method->of_rlock = 1;
    method->lock = (rlock_object *)Py_NewRef(lock);
    return (PyObject *)method;
}

static PyObject *
guard_method_get(PyObject *op, PyObject *obj, PyObject *Py_UNUSED(type))
{
    guard_method *self = (guard_method *)op;
    if (self->lock != NULL || obj == NULL || obj == Py_None) {
        return Py_NewRef(op);
    }
    rlock_object *lock = lock_of(self, obj);
    if (lock == NULL) {
        return NULL;
    }
    if (self->of_rlock) {
        return rlock_method_bind(Py_TYPE(op), lock, self->is_exit);
    }
    lock_guard *guard = (lock_guard *)obj;
    return Py_NewRef((PyObject *)(self->is_exit ? guard->exit : guard->enter));
}

static void
guard_method_dealloc(PyObject *op)
{
    guard_method *self = (guard_method *)op;
    PyTypeObject *tp = Py_TYPE(op);
    rlock_object *lock = self->lock;
    /* A bound method of an RLock leaves its memory to the lock, if the lock has none spare;
     * it is the lock's from then on (another thread may take it at once). */
    if (!(self->of_rlock && lock != NULL && rlock_spare_put(lock, self->is_exit, op))) {
        PyObject_Free(op);
    }
    Py_DECREF(tp);
    Py_XDECREF(lock);
}

static PyObject *
guard_method_repr(PyObject *op)
{
    guard_method *self = (guard_method *)op;
    const char *name = self->is_exit ? "__exit__" : "__enter__";
    if (self->of_rlock) {
        if (self->lock == NULL) {
            return PyUnicode_FromFormat("<%s of RLock objects>", name);
        }
        return PyUnicode_FromFormat("<%s of RLock object at %p>", name, (void *)self->lock);
    }
    return PyUnicode_FromFormat("<%s of %s>", name,
                                self->lock != NULL ? "an acquire_lock() guard"
                                                   : "acquire_lock() guards");
}

static PyObject *
guard_method_name(PyObject *op, void *Py_UNUSED(closure))
{
    return PyUnicode_FromString(((guard_method *)op)->is_exit ? "__exit__" : "__enter__");
}

static PyGetSetDef guard_method_getset[] = {
    {"__name__", guard_method_name, NULL, NULL, NULL},
    {NULL, NULL, NULL, NULL, NULL},
};

static PyMemberDef guard_method_members[] = {
    {"__vectorcalloffset__", Py_T_PYSSIZET, offsetof(guard_method, vectorcall), Py_READONLY, NULL},
    {NULL, 0, 0, 0, NULL},
};

static PyType_Slot guard_method_slots[] = {
    {Py_tp_dealloc, guard_method_dealloc},
    {Py_tp_call, PyVectorcall_Call},
    {Py_tp_descr_get, guard_method_get},
    {Py_tp_repr, guard_method_repr},
    {Py_tp_members, guard_method_members},
    {Py_tp_getset, guard_method_getset},
    {0, NULL},
};

PyType_Spec snakepit_guard_method_spec = {
    .name = "snakepit_bridge._native._LockGuardMethod",
    .basicsize = sizeof(guard_method),
    .flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_IMMUTABLETYPE | Py_TPFLAGS_HAVE_VECTORCALL
             | Py_TPFLAGS_DISALLOW_INSTANTIATION,
    .slots = guard_method_slots,
};

PyObject *
lock_guard_new(snakepit_state *st, rlock_object *lock)
{
    lock_guard *self = PyObject_New(lock_guard, st->lock_guard_type);
    if (self == NULL) {
        return NULL;
    }
    self->lock = (rlock_object *)Py_NewRef(lock);
    self->enter = guard_method_new(st->guard_method_type, lock, 0, 0);
    self->exit = guard_method_new(st->guard_method_type, lock, 1, 0);
    if (self->enter == NULL || self->exit == NULL) {
        Py_DECREF(self);
        return NULL;
    }
    return (PyObject *)self;
}

static void
guard_dealloc(PyObject *op)
{
    lock_guard *self = (lock_guard *)op;
    PyTypeObject *tp = Py_TYPE(op);
    Py_XDECREF(self->enter);
    Py_XDECREF(self->exit);
    Py_XDECREF(self->lock);
    PyObject_Free(op);
    Py_DECREF(tp);
}

static PyType_Slot guard_slots[] = {
    {Py_tp_dealloc, guard_dealloc},
    {Py_tp_doc, "Context manager returned by ThreadSafeAdapter.acquire_lock()."},
    {0, NULL},
};

PyType_Spec snakepit_lock_guard_spec = {
    .name = "snakepit_bridge._native._LockGuard",
    .basicsize = sizeof(lock_guard),
    /* Made immutable once __enter__/__exit__ are installed (lock_guard_type_ready). */
    .flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_DISALLOW_INSTANTIATION,
    .slots = guard_slots,
};

static int
add_guard_method(snakepit_state *st, PyTypeObject *type, const char *name, int is_exit,
                 int of_rlock)
{
    guard_method *method = guard_method_new(st->guard_method_type, NULL, is_exit, of_rlock);
    if (method == NULL) {
        return -1;
    }
#if defined(Py_GIL_DISABLED) && PY_VERSION_HEX < 0x030E0000
    /* Every `with` looks these up on the type, which takes a reference to them: from every
     * thread, an atomic add on one cache line.  CPython 3.13t spares its own method
     * descriptors this (deferred reference counting, which 3.13t turns into immortality once
     * a second thread starts); these get the same, as decorated methods do (method.c).  They
     * live as long as their type does anyway. */
    method->ob_base.ob_ref_local = _Py_IMMORTAL_REFCNT_LOCAL;
    method->ob_base.ob_ref_shared = 0;
    method->ob_base.ob_tid = 0; /* unowned, as CPython leaves immortal objects */
#endif
    int r = PyObject_SetAttrString((PyObject *)type, name, (PyObject *)method);
    Py_DECREF(method);
    return r;
}

int
lock_guard_type_ready(snakepit_state *st)
{
    PyTypeObject *types[2] = {st->lock_guard_type, st->rlock_type};
    for (int of_rlock = 0; of_rlock < 2; of_rlock++) {
        PyTypeObject *type = types[of_rlock];
        if (add_guard_method(st, type, "__enter__", 0, of_rlock) < 0
            || add_guard_method(st, type, "__exit__", 1, of_rlock) < 0) {
            return -1;
        }
        type->tp_flags |= Py_TPFLAGS_IMMUTABLETYPE;
        PyType_Modified(type);
    }
    return 0;
}

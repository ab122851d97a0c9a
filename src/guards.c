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
 * statement allocates nothing. */

/* A guard's bound __enter__ / __exit__; also the class-level descriptors (lock NULL), which
 * take the guard as their first argument (contextlib.ExitStack calls them that way). */
typedef struct {
    PyObject_HEAD
    vectorcallfunc vectorcall;
    int is_exit;
    rlock_object *lock; /* NULL for the class-level descriptor */
} guard_method;

typedef struct {
    PyObject_HEAD
    rlock_object *lock;
    guard_method *enter;
    guard_method *exit;
} lock_guard;

static PyObject *
guard_enter(rlock_object *lock)
{
    if (snakepit_lock_acquire(&lock->lock, -1) < 0) {
        return NULL;
    }
    Py_RETURN_NONE;
}

static PyObject *
guard_method_vectorcall(PyObject *op, PyObject *const *args, size_t nargsf, PyObject *kwnames)
{
    guard_method *self = (guard_method *)op;
    Py_ssize_t nargs = PyVectorcall_NARGS(nargsf);
    rlock_object *lock = self->lock;
    Py_ssize_t expected = (self->is_exit ? 3 : 0) + (lock == NULL);
    if ((kwnames != NULL && PyTuple_GET_SIZE(kwnames) != 0) || nargs != expected) {
        PyErr_Format(PyExc_TypeError, "%s() takes %zd positional argument%s (%zd given)",
                     self->is_exit ? "__exit__" : "__enter__", expected, expected == 1 ? "" : "s",
                     nargs);
        return NULL;
    }
    if (lock == NULL) {
        snakepit_state *st = PyType_GetModuleState(Py_TYPE(op));
        if (st == NULL) {
            return NULL;
        }
        if (!PyObject_TypeCheck(args[0], st->lock_guard_type)) {
            PyErr_Format(PyExc_TypeError, "descriptor needs an acquire_lock() guard, not %.200s",
                         Py_TYPE(args[0])->tp_name);
            return NULL;
        }
        lock = ((lock_guard *)args[0])->lock;
    }
    return self->is_exit ? rlock_release_to_none(lock) : guard_enter(lock);
}

static PyObject *
guard_method_get(PyObject *op, PyObject *obj, PyObject *Py_UNUSED(type))
{
    guard_method *self = (guard_method *)op;
    if (self->lock != NULL || obj == NULL || obj == Py_None) {
        return Py_NewRef(op);
    }
    snakepit_state *st = PyType_GetModuleState(Py_TYPE(op));
    if (st == NULL) {
        return NULL;
    }
    if (!PyObject_TypeCheck(obj, st->lock_guard_type)) {
        PyErr_Format(PyExc_TypeError, "descriptor needs an acquire_lock() guard, not %.200s",
                     Py_TYPE(obj)->tp_name);
        return NULL;
    }
    lock_guard *guard = (lock_guard *)obj;
    return Py_NewRef((PyObject *)(self->is_exit ? guard->exit : guard->enter));
}

static guard_method *
guard_method_new(PyTypeObject *type, rlock_object *lock, int is_exit)
{
    guard_method *method = PyObject_New(guard_method, type);
    if (method == NULL) {
        return NULL;
    }
    method->vectorcall = guard_method_vectorcall;
    method->is_exit = is_exit;
    method->lock = (rlock_object *)Py_XNewRef(lock);
    return method;
}

static void
guard_method_dealloc(PyObject *op)
{
    PyTypeObject *tp = Py_TYPE(op);
    Py_XDECREF(((guard_method *)op)->lock);
    PyObject_Free(op);
    Py_DECREF(tp);
}

static PyObject *
guard_method_repr(PyObject *op)
{
    guard_method *self = (guard_method *)op;
    return PyUnicode_FromFormat("<%s of %s>", self->is_exit ? "__exit__" : "__enter__",
                                self->lock != NULL ? "an acquire_lock() guard"
                                                   : "acquire_lock() guards");
}

static PyMemberDef guard_method_members[] = {
    {"__vectorcalloffset__", Py_T_PYSSIZET, offsetof(guard_method, vectorcall), Py_READONLY, NULL},
    {NULL, 0, 0, 0, NULL},
};

static PyType_Slot guard_method_slots[] = {
    {Py_tp_dealloc, guard_method_dealloc}, {Py_tp_call, PyVectorcall_Call},
    {Py_tp_descr_get, guard_method_get},   {Py_tp_repr, guard_method_repr},
    {Py_tp_members, guard_method_members}, {0, NULL},
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
    self->enter = guard_method_new(st->guard_method_type, lock, 0);
    self->exit = guard_method_new(st->guard_method_type, lock, 1);
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
add_guard_method(snakepit_state *st, const char *name, int is_exit)
{
    guard_method *method = guard_method_new(st->guard_method_type, NULL, is_exit);
    if (method == NULL) {
        return -1;
    }
    int r = PyObject_SetAttrString((PyObject *)st->lock_guard_type, name, (PyObject *)method);
    Py_DECREF(method);
    return r;
}

int
lock_guard_type_ready(snakepit_state *st)
{
    if (add_guard_method(st, "__enter__", 0) < 0 || add_guard_method(st, "__exit__", 1) < 0) {
        return -1;
    }
    st->lock_guard_type->tp_flags |= Py_TPFLAGS_IMMUTABLETYPE;
    PyType_Modified(st->lock_guard_type);
    return 0;
}

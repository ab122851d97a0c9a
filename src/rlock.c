/* Native reentrant lock.  See rlock.h. */
#include "rlock.h"

#include "shards.h"

#include <math.h>

/* ---------------------------------------------------------------- core */

static int
acquire_slow(rlock_object *self, int64_t timeout_us)
{
    uint64_t deadline = timeout_us > 0 ? snakepit_mono_ns() + (uint64_t)timeout_us * 1000u : 0;
    for (;;) {
        PyLockStatus status;
        Py_BEGIN_ALLOW_THREADS
        status = PyThread_acquire_lock_timed(self->lock, (PY_TIMEOUT_T)timeout_us, 1);
        Py_END_ALLOW_THREADS
        if (status == PY_LOCK_ACQUIRED) {
            return 1;
        }
        if (status == PY_LOCK_FAILURE) {
            return 0;
        }
        /* Interrupted by a signal: run the Python handlers, which may raise
         * (KeyboardInterrupt), then wait for whatever time is left. */
        if (PyErr_CheckSignals() < 0) {
            return -1;
        }
        if (timeout_us > 0) {
            uint64_t now = snakepit_mono_ns();
            timeout_us = now >= deadline ? 0 : (int64_t)((deadline - now + 999u) / 1000u);
        }
    }
}

/* Adapter locks guard short sections (update a counter, append a record).  When one is
 * busy, it is usually free again within a few hundred ns, far less than the cost of
 * detaching and sleeping in the kernel and being woken: so watch it briefly first, with a
 * relaxed read between tries so waiting cores do not bounce the lock's cache line. */
#define SNAKEPIT_SPIN_TRIES 200

static int
acquire_spin(rlock_object *self)
{
    for (int i = 0; i < SNAKEPIT_SPIN_TRIES; i++) {
#if defined(__x86_64__) || defined(__i386__)
        __builtin_ia32_pause();
#elif defined(__aarch64__)
        __asm__ __volatile__("yield");
#endif
        if (atomic_load_explicit(&self->owner, RELAXED) == 0
            && PyThread_acquire_lock_timed(self->lock, 0, 0) == PY_LOCK_ACQUIRED) {
            return 1;
        }
    }
    return 0;
}

int
rlock_acquire(rlock_object *self, int64_t timeout_us)
{
    unsigned long me = PyThread_get_thread_ident();
    if (atomic_load_explicit(&self->owner, RELAXED) == me) {
        unsigned long level = atomic_load_explicit(&self->level, RELAXED);
        if (level == ULONG_MAX) {
            PyErr_SetString(PyExc_OverflowError, "internal lock count overflowed");
            return -1;
        }
        atomic_store_explicit(&self->level, level + 1, RELAXED);
        return 1;
    }
    if (PyThread_acquire_lock_timed(self->lock, 0, 0) != PY_LOCK_ACQUIRED) {
        if (timeout_us == 0) {
            return 0;
        }
        if (!acquire_spin(self)) {
            int r = acquire_slow(self, timeout_us);
            if (r <= 0) {
                return r;
            }
        }
    }
    atomic_store_explicit(&self->owner, me, RELAXED);
    atomic_store_explicit(&self->level, 1, RELAXED);
    return 1;
}

int
rlock_release(rlock_object *self)
{
    /* The owner test comes first: only the owner may read `level` meaningfully. */
    if (atomic_load_explicit(&self->owner, RELAXED) != PyThread_get_thread_ident()
        || atomic_load_explicit(&self->level, RELAXED) == 0) {
        PyErr_SetString(PyExc_RuntimeError, "cannot release un-acquired lock");
        return -1;
    }
    unsigned long level = atomic_load_explicit(&self->level, RELAXED) - 1;
    atomic_store_explicit(&self->level, level, RELAXED);
    if (level == 0) {
        atomic_store_explicit(&self->owner, 0, RELAXED);
        PyThread_release_lock(self->lock);
    }
    return 0;
}

int
snakepit_parse_timeout(PyObject *obj, int allow_none, int64_t *timeout_us)
{
    if (obj == NULL || (allow_none && obj == Py_None)) {
        *timeout_us = -1;
        return 0;
    }
    double seconds = PyFloat_AsDouble(obj);
    if (seconds == -1.0 && PyErr_Occurred()) {
        return -1;
    }
    if (isnan(seconds)) {
        PyErr_SetString(PyExc_ValueError, "timeout must not be NaN");
        return -1;
    }
    if (!allow_none && seconds == -1.0) {
        *timeout_us = -1;  /* threading's "wait forever" */
        return 0;
    }
    if (seconds < 0) {
        PyErr_SetString(PyExc_ValueError,
                        allow_none ? "timeout must be None or a non-negative number"
                                   : "timeout value must be a non-negative number");
        return -1;
    }
    double us = ceil(seconds * 1e6);
    if (!(us <= (double)PY_TIMEOUT_MAX)) {
        PyErr_SetString(PyExc_OverflowError, "timeout value is too large");
        return -1;
    }
    *timeout_us = (int64_t)us;
    return 0;
}

/* ---------------------------------------------------------------- type */

rlock_object *
rlock_new(snakepit_state *st)
{
    rlock_object *self = (rlock_object *)st->rlock_type->tp_alloc(st->rlock_type, 0);
    if (self == NULL) {
        return NULL;
    }
    self->lock = PyThread_allocate_lock();
    if (self->lock == NULL) {
        Py_DECREF(self);
        PyErr_SetString(PyExc_MemoryError, "cannot allocate lock");
        return NULL;
    }
    self->state = st;
    registry_lock(st);
    self->reg_next = st->registry.locks;
    if (self->reg_next != NULL) {
        self->reg_next->reg_prev = self;
    }
    st->registry.locks = self;
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
        registry_lock(st);
        if (self->reg_prev != NULL) {
            self->reg_prev->reg_next = self->reg_next;
        }
        else {
            st->registry.locks = self->reg_next;
        }
        if (self->reg_next != NULL) {
            self->reg_next->reg_prev = self->reg_prev;
        }
        registry_unlock(st);
    }
    if (self->lock != NULL) {
        if (atomic_load_explicit(&self->owner, RELAXED) != 0) {
            PyThread_release_lock(self->lock);  /* freeing a held lock is undefined */
        }
        PyThread_free_lock(self->lock);
    }
    tp->tp_free(op);
    Py_DECREF(tp);
}

static PyObject *
rlock_py_acquire(PyObject *op, PyObject *args, PyObject *kwargs)
{
    static char *kwlist[] = {"blocking", "timeout", NULL};
    int blocking = 1;
    PyObject *timeout_obj = NULL;
    if (!PyArg_ParseTupleAndKeywords(args, kwargs, "|pO:acquire", kwlist, &blocking, &timeout_obj)) {
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
    int r = rlock_acquire((rlock_object *)op, timeout_us);
    if (r < 0) {
        return NULL;
    }
    return PyBool_FromLong(r);
}

static PyObject *
rlock_py_enter(PyObject *op, PyObject *Py_UNUSED(ignored))
{
    if (rlock_acquire((rlock_object *)op, -1) < 0) {
        return NULL;
    }
    Py_RETURN_TRUE;
}

/* release() and every __exit__: None (falsy, so exceptions from a `with` body propagate), or
 * NULL with the RuntimeError of a release by a thread that does not own the lock. */
static PyObject *
release_to_none(rlock_object *lock)
{
    if (rlock_release(lock) < 0) {
        return NULL;
    }
    Py_RETURN_NONE;
}

static PyObject *
rlock_py_release(PyObject *op, PyObject *Py_UNUSED(ignored))
{
    return release_to_none((rlock_object *)op);
}

static PyObject *
rlock_py_exit(PyObject *op, PyObject *const *Py_UNUSED(args), Py_ssize_t Py_UNUSED(nargs))
{
    return release_to_none((rlock_object *)op);
}

static PyObject *
rlock_py_locked(PyObject *op, PyObject *Py_UNUSED(ignored))
{
    rlock_object *self = (rlock_object *)op;
    return PyBool_FromLong(atomic_load_explicit(&self->owner, RELAXED) != 0);
}

static PyObject *
rlock_py_is_owned(PyObject *op, PyObject *Py_UNUSED(ignored))
{
    rlock_object *self = (rlock_object *)op;
    return PyBool_FromLong(rlock_is_owned(self) && atomic_load_explicit(&self->level, RELAXED) > 0);
}

static PyObject *
rlock_py_recursion_count(PyObject *op, PyObject *Py_UNUSED(ignored))
{
    rlock_object *self = (rlock_object *)op;
    return PyLong_FromUnsignedLong(rlock_is_owned(self) ? atomic_load_explicit(&self->level, RELAXED) : 0);
}

/* threading.Condition support: release completely and return the state to restore. */
static PyObject *
rlock_py_release_save(PyObject *op, PyObject *Py_UNUSED(ignored))
{
    rlock_object *self = (rlock_object *)op;
    if (!rlock_is_owned(self) || atomic_load_explicit(&self->level, RELAXED) == 0) {
        PyErr_SetString(PyExc_RuntimeError, "cannot release un-acquired lock");
        return NULL;
    }
    unsigned long level = atomic_load_explicit(&self->level, RELAXED);
    unsigned long owner = atomic_load_explicit(&self->owner, RELAXED);
    PyObject *saved = Py_BuildValue("(kk)", level, owner);
    if (saved == NULL) {
        return NULL;
    }
    atomic_store_explicit(&self->level, 0, RELAXED);
    atomic_store_explicit(&self->owner, 0, RELAXED);
    PyThread_release_lock(self->lock);
    return saved;
}

static PyObject *
rlock_py_acquire_restore(PyObject *op, PyObject *state)
{
    rlock_object *self = (rlock_object *)op;
    if (!PyTuple_Check(state) || PyTuple_GET_SIZE(state) != 2) {
        PyErr_Format(PyExc_TypeError, "_acquire_restore() needs the (count, owner) tuple "
                     "from _release_save(), not %.200s", Py_TYPE(state)->tp_name);
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
        PyErr_SetString(PyExc_ValueError, "_acquire_restore() needs the state from _release_save()");
        return NULL;
    }
    unsigned long level = (unsigned long)count;
    if (PyThread_acquire_lock_timed(self->lock, 0, 0) != PY_LOCK_ACQUIRED) {
        /* Not interruptible, like CPython's: Condition.wait() must return holding the
         * lock even when a signal handler raises while it waits to get it back. */
        Py_BEGIN_ALLOW_THREADS
        (void)PyThread_acquire_lock_timed(self->lock, -1, 0);
        Py_END_ALLOW_THREADS
    }
    atomic_store_explicit(&self->owner, owner, RELAXED);
    atomic_store_explicit(&self->level, level, RELAXED);
    Py_RETURN_NONE;
}

static PyObject *
rlock_repr(PyObject *op)
{
    rlock_object *self = (rlock_object *)op;
    unsigned long owner = atomic_load_explicit(&self->owner, RELAXED);
    unsigned long level = atomic_load_explicit(&self->level, RELAXED);
    return PyUnicode_FromFormat("<%s %s object owner=%lu count=%lu at %p>",
                                owner ? "locked" : "unlocked", Py_TYPE(op)->tp_name,
                                owner, owner ? level : 0ul, op);
}

static PyMethodDef rlock_methods[] = {
    {"acquire", (PyCFunction)(void (*)(void))rlock_py_acquire, METH_VARARGS | METH_KEYWORDS,
     "acquire(blocking=True, timeout=-1) -> bool\n\nAcquire the lock, reentrantly."},
    {"release", rlock_py_release, METH_NOARGS,
     "Release the lock once; RuntimeError if the caller does not own it."},
    {"locked", rlock_py_locked, METH_NOARGS, "True if any thread holds the lock."},
    {"__enter__", rlock_py_enter, METH_NOARGS, "Acquire the lock (blocking)."},
    {"__exit__", (PyCFunction)(void (*)(void))rlock_py_exit, METH_FASTCALL, "Release the lock."},
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
    {Py_tp_doc,
     "RLock()\n--\n\nReentrant lock with the threading.RLock contract, usable by "
     "threading.Condition.\nEvery ThreadSafeAdapter owns one (adapter.lock)."},
    {0, NULL},
};

PyType_Spec snakepit_rlock_spec = {
    .name = "snakepit_bridge._native.RLock",
    .basicsize = sizeof(rlock_object),
    .flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_IMMUTABLETYPE,
    .slots = rlock_slots,
};

void
rlocks_after_fork_child(snakepit_state *st)
{
    unsigned long me = PyThread_get_thread_ident();
    registry_lock(st);
    for (rlock_object *lock = st->registry.locks; lock != NULL; lock = lock->reg_next) {
        if (atomic_load_explicit(&lock->owner, RELAXED) == me) {
            continue;
        }
        /* Held by a thread that does not exist here (or in the middle of being taken):
         * whatever its state, leave it released. */
        (void)PyThread_acquire_lock_timed(lock->lock, 0, 0);
        atomic_store_explicit(&lock->owner, 0, RELAXED);
        atomic_store_explicit(&lock->level, 0, RELAXED);
        PyThread_release_lock(lock->lock);
    }
    registry_unlock(st);
}

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
    PyObject *frames = PySys_GetObject("_current_frames");  /* borrowed */
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
        return PyUnicode_FromFormat("thread ident %lu, which has ended without releasing it", ident);
    }
    return PyUnicode_FromFormat("thread ident %lu", ident);
}

static PyObject *
timed_guard_enter(PyObject *op, PyObject *Py_UNUSED(ignored))
{
    timed_guard *self = (timed_guard *)op;
    int r = rlock_acquire(self->lock, self->timeout_us);
    if (r < 0) {
        return NULL;
    }
    if (r == 0) {
        unsigned long owner = atomic_load_explicit(&self->lock->owner, RELAXED);
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
    return release_to_none(((timed_guard *)op)->lock);
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
    rlock_object *lock;          /* NULL for the class-level descriptor */
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
    if (rlock_acquire(lock, -1) < 0) {
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
    return self->is_exit ? release_to_none(lock) : guard_enter(lock);
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
                                self->lock != NULL ? "an acquire_lock() guard" : "acquire_lock() guards");
}

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

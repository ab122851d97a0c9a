/* The reentrant lock primitive.  See lock.h. */
#include "lock.h"

#include "clock.h"

#include <math.h>

int
snakepit_lock_init(snakepit_lock *lock)
{
    atomic_store_explicit(&lock->owner, 0, SNAKEPIT_RELAXED);
    atomic_store_explicit(&lock->level, 0, SNAKEPIT_RELAXED);
    lock->handle = PyThread_allocate_lock();
    if (lock->handle == NULL) {
        PyErr_SetString(PyExc_MemoryError, "cannot allocate lock");
        return -1;
    }
    return 0;
}

void
snakepit_lock_fini(snakepit_lock *lock)
{
    if (lock->handle == NULL) {
        return;
    }
    if (snakepit_lock_owner(lock) != 0) {
        PyThread_release_lock(lock->handle); /* freeing a held lock is undefined */
    }
    PyThread_free_lock(lock->handle);
    lock->handle = NULL;
}

static int
acquire_blocking(snakepit_lock *lock, int64_t timeout_us)
{
    uint64_t deadline = timeout_us > 0 ? snakepit_mono_ns() + (uint64_t)timeout_us * 1000u : 0;
    for (;;) {
        PyLockStatus status;
        Py_BEGIN_ALLOW_THREADS
        status = PyThread_acquire_lock_timed(lock->handle, (PY_TIMEOUT_T)timeout_us, 1);
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

/* Adapter locks guard short sections (update a counter, append a record).  When one is busy,
 * it is usually free again within a few hundred ns, far less than the cost of detaching,
 * sleeping in the kernel and being woken: so watch it briefly first, with a relaxed read
 * between tries so waiting cores do not bounce the lock's cache line. */
#define SNAKEPIT_LOCK_SPIN_TRIES 200

static int
acquire_spinning(snakepit_lock *lock)
{
    for (int i = 0; i < SNAKEPIT_LOCK_SPIN_TRIES; i++) {
        snakepit_cpu_relax();
        if (snakepit_lock_owner(lock) == 0
            && PyThread_acquire_lock_timed(lock->handle, 0, 0) == PY_LOCK_ACQUIRED) {
            return 1;
        }
    }
    return 0;
}

int
snakepit_lock_acquire(snakepit_lock *lock, int64_t timeout_us)
{
    unsigned long me = PyThread_get_thread_ident();
    if (snakepit_lock_owner(lock) == me) {
        unsigned long level = atomic_load_explicit(&lock->level, SNAKEPIT_RELAXED);
        assert(level > 0);
        if (level == ULONG_MAX) {
            PyErr_SetString(PyExc_OverflowError, "internal lock count overflowed");
            return -1;
        }
        atomic_store_explicit(&lock->level, level + 1, SNAKEPIT_RELAXED);
        return 1;
    }
    if (PyThread_acquire_lock_timed(lock->handle, 0, 0) != PY_LOCK_ACQUIRED) {
        if (timeout_us == 0) {
            return 0;
        }
        if (!acquire_spinning(lock)) {
            int r = acquire_blocking(lock, timeout_us);
            if (r <= 0) {
                return r;
            }
        }
    }
    assert(snakepit_lock_owner(lock) == 0);
    atomic_store_explicit(&lock->owner, me, SNAKEPIT_RELAXED);
    atomic_store_explicit(&lock->level, 1, SNAKEPIT_RELAXED);
    return 1;
}

int
snakepit_lock_release(snakepit_lock *lock)
{
    /* The owner test comes first: only the owner may read `level` meaningfully. */
    if (snakepit_lock_owner(lock) != PyThread_get_thread_ident()) {
        PyErr_SetString(PyExc_RuntimeError, "cannot release un-acquired lock");
        return -1;
    }
    unsigned long level = atomic_load_explicit(&lock->level, SNAKEPIT_RELAXED);
    assert(level > 0);
    atomic_store_explicit(&lock->level, level - 1, SNAKEPIT_RELAXED);
    if (level == 1) {
        atomic_store_explicit(&lock->owner, 0, SNAKEPIT_RELAXED);
        PyThread_release_lock(lock->handle);
    }
    return 0;
}

int
snakepit_lock_release_save(snakepit_lock *lock, unsigned long *level, unsigned long *owner)
{
    if (!snakepit_lock_is_owned(lock)) {
        PyErr_SetString(PyExc_RuntimeError, "cannot release un-acquired lock");
        return -1;
    }
    *level = atomic_load_explicit(&lock->level, SNAKEPIT_RELAXED);
    *owner = snakepit_lock_owner(lock);
    atomic_store_explicit(&lock->level, 0, SNAKEPIT_RELAXED);
    atomic_store_explicit(&lock->owner, 0, SNAKEPIT_RELAXED);
    PyThread_release_lock(lock->handle);
    return 0;
}

void
snakepit_lock_acquire_restore(snakepit_lock *lock, unsigned long level, unsigned long owner)
{
    assert(level > 0 && owner != 0);
    if (PyThread_acquire_lock_timed(lock->handle, 0, 0) != PY_LOCK_ACQUIRED) {
        Py_BEGIN_ALLOW_THREADS(void)
        PyThread_acquire_lock_timed(lock->handle, -1, 0);
        Py_END_ALLOW_THREADS
    }
    assert(snakepit_lock_owner(lock) == 0);
    atomic_store_explicit(&lock->owner, owner, SNAKEPIT_RELAXED);
    atomic_store_explicit(&lock->level, level, SNAKEPIT_RELAXED);
}

void
snakepit_lock_forget_other_owner(snakepit_lock *lock, unsigned long survivor)
{
    if (snakepit_lock_owner(lock) == survivor) {
        return;
    }
    /* Held by a thread that does not exist here (or in the middle of being taken): whatever
     * its state, leave it released. */
    (void)PyThread_acquire_lock_timed(lock->handle, 0, 0);
    atomic_store_explicit(&lock->owner, 0, SNAKEPIT_RELAXED);
    atomic_store_explicit(&lock->level, 0, SNAKEPIT_RELAXED);
    PyThread_release_lock(lock->handle);
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
        *timeout_us = -1; /* threading's "wait forever" */
        return 0;
    }
    if (seconds < 0) {
        PyErr_SetString(PyExc_ValueError, allow_none
                                              ? "timeout must be None or a non-negative number"
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

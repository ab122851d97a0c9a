/* The reentrant lock primitive.  See lock.h. */
#include "lock.h"

#include "clock.h"

#include <math.h>

int
snakepit_lock_init(snakepit_lock *lock)
{
    atomic_store_explicit(&lock->owner, 0, SNAKEPIT_RELAXED);
    atomic_store_explicit(&lock->level, 0, SNAKEPIT_RELAXED);
#ifndef Py_GIL_DISABLED
    lock->waiters = 0;
    lock->epoch = 0;
    lock->handle_held = 0;
#endif
    lock->handle = PyThread_allocate_lock();
    if (lock->handle == NULL) {
        PyErr_SetString(PyExc_MemoryError, "cannot allocate lock");
        return -1;
    }
    return 0;
}

/* Whether the handle is taken (for the owner, or by a thread about to own the lock). */
static int
handle_taken(const snakepit_lock *lock)
{
#ifdef Py_GIL_DISABLED
    return snakepit_lock_owner(lock) != 0;
#else
    return lock->handle_held;
#endif
}

void
snakepit_lock_fini(snakepit_lock *lock)
{
    if (lock->handle == NULL) {
        return;
    }
    if (handle_taken(lock)) {
        PyThread_release_lock(lock->handle); /* freeing a held lock is undefined */
    }
    PyThread_free_lock(lock->handle);
    lock->handle = NULL;
}

/* Wait for the handle, detached from the interpreter.  timeout_us: -1 forever, else > 0.
 * interruptible: run the Python signal handlers when a signal interrupts the wait (they may
 * raise: KeyboardInterrupt), then go on waiting for whatever time is left; otherwise signals
 * do not end the wait.  1 acquired, 0 timed out, -1 a signal handler raised. */
static int
wait_for_handle(snakepit_lock *lock, int64_t timeout_us, int interruptible)
{
    uint64_t deadline = timeout_us > 0 ? snakepit_mono_ns() + (uint64_t)timeout_us * 1000u : 0;
    for (;;) {
        PyLockStatus status;
        Py_BEGIN_ALLOW_THREADS
        status = PyThread_acquire_lock_timed(lock->handle, (PY_TIMEOUT_T)timeout_us, interruptible);
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

static int
try_handle(snakepit_lock *lock)
{
    return PyThread_acquire_lock_timed(lock->handle, 0, 0) == PY_LOCK_ACQUIRED;
}

#ifdef Py_GIL_DISABLED

/* Adapter locks guard short sections (update a counter, append a record).  When one is busy,
 * it is usually free again within a few hundred ns, far less than the cost of detaching,
 * sleeping in the kernel and being woken: so watch it briefly first, with a relaxed read
 * between tries so waiting cores do not bounce the lock's cache line. */
#  define SNAKEPIT_LOCK_SPIN_TRIES 200

static int
acquire_spinning(snakepit_lock *lock)
{
    for (int i = 0; i < SNAKEPIT_LOCK_SPIN_TRIES; i++) {
        snakepit_cpu_relax();
        if (snakepit_lock_owner(lock) == 0 && try_handle(lock)) {
            return 1;
        }
    }
    return 0;
}

/* Take the handle for a new owner: 1, 0 timed out, -1 error.  The caller does not own the
 * lock. */
static int
acquire_handle(snakepit_lock *lock, int64_t timeout_us, int interruptible)
{
    if (try_handle(lock)) {
        return 1;
    }
    if (timeout_us == 0) {
        return 0;
    }
    if (acquire_spinning(lock)) {
        return 1;
    }
    return wait_for_handle(lock, timeout_us, interruptible);
}

#else /* GIL builds */

/* What the functions below rely on whenever they hold the GIL.  (No spinning here: the owner
 * cannot release while the waiter holds the GIL.) */
static void
check_invariants(const snakepit_lock *lock)
{
    (void)lock;
    assert(PyGILState_Check());
    assert(snakepit_lock_owner(lock) != 0 || !lock->handle_held);
    assert(snakepit_lock_owner(lock) == 0 || lock->waiters == 0 || lock->handle_held);
}

/* The lock is owned, or a thread waits for it: the contended path.  Take the handle for a new
 * owner (the caller, who does not own the lock): 1, 0 timed out, -1 error.  On 1 the lock is
 * free and its handle is the caller's. */
static int
acquire_handle(snakepit_lock *lock, int64_t timeout_us, int interruptible)
{
    check_invariants(lock);
    if (timeout_us == 0) {
        /* Owned: fail.  Free, with waiters: the last owner freed the handle, and unless one of
         * them has taken it since, it is ours. */
        return snakepit_lock_owner(lock) == 0 && try_handle(lock);
    }
    uint64_t deadline = timeout_us > 0 ? snakepit_mono_ns() + (uint64_t)timeout_us * 1000u : 0;
    for (;;) {
        /* Counted before the first try: from here on no thread takes the lock without the
         * handle.  The epoch tells whether a forked child has forgotten this count since (a
         * signal handler run by our wait may fork). */
        unsigned int epoch = lock->epoch;
        lock->waiters++;
        int r = try_handle(lock) ? 1 : wait_for_handle(lock, timeout_us, interruptible);
        if (lock->epoch == epoch) {
            assert(lock->waiters > 0);
            lock->waiters--;
        }
        if (r <= 0) {
            check_invariants(lock);
            return r;
        }
        if (snakepit_lock_owner(lock) == 0) {
            assert(!lock->handle_held);
            return 1;
        }
        /* The owner took the lock without the handle: so the handle was free, and we hold it
         * now, on the owner's behalf.  Its last release frees it, which wakes us.  (This is
         * how the first thread that must wait finds an uncontended owner.  Later ones find
         * the handle held; after a forked child forgot this wait, a new owner may have taken
         * the lock without the handle while we were handed it.) */
        assert(!lock->handle_held);
        lock->handle_held = 1;
        if (timeout_us > 0) {
            uint64_t now = snakepit_mono_ns();
            if (now >= deadline) {
                return 0;
            }
            timeout_us = (int64_t)((deadline - now + 999u) / 1000u);
        }
    }
}

#endif /* GIL builds */

static int
acquire_reentrant(snakepit_lock *lock)
{
    unsigned long level = atomic_load_explicit(&lock->level, SNAKEPIT_RELAXED);
    assert(level > 0);
    if (level == ULONG_MAX) {
        PyErr_SetString(PyExc_OverflowError, "internal lock count overflowed");
        return -1;
    }
    atomic_store_explicit(&lock->level, level + 1, SNAKEPIT_RELAXED);
    return 1;
}

/* The caller has just taken the handle of a free lock. */
static void
set_owner(snakepit_lock *lock, unsigned long owner, unsigned long level)
{
    assert(snakepit_lock_owner(lock) == 0);
#ifndef Py_GIL_DISABLED
    assert(!lock->handle_held);
    lock->handle_held = 1;
#endif
    atomic_store_explicit(&lock->owner, owner, SNAKEPIT_RELAXED);
    atomic_store_explicit(&lock->level, level, SNAKEPIT_RELAXED);
}

int
snakepit_lock_acquire(snakepit_lock *lock, int64_t timeout_us)
{
    unsigned long me = PyThread_get_thread_ident();
    unsigned long owner = snakepit_lock_owner(lock);
    if (owner == me) {
        return acquire_reentrant(lock);
    }
#ifndef Py_GIL_DISABLED
    if (owner == 0 && lock->waiters == 0) {
        /* Free and nobody waiting: so the handle is free too, and stays so until a second
         * thread must wait, which takes it on our behalf. */
        check_invariants(lock);
        atomic_store_explicit(&lock->owner, me, SNAKEPIT_RELAXED);
        atomic_store_explicit(&lock->level, 1, SNAKEPIT_RELAXED);
        return 1;
    }
#endif
    int r = acquire_handle(lock, timeout_us, 1);
    if (r <= 0) {
        return r;
    }
    set_owner(lock, me, 1);
    return 1;
}

/* Make the lock free (the caller owns it, at any level). */
static void
release_fully(snakepit_lock *lock)
{
    atomic_store_explicit(&lock->level, 0, SNAKEPIT_RELAXED);
    atomic_store_explicit(&lock->owner, 0, SNAKEPIT_RELAXED);
#ifndef Py_GIL_DISABLED
    if (!lock->handle_held) {
        return; /* taken without the handle, and nobody came to wait */
    }
    lock->handle_held = 0;
#endif
    PyThread_release_lock(lock->handle);
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
    if (level > 1) {
        atomic_store_explicit(&lock->level, level - 1, SNAKEPIT_RELAXED);
        return 0;
    }
    release_fully(lock);
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
    release_fully(lock);
    return 0;
}

void
snakepit_lock_acquire_restore(snakepit_lock *lock, unsigned long level, unsigned long owner)
{
    assert(level > 0 && owner != 0);
#ifndef Py_GIL_DISABLED
    if (snakepit_lock_owner(lock) == 0 && lock->waiters == 0) {
        check_invariants(lock);
        atomic_store_explicit(&lock->owner, owner, SNAKEPIT_RELAXED);
        atomic_store_explicit(&lock->level, level, SNAKEPIT_RELAXED);
        return;
    }
#endif
    /* Uninterruptible and without a timeout: it cannot fail. */
    int r = acquire_handle(lock, -1, 0);
    assert(r == 1);
    (void)r;
    set_owner(lock, owner, level);
}

void
snakepit_lock_forget_other_owner(snakepit_lock *lock, unsigned long survivor)
{
#ifndef Py_GIL_DISABLED
    /* The threads that were waiting do not exist here.  (The survivor may be one of them, if a
     * signal handler run by its wait forked: the epoch keeps it from uncounting itself.) */
    lock->waiters = 0;
    lock->epoch++;
    if (snakepit_lock_owner(lock) == survivor) {
        return; /* the handle is held for it exactly when handle_held says so */
    }
    /* Free, or owned by a thread that does not exist here; the handle may be held for that
     * owner, or by a waiter that had been handed it: leave it released. */
    (void)try_handle(lock);
    atomic_store_explicit(&lock->owner, 0, SNAKEPIT_RELAXED);
    atomic_store_explicit(&lock->level, 0, SNAKEPIT_RELAXED);
    lock->handle_held = 0;
    PyThread_release_lock(lock->handle);
#else
    if (snakepit_lock_owner(lock) == survivor) {
        return;
    }
    /* Held by a thread that does not exist here (or in the middle of being taken): whatever
     * its state, leave it released. */
    (void)try_handle(lock);
    atomic_store_explicit(&lock->owner, 0, SNAKEPIT_RELAXED);
    atomic_store_explicit(&lock->level, 0, SNAKEPIT_RELAXED);
    PyThread_release_lock(lock->handle);
#endif
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

/* The reentrant lock primitive under RLock and every adapter's acquire_lock().
 *
 * The design of CPython 3.13's own threading.RLock (and nascheme/py_rlock): a PyThread lock
 * (the handle), an owner ident that other threads read atomically, and a recursion level that
 * only the owner touches.  Not a critical section: user code holds it across arbitrary Python
 * calls, and a critical section would be suspended whenever that code blocks.  A contended
 * acquire waits detached from the interpreter (other threads, signal handlers and the GC keep
 * running), interruptibly.
 *
 * Free-threaded builds: the handle is taken by every owner.  Uncontended acquire is one
 * non-blocking try; a contended one spins briefly, then waits.
 *
 * GIL builds: the GIL orders every access to the fields, so an uncontended acquire only
 * records the owner and level, without the handle (the design of fastrlock).  The handle is
 * taken only once a second thread must wait: that thread takes it on the owner's behalf
 * (`handle_held`), then waits for it; the owner's last release frees it, which wakes the
 * waiter.  While any thread waits (`waiters` > 0) every acquire goes through the handle, so a
 * thread that has just been handed the handle finds the lock free.  Every test of the fields
 * and the write that depends on it run without anything in between that could release the
 * GIL or run Python code.
 *
 * Invariants (asserted in debug builds): owner == 0 exactly when the lock is free; level > 0
 * while owned; only the owner changes level or releases.  GIL builds: a free lock's handle is
 * not held for it (handle_held == 0), and while it is owned and a thread waits the handle is
 * held for the owner. */
#ifndef SNAKEPIT_LOCK_H
#define SNAKEPIT_LOCK_H

#include "compat.h"

typedef struct {
    PyThread_type_lock handle;
    _Atomic unsigned long owner; /* 0 when free */
    _Atomic unsigned long level; /* written by the owner only */
#ifndef Py_GIL_DISABLED
    /* Ordered by the GIL (see above). */
    unsigned int waiters; /* threads in the contended path, waiting or about to */
    unsigned int epoch; /* bumped when a forked child forgets the parent's waiters */
    int handle_held; /* the handle is taken for the current owner */
#endif
} snakepit_lock;

/* 0, or -1 with MemoryError. */
int snakepit_lock_init(snakepit_lock *lock);
void snakepit_lock_fini(snakepit_lock *lock);

/* 1 acquired, 0 timed out, -1 error (exception set: an interrupting signal handler raised, or
 * the level overflowed).  timeout_us: -1 waits forever, 0 only tries. */
int snakepit_lock_acquire(snakepit_lock *lock, int64_t timeout_us);

/* 0, or -1 with RuntimeError when the caller does not own the lock. */
int snakepit_lock_release(snakepit_lock *lock);

static inline unsigned long
snakepit_lock_owner(const snakepit_lock *lock)
{
    return atomic_load_explicit(&lock->owner, SNAKEPIT_RELAXED);
}

static inline int
snakepit_lock_is_owned(const snakepit_lock *lock)
{
    int owned = snakepit_lock_owner(lock) == PyThread_get_thread_ident();
    assert(!owned || atomic_load_explicit(&lock->level, SNAKEPIT_RELAXED) > 0);
    return owned;
}

/* How many times the calling thread holds the lock (0 when it does not). */
static inline unsigned long
snakepit_lock_recursion_count(const snakepit_lock *lock)
{
    return snakepit_lock_is_owned(lock) ? atomic_load_explicit(&lock->level, SNAKEPIT_RELAXED) : 0;
}

/* threading.Condition support: release completely, reporting what to restore; -1 with
 * RuntimeError when the caller does not own it. */
int snakepit_lock_release_save(snakepit_lock *lock, unsigned long *level, unsigned long *owner);
/* Take it back with that state (waits uninterruptibly: Condition.wait() must return owning
 * the lock even when a signal handler raises meanwhile). */
void snakepit_lock_acquire_restore(snakepit_lock *lock, unsigned long level, unsigned long owner);

/* In a forked child: a lock owned by a thread that is not `survivor` (which no longer
 * exists there) becomes free. */
void snakepit_lock_forget_other_owner(snakepit_lock *lock, unsigned long survivor);

/* Parse a timeout in seconds (None allowed when allow_none) into microseconds; -1 means
 * forever.  Returns 0 or -1 with an exception. */
int snakepit_parse_timeout(PyObject *obj, int allow_none, int64_t *timeout_us);

#endif /* SNAKEPIT_LOCK_H */

/* Native reentrant lock with the threading.RLock contract.
 *
 * A PyThread lock (the primitive under CPython 3.13's own RLock) plus an owner ident read
 * atomically by other threads and a recursion level touched only by the owner.  The
 * uncontended paths are one non-blocking acquire or one release; blocking waits detach
 * from the interpreter (other threads, signal handlers and the GC keep running) and are
 * interruptible by signals, like threading.RLock. */
#ifndef SNAKEPIT_RLOCK_H
#define SNAKEPIT_RLOCK_H

#include "state.h"

struct rlock_object {
    PyObject_HEAD
    PyThread_type_lock lock;
    _Atomic unsigned long owner;     /* 0 when free */
    _Atomic unsigned long level;     /* written by the owner only */
    snakepit_state *state;
    PyObject *weakreflist;
    rlock_object *reg_prev, *reg_next;  /* registry, for fork */
};

extern PyType_Spec snakepit_rlock_spec;
extern PyType_Spec snakepit_timed_guard_spec;

rlock_object *rlock_new(snakepit_state *st);

/* 1 acquired, 0 timed out, -1 error (exception set).  timeout_us: -1 waits forever. */
int rlock_acquire(rlock_object *self, int64_t timeout_us);
/* 0 or -1 with RuntimeError when the caller does not own the lock. */
int rlock_release(rlock_object *self);

/* Parse a timeout in seconds (None allowed when allow_none) into microseconds; -1 means
 * forever.  Returns 0 or -1 with an exception. */
int snakepit_parse_timeout(PyObject *obj, int allow_none, int64_t *timeout_us);

/* A context manager that acquires `lock` with a timeout and raises TimeoutError naming
 * `owner_name` (the adapter class) and the thread holding it. */
PyObject *timed_guard_new(snakepit_state *st, rlock_object *lock, PyObject *owner_name, int64_t timeout_us);

extern PyType_Spec snakepit_lock_guard_spec;
extern PyType_Spec snakepit_guard_method_spec;

/* The per-thread context manager of acquire_lock() (see rlock.c). */
PyObject *lock_guard_new(snakepit_state *st, rlock_object *lock);
int lock_guard_type_ready(snakepit_state *st);

/* Fork: make every lock whose owner does not exist in the child free again. */
void rlocks_after_fork_child(snakepit_state *st);

static inline int
rlock_is_owned(rlock_object *self)
{
    return atomic_load_explicit(&self->owner, RELAXED) == PyThread_get_thread_ident();
}

#endif /* SNAKEPIT_RLOCK_H */

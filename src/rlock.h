/* RLock: the Python type around the lock primitive (lock.h), with the threading.RLock
 * contract (usable by threading.Condition).  Every adapter owns one (adapter.lock).  Live
 * locks are kept in the registry, so a forked child can free those held by threads that do
 * not exist there. */
#ifndef SNAKEPIT_RLOCK_H
#define SNAKEPIT_RLOCK_H

#include "lock.h"
#include "state.h"

typedef struct rlock_object {
    PyObject_HEAD
    snakepit_lock lock;
    snakepit_state *state;
    PyObject *weakreflist;
    snakepit_link registry_link; /* in st->registry.locks */
#ifndef Py_GIL_DISABLED
    /* The memory of the last bound __enter__ and __exit__ freed, kept for the next `with` (see
     * guards.c): a `with` statement binds both, and this spares it two allocations.  The GIL
     * orders every access.  (Not on free-threaded builds: threads sharing a lock would bounce
     * these slots and the memory in them between their caches, where each thread's own
     * allocator has memory at hand.) */
    void *spare[2];
#endif
} rlock_object;

extern PyType_Spec snakepit_rlock_spec;

rlock_object *rlock_new(snakepit_state *st);

/* Whether `op` is an RLock (the type is final). */
int rlock_check(PyObject *op);

/* The spare memory of a bound __enter__ (0) or __exit__ (1) of `lock`, now the caller's, or
 * NULL if there is none. */
static inline void *
rlock_spare_take(rlock_object *lock, int which)
{
#ifdef Py_GIL_DISABLED
    (void)lock, (void)which;
    return NULL;
#else
    void *mem = lock->spare[which];
    lock->spare[which] = NULL;
    return mem;
#endif
}

/* Offer `mem` (a freed bound method's) as the spare: 1 kept (it is the lock's now), 0 not
 * (the caller frees it). */
static inline int
rlock_spare_put(rlock_object *lock, int which, void *mem)
{
#ifdef Py_GIL_DISABLED
    (void)lock, (void)which, (void)mem;
    return 0;
#else
    if (lock->spare[which] != NULL) {
        return 0;
    }
    lock->spare[which] = mem;
    return 1;
#endif
}

/* release() and every __exit__: None (falsy, so exceptions from a `with` body propagate), or
 * NULL with the RuntimeError of a release by a thread that does not own the lock. */
PyObject *rlock_release_to_none(rlock_object *self);

#endif /* SNAKEPIT_RLOCK_H */

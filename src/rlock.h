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
} rlock_object;

extern PyType_Spec snakepit_rlock_spec;

rlock_object *rlock_new(snakepit_state *st);

/* release() and every __exit__: None (falsy, so exceptions from a `with` body propagate), or
 * NULL with the RuntimeError of a release by a thread that does not own the lock. */
PyObject *rlock_release_to_none(rlock_object *self);

#endif /* SNAKEPIT_RLOCK_H */

/* The context managers acquire_lock() returns, and RLock's __enter__ and __exit__.
 *
 * Without a timeout: the calling thread's guard for that adapter (made once, kept in the
 * thread's slot), whose __enter__ and __exit__ are two callables it made once, so a `with`
 * statement allocates nothing.  With a timeout: a timed guard, whose TimeoutError names the
 * adapter class and the thread holding the lock.  `with rlock:` binds its __enter__ and
 * __exit__ in memory the lock keeps, so it allocates nothing either. */
#ifndef SNAKEPIT_GUARDS_H
#define SNAKEPIT_GUARDS_H

#include "rlock.h"

extern PyType_Spec snakepit_timed_guard_spec;
extern PyType_Spec snakepit_lock_guard_spec;
extern PyType_Spec snakepit_guard_method_spec;

/* A context manager that acquires `lock` with a timeout and raises TimeoutError naming
 * `owner_name` (the adapter class) and the thread holding it. */
PyObject *timed_guard_new(snakepit_state *st, rlock_object *lock, PyObject *owner_name,
                          int64_t timeout_us);

/* A thread's acquire_lock() context manager for `lock`. */
PyObject *lock_guard_new(snakepit_state *st, rlock_object *lock);

/* Install __enter__/__exit__ on the guard type and on RLock, then make both immutable (module
 * exec, after those types and the guard method type exist).  Returns 0 or -1. */
int lock_guard_type_ready(snakepit_state *st);

#endif /* SNAKEPIT_GUARDS_H */

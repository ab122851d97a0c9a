/* Module state of snakepit_bridge._native: the heap types, interned names, the registry of
 * per-thread shards, and the optional observers used by the thread-safety checker. */
#ifndef SNAKEPIT_STATE_H
#define SNAKEPIT_STATE_H

#include "compat.h"
#include "clock.h"

typedef struct shard_set shard_set;
typedef struct rlock_object rlock_object;

/* Guards every link between per-thread records, shard sets and locks (slot creation,
 * thread exit, adapter death, statistics reads, fork).  Held only for short C sections
 * that neither run Python code nor allocate Python objects. */
typedef struct {
    snakepit_mutex mutex;
    /* Ident of the thread that holds the mutex across os.fork(); lock/unlock are no-ops
     * for that thread until the fork hooks finish. */
    _Atomic unsigned long fork_holder;
    shard_set *sets;            /* all live shard sets (doubly linked) */
    rlock_object *locks;        /* all live native locks (doubly linked) */
} snakepit_registry;

typedef struct {
    PyTypeObject *adapter_type;
    PyTypeObject *rlock_type;
    PyTypeObject *timed_guard_type;
    PyTypeObject *lock_guard_type;
    PyTypeObject *tracker_type;
    PyTypeObject *method_type;
    PyTypeObject *part_type;
    PyTypeObject *record_type;

    PyObject *record_key;       /* key of this module's record in PyThreadState_GetDict() */
    Py_tss_t *record_tss;       /* fast pointer to the calling thread's record */

    snakepit_registry registry;
    _Atomic uint64_t next_set_id;
    snakepit_clock clock;

    /* Checker hooks: the flags are read on hot paths; the callables are read under
     * observer_mutex and called outside it. */
    _Atomic int observing_writes;
    _Atomic int observing_calls;
    snakepit_mutex observer_mutex;
    PyObject *write_observer;
    PyObject *call_observer;

    /* Interned names. */
    PyObject *str_total_requests;
    PyObject *str_completed_requests;
    PyObject *str_active_requests;
    PyObject *str_total_active_requests;
    PyObject *str_active_threads;
    PyObject *str_threads_seen;
    PyObject *str_requests_by_thread;
    PyObject *str_errors;
    PyObject *str_total_duration;
    PyObject *str_mean_duration;
    PyObject *str_max_duration;
    PyObject *str_adapter_class;
    PyObject *str_thread_safe;
    PyObject *str_tracker;
    PyObject *str_dunder_thread_safe;
    PyObject *str_timeout;
    PyObject *str_blocking;
    PyObject *str_name;
    PyObject *str_current_thread;
    PyObject *str_active;
    PyObject *str_get;
} snakepit_state;

static inline void
registry_lock(snakepit_registry *reg)
{
#ifdef SNAKEPIT_HAVE_PYMUTEX
    if (atomic_load_explicit(&reg->fork_holder, RELAXED) == PyThread_get_thread_ident()) {
        return;
    }
    snakepit_mutex_lock(&reg->mutex);
#else
    (void)reg;
#endif
}

static inline void
registry_unlock(snakepit_registry *reg)
{
#ifdef SNAKEPIT_HAVE_PYMUTEX
    if (atomic_load_explicit(&reg->fork_holder, RELAXED) == PyThread_get_thread_ident()) {
        return;
    }
    snakepit_mutex_unlock(&reg->mutex);
#else
    (void)reg;
#endif
}

#endif /* SNAKEPIT_STATE_H */

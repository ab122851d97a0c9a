/* Module state of snakepit_bridge._native: the heap types, interned names, the registry of
 * per-thread shards and locks, and the optional observers used by the thread-safety checker. */
#ifndef SNAKEPIT_STATE_H
#define SNAKEPIT_STATE_H

#include "compat.h" /* first: Python.h must precede system headers */

#include "clock.h"
#include "fork.h"
#include "list.h"

/* Every interned name: X(field, text) gives st->str_<field>, made at module exec and
 * released at module clear (one list, so the three cannot disagree). */
#define SNAKEPIT_INTERNED_NAMES(X)                    \
    X(total_requests, "total_requests")               \
    X(completed_requests, "completed_requests")       \
    X(active_requests, "active_requests")             \
    X(total_active_requests, "total_active_requests") \
    X(active_threads, "active_threads")               \
    X(threads_seen, "threads_seen")                   \
    X(requests_by_thread, "requests_by_thread")       \
    X(errors, "errors")                               \
    X(total_duration, "total_duration")               \
    X(mean_duration, "mean_duration")                 \
    X(max_duration, "max_duration")                   \
    X(adapter_class, "adapter_class")                 \
    X(thread_safe, "thread_safe")                     \
    X(tracker, "tracker")                             \
    X(dunder_thread_safe, "__thread_safe__")          \
    X(timeout, "timeout")                             \
    X(unnamed, "<unnamed thread>")                    \
    X(other_threads, "(other threads)")               \
    X(throw, "throw")                                 \
    X(close, "close")                                 \
    X(asend, "asend")                                 \
    X(athrow, "athrow")                               \
    X(aclose, "aclose")                               \
    X(dunder_dict, "__dict__")                        \
    X(unknown_file, "<unknown>")

/* Guards every link between per-thread records, shard sets and locks (slot creation, thread
 * exit, adapter death, statistics reads, fork).  Held only for short C sections that neither
 * run Python code, nor allocate Python objects, nor block. */
typedef struct {
    fork_safe_mutex lock;
    snakepit_link sets; /* every live shard set (shard_set.registry_link) */
    snakepit_link locks; /* every live native lock (rlock_object.registry_link) */
} snakepit_registry;

typedef struct snakepit_state {
    PyTypeObject *adapter_type;
    PyTypeObject *rlock_type;
    PyTypeObject *timed_guard_type;
    PyTypeObject *lock_guard_type;
    PyTypeObject *guard_method_type;
    PyTypeObject *tracker_type;
    PyTypeObject *request_type;
    PyTypeObject *tracked_coroutine_type;
    PyTypeObject *tracked_generator_type;
    PyTypeObject *tracked_async_generator_type;
    PyTypeObject *tracked_step_type;
    PyTypeObject *method_type;
    PyTypeObject *part_type;
    PyTypeObject *record_type;

    PyObject *record_key; /* key of this module's record in PyThreadState_GetDict() */
    Py_tss_t *record_tss; /* fast pointer to the calling thread's record */

    snakepit_registry registry;
    fork_watch fork;
    _Atomic uint64_t next_set_id;
    _Atomic uint64_t next_slot_serial;
    /* Request objects entered and not yet exited, over all trackers: while it is 0, no
     * context can hold one, and a decorated call need not look at the context. */
    _Atomic int64_t open_request_objects;
    PyObject *current_request; /* ContextVar: the innermost request object entered here */
    snakepit_clock clock;
    _Atomic uint64_t seconds_per_tick_bits; /* cached once accurate (a double's bits) */

    /* Checker hooks: the flags are read on hot paths; the callables are read under
     * observer_lock and called outside it. */
    _Atomic int observing_writes;
    _Atomic int observing_calls;
    fork_safe_mutex observer_lock;
    PyObject *write_observer;
    PyObject *call_observer;
    /* This instance's dict watcher (3.12+), which sees the writes to adapters' instance dicts
     * that bypass tp_setattro (see watch.h); has_dict_watcher is 0 before 3.12 or when the
     * interpreter had no watcher id left. */
    int dict_watcher_id;
    int has_dict_watcher;

#define SNAKEPIT_NAME_FIELD(field, text) PyObject *str_##field;
    SNAKEPIT_INTERNED_NAMES(SNAKEPIT_NAME_FIELD)
#undef SNAKEPIT_NAME_FIELD
} snakepit_state;

static inline void
registry_lock(snakepit_state *st)
{
    fork_safe_lock(&st->fork, &st->registry.lock);
}

static inline void
registry_unlock(snakepit_state *st)
{
    fork_safe_unlock(&st->registry.lock);
}

/* For assertions in functions that need the registry lock held by their caller. */
#define registry_held(st) snakepit_mutex_held(&(st)->registry.lock.mutex)

static inline void
observer_lock(snakepit_state *st)
{
    fork_safe_lock(&st->fork, &st->observer_lock);
}

static inline void
observer_unlock(snakepit_state *st)
{
    fork_safe_unlock(&st->observer_lock);
}

/* A new reference to the observer in `slot` (st->write_observer or st->call_observer), or
 * NULL when none is installed. */
static inline PyObject *
observer_get(snakepit_state *st, PyObject **slot)
{
    observer_lock(st);
    PyObject *observer = Py_XNewRef(*slot);
    observer_unlock(st);
    return observer;
}

#endif /* SNAKEPIT_STATE_H */

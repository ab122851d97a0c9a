/* Module state of snakepit_bridge._native: the heap types, interned names, the registry of
 * per-thread shards, and the optional observers used by the thread-safety checker. */
#ifndef SNAKEPIT_STATE_H
#define SNAKEPIT_STATE_H

#include "compat.h"
#include "clock.h"

typedef struct shard_set shard_set;
typedef struct rlock_object rlock_object;

/* A short mutex that survives os.fork().  Nothing is held across fork: the before-fork hook
 * only records who forks, and CPython stops every other thread at a safe point before it
 * forks, which a thread inside one of these sections (it never detaches) cannot be.  Should
 * one still arrive locked in the child, where only the forking thread exists, the first lock
 * there resets it (defence in depth, cheap: one generation compare per lock). */
typedef struct {
    snakepit_mutex mutex;
} fork_safe_mutex;

/* Who is forking: set by the before-fork hook, cleared after it in the parent.  The
 * child sees it too, with a different pid. */
typedef struct {
    _Atomic unsigned long thread;
    _Atomic long parent_pid;
    _Atomic unsigned int generation;   /* bumped in every child */
} fork_watch;

/* Guards every link between per-thread records, shard sets and locks (slot creation,
 * thread exit, adapter death, statistics reads, fork).  Held only for short C sections
 * that neither run Python code, nor allocate Python objects, nor block. */
typedef struct {
    fork_safe_mutex lock;
    _Atomic unsigned int lock_generation;  /* fork generation the mutex belongs to */
    shard_set *sets;            /* all live shard sets (doubly linked) */
    rlock_object *locks;        /* all live native locks (doubly linked) */
} snakepit_registry;

typedef struct {
    PyTypeObject *adapter_type;
    PyTypeObject *rlock_type;
    PyTypeObject *timed_guard_type;
    PyTypeObject *lock_guard_type;
    PyTypeObject *guard_method_type;
    PyTypeObject *tracker_type;
    PyTypeObject *request_type;
    PyTypeObject *method_type;
    PyTypeObject *part_type;
    PyTypeObject *record_type;

    PyObject *record_key;       /* key of this module's record in PyThreadState_GetDict() */
    Py_tss_t *record_tss;       /* fast pointer to the calling thread's record */

    snakepit_registry registry;
    fork_watch fork;
    _Atomic uint64_t next_set_id;
    _Atomic uint64_t next_slot_serial;
    /* Request objects entered and not yet exited, over all trackers: while it is 0, no
     * context can hold one, and a decorated call need not look at the context. */
    _Atomic int64_t open_request_objects;
    PyObject *current_request;  /* ContextVar: the innermost request object entered here */
    snakepit_clock clock;

    /* Checker hooks: the flags are read on hot paths; the callables are read under
     * observer_mutex and called outside it. */
    _Atomic int observing_writes;
    _Atomic int observing_calls;
    fork_safe_mutex observer_mutex;
    _Atomic unsigned int observer_generation;
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
    PyObject *str_unnamed;
    _Atomic uint64_t seconds_per_tick_bits;  /* cached once accurate (a double's bits) */

} snakepit_state;

/* In the only thread of a forked child, a mutex inherited from the parent may still look
 * held by a thread that does not exist here: forget that state once per fork. */
void snakepit_fork_check(snakepit_state *st, fork_safe_mutex *m, _Atomic unsigned int *generation);

static inline void
fork_safe_lock(snakepit_state *st, fork_safe_mutex *m, _Atomic unsigned int *generation)
{
#ifdef SNAKEPIT_HAVE_SPINLOCK
    if (atomic_load_explicit(&st->fork.thread, RELAXED) != 0
        || atomic_load_explicit(generation, RELAXED) != atomic_load_explicit(&st->fork.generation, RELAXED)) {
        snakepit_fork_check(st, m, generation);
    }
    snakepit_mutex_lock(&m->mutex);
#else
    (void)st, (void)m, (void)generation;
#endif
}

static inline void
fork_safe_unlock(fork_safe_mutex *m)
{
    snakepit_mutex_unlock(&m->mutex);
}

#define registry_lock(st) fork_safe_lock((st), &(st)->registry.lock, &(st)->registry.lock_generation)
#define registry_unlock(st) fork_safe_unlock(&(st)->registry.lock)
#define observer_lock(st) fork_safe_lock((st), &(st)->observer_mutex, &(st)->observer_generation)
#define observer_unlock(st) fork_safe_unlock(&(st)->observer_mutex)

#endif /* SNAKEPIT_STATE_H */

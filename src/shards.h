/* Per-thread shards: one slot per (shard set, thread).
 *
 * A shard set is embedded in every RequestTracker (and so in every adapter, through its
 * tracker).  A slot holds that thread's request counters and, for adapters, its
 * thread-local values.  The owning thread finds its slot through its thread record (a
 * small open-addressing table reached by a Py_tss pointer) without any shared lock; only
 * creating a slot, a thread's exit, a set's death, statistics reads and fork take the
 * registry lock.  Slots are cache-line aligned so threads never write the same line.
 *
 * Lifetimes: a slot leaves its set when its thread ends (counts are folded into the set's
 * history, values released) or when its set dies (values released, slot marked dead and
 * later freed by its thread), whichever comes first. */
#ifndef SNAKEPIT_SHARDS_H
#define SNAKEPIT_SHARDS_H

#include "release.h"
#include "state.h"

typedef struct thread_record thread_record;
typedef struct shard_slot shard_slot;
typedef struct shard_set shard_set;

#define SNAKEPIT_CACHE_LINE 64

struct shard_slot {
    /* Written only by the owning thread; read by statistics readers.  A request is counted
     * as started by the thread that starts it and as completed by the thread that ends it
     * (the same thread, except for request objects; see request.h). */
    _Atomic int64_t started;
    _Atomic int64_t completed;
    _Atomic int64_t errors;
    _Atomic uint64_t busy_ticks;
    _Atomic uint64_t max_ticks;
    _Atomic int active; /* the thread's call-stack request (depth) is running */
    /* Request objects started by this thread and not ended yet: decremented by whichever
     * thread ends them, so always changed with atomic read-modify-writes. */
    _Atomic int64_t open_requests;
    /* Owner-only. */
    int depth; /* nesting of decorated calls and start_request() */
    int depth_counted; /* the outermost of them is a request (not nested in one) */
    uint64_t start_ticks;
    /* Guarded by the registry lock.  The link and the name share the line after the
     * counters: a statistics read needs those two lines of a slot, and not its record. */
    snakepit_link set_link; /* in set->slots */
    /* The owning thread's name, borrowed from its record (which retires the slot before it
     * lets the name go); NULL until the record knows it. */
    PyObject *name;
    shard_set *set; /* NULL once the set died */
    _Atomic int dead; /* set released it; the owner frees it */
    /* Owner-only. */
    PyObject *values; /* thread-local values (dict) or NULL */
    PyObject *guard; /* this thread's acquire_lock() context manager or NULL */
    /* Immutable after creation. */
    uint64_t set_id;
    uint64_t serial; /* unique over the process: names the slot after it is gone */
    thread_record *record;
    void *allocation;
};

typedef struct {
    PyObject *name;
    int64_t requests;
} retired_name;

#define SNAKEPIT_MAX_RETIRED_NAMES 256

struct shard_set {
    uint64_t id;
    snakepit_state *state;
    snakepit_link registry_link; /* in st->registry.sets */
    snakepit_link slots; /* shard_slot.set_link of every live slot */
    Py_ssize_t n_slots; /* how many: statistics size their snapshot without a walk */
    /* History of threads that ended, guarded by the registry lock. */
    int64_t retired_started, retired_completed, retired_errors;
    uint64_t retired_busy_ticks, retired_max_ticks;
    int64_t retired_threads; /* ended threads that made requests */
    int64_t retired_open_requests; /* request objects started by ended threads, still open */
    retired_name *retired_names;
    Py_ssize_t n_retired_names;
    int64_t retired_other_requests; /* threads past SNAKEPIT_MAX_RETIRED_NAMES names */
};

struct thread_record {
    PyObject_HEAD
    snakepit_state *state;
    PyObject *module; /* keeps the state alive */
    PyObject *name; /* threading name at first use (NULL until known) */
    unsigned long ident; /* the OS thread it belongs to */
    shard_slot **table; /* open addressing on set_id, power-of-two capacity */
    size_t capacity;
    size_t used;
    uint64_t cached_id;
    shard_slot *cached_slot;
};

extern PyType_Spec snakepit_record_spec;

/* The threading name of the thread with this ident, looked up without side effects (no
 * _DummyThread is created); NULL, with no exception set, when threading does not know it. */
PyObject *snakepit_thread_name(unsigned long ident);

/* Give the set a fresh id and register it (for fork handling). */
void shard_set_init(snakepit_state *st, shard_set *set);
/* Release every slot of a dying set; values are released after the registry lock. */
void shard_set_fini(shard_set *set);
/* Release the thread-local values (and lock guards) of every thread of this set, leaving
 * the slots in place (tp_clear of an adapter). */
void shard_set_clear_values(shard_set *set);
int shard_set_traverse_values(shard_set *set, visitproc visit, void *arg);

/* Per-thread cache of the Py_tss lookup (which costs a call into libpthread on every
 * tracked call).  It is not shared state: each thread sees only its own copy, and a record
 * clears it when it dies.  The tss stays the source of truth (several module instances). */
typedef struct {
    snakepit_state *state;
    thread_record *record;
    /* The Python thread state whose teardown released this thread's record (its id; 0 for
     * none): while that state ends, no new shards.  Keyed by the state, not the OS thread: a
     * thread CPython did not start (a C library calling back through PyGILState_Ensure) gets
     * a fresh state per callback, and each one is tracked again. */
    uint64_t exiting_state_id;
} snakepit_record_cache;
/* initial-exec: one load instead of a __tls_get_addr call on every use. */
extern _Thread_local snakepit_record_cache snakepit_current_record
    __attribute__((visibility("hidden"), tls_model("initial-exec")));

/* The id of the calling thread's current Python thread state, 0 if it has none. */
static inline uint64_t
snakepit_thread_state_id(void)
{
#if PY_VERSION_HEX >= 0x030D0000
    PyThreadState *tstate = PyThreadState_GetUnchecked();
#else
    PyThreadState *tstate = _PyThreadState_UncheckedGet();
#endif
    return tstate != NULL ? PyThreadState_GetID(tstate) : 0;
}

/* Whether the calling thread's Python state is being torn down (its storage is released):
 * calls then run untracked and store nothing.  Slow paths only. */
static inline int
shard_thread_exiting(void)
{
    uint64_t id = snakepit_current_record.exiting_state_id;
    return id != 0 && id == snakepit_thread_state_id();
}

static inline thread_record *
record_current(snakepit_state *st)
{
    if (snakepit_current_record.state == st) {
        return snakepit_current_record.record;
    }
    return (thread_record *)PyThread_tss_get(st->record_tss);
}

/* Home position of a set id in a thread's open-addressing table. */
static inline size_t
shard_table_index(uint64_t id, size_t mask)
{
    return (size_t)(id * 0x9E3779B97F4A7C15ull >> 32) & mask;
}

/* The calling thread's slot of the set with this id, or NULL without error if it has none
 * yet.  Callers that keep the id next to their other hot fields (adapters) save a load of
 * the set itself. */
static inline shard_slot *
shard_find_id(snakepit_state *st, uint64_t set_id)
{
    thread_record *rec = record_current(st);
    if (rec == NULL) {
        return NULL;
    }
    if (rec->cached_id == set_id) {
        assert(rec->cached_slot->record == rec
               && !atomic_load_explicit(&rec->cached_slot->dead, SNAKEPIT_RELAXED));
        return rec->cached_slot;
    }
    size_t mask = rec->capacity - 1;
    for (size_t i = shard_table_index(set_id, mask);; i = (i + 1) & mask) {
        shard_slot *slot = rec->table[i];
        if (slot == NULL) {
            return NULL;
        }
        if (slot->set_id == set_id) {
            assert(slot->record == rec && !atomic_load_explicit(&slot->dead, SNAKEPIT_RELAXED));
            rec->cached_id = set_id;
            rec->cached_slot = slot;
            return slot;
        }
    }
}

/* The calling thread's slot of `set`, or NULL without error if it has none yet. */
static inline shard_slot *
shard_find(shard_set *set)
{
    return shard_find_id(set->state, set->id);
}

/* The calling thread's slot of `set`, created on first use; NULL with an exception, or
 * NULL without one when the thread is exiting (its storage is already released). */
shard_slot *shard_get_slow(shard_set *set);

static inline shard_slot *
shard_get(shard_set *set)
{
    shard_slot *slot = shard_find(set);
    return slot != NULL ? slot : shard_get_slow(set);
}

/* Statistics snapshot, taken under the registry lock. */
#define SNAKEPIT_SNAPSHOT_INLINE 16

typedef struct {
    int64_t started, completed, errors, active_requests, active_threads, threads_seen;
    uint64_t busy_ticks, max_ticks;
    retired_name *by_name; /* new references, merged by the caller */
    Py_ssize_t n_by_name;
    int64_t other_requests;
    retired_name inline_names[SNAKEPIT_SNAPSHOT_INLINE];
} shard_snapshot;

int shard_set_snapshot(shard_set *set, shard_snapshot *snap);
void shard_snapshot_release(shard_snapshot *snap);

/* Requests running now, on every thread: the cheap part of a snapshot, taken under the
 * registry lock without allocating. */
int64_t shard_set_active(shard_set *set);

/* The end of a request object started on the slot with serial `started_on` (0: none), when
 * the ending thread has no slot of the set (it is exiting) or the object is being freed:
 * counted in the set's own history under the registry lock. */
void shard_set_end_detached(shard_set *set, uint64_t started_on, uint64_t elapsed_ticks, int error);
/* One request object started on the slot with this serial has ended elsewhere. */
void shard_set_close_remote(shard_set *set, uint64_t started_on);

/* Registry lock held, for the shard set's own code and fork.c: fold a slot's counts into its
 * set's history, take what it owns (values, guard) into `owned`, unlink it from its set and
 * mark it dead (its thread frees it). */
void shard_slot_retire(shard_slot *slot, release_list *owned);

static inline shard_slot *
shard_slot_of_link(snakepit_link *link)
{
    return SNAKEPIT_CONTAINER_OF(link, shard_slot, set_link);
}

static inline shard_set *
shard_set_of_link(snakepit_link *link)
{
    return SNAKEPIT_CONTAINER_OF(link, shard_set, registry_link);
}

#endif /* SNAKEPIT_SHARDS_H */

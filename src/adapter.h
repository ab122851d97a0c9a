/* ThreadSafeAdapter: the base class users subclass.
 *
 * Its lock, tracker and per-thread storage exist from allocation, so a subclass whose
 * __init__ forgets super().__init__() still works.  The lock and tracker are exposed as
 * non-data descriptors (lock, _lock, tracker, _tracker): an instance attribute of the same
 * name shadows them without ever affecting acquire_lock(). */
#ifndef SNAKEPIT_ADAPTER_H
#define SNAKEPIT_ADAPTER_H

#include "rlock.h"
#include "tracker.h"

typedef struct {
    PyObject_HEAD
    PyObject *dict;
    PyObject *weakreflist;
    /* Every method call on a shared adapter writes its reference count (in the header);
     * keep the pointers every call reads a cache line away from it. */
    char header_gap[SNAKEPIT_CACHE_LINE];
    rlock_object *lock;
    tracker_object *tracker;
    snakepit_state *state;
    uint64_t set_id; /* the tracker's shard set id (immutable), for lookups */
} adapter_object;

/* The calling thread's slot of this adapter: found through the id kept next to the other
 * hot fields (no load of the tracker object); created on first use by adapter_slot_get. */
static inline shard_slot *
adapter_slot_find(adapter_object *self)
{
    return shard_find_id(self->state, self->set_id);
}

static inline shard_slot *
adapter_slot_get(adapter_object *self)
{
    shard_slot *slot = adapter_slot_find(self);
    return slot != NULL ? slot : shard_get_slow(&self->tracker->set);
}

extern PyType_Spec snakepit_adapter_spec;
extern PyType_Spec snakepit_part_spec;

/* Finish the adapter type once created: descriptors and __thread_safe__, then make it
 * immutable.  Returns 0 or -1. */
int adapter_type_ready(snakepit_state *st);

/* The one rule for "this class declares itself thread-safe": the nearest class of its MRO
 * that sets __thread_safe__ in its own body decides, and only the bool True declares.
 * ThreadSafeAdapter's own True (upstream's class attribute) is not the user's declaration,
 * so the walk stops there.  1, 0, or -1 with an exception. */
int adapter_declares_thread_safe(snakepit_state *st, PyTypeObject *type);

static inline int
adapter_check(snakepit_state *st, PyObject *op)
{
    /* Python subclasses inherit tp_new unless they define __new__, and nothing else has this
     * one: that settles most calls without walking the MRO. */
    return Py_TYPE(op)->tp_new == st->adapter_type->tp_new
           || PyObject_TypeCheck(op, st->adapter_type);
}

#endif /* SNAKEPIT_ADAPTER_H */

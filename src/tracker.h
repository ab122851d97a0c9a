/* RequestTracker: per-thread request counts, active requests and timings.
 *
 * Counting touches only the calling thread's shard (no shared writes, no lock); totals are
 * aggregated when read.  Two kinds of request: call-stack requests (decorated calls,
 * start_request()/end_request()), of which only the outermost per thread counts; and request
 * objects (track_request(); request.h), which may interleave on one thread (asyncio tasks)
 * and end on another.  A request made inside another one of the same tracker counts once. */
#ifndef SNAKEPIT_TRACKER_H
#define SNAKEPIT_TRACKER_H

#include "shards.h"

typedef struct {
    PyObject_HEAD
    shard_set set;
    snakepit_state *state;
} tracker_object;

extern PyType_Spec snakepit_tracker_spec;

tracker_object *tracker_new(snakepit_state *st);
PyObject *tracker_stats_dict(tracker_object *self);

/* Whether the calling context is inside an open request object of this tracker (slow: reads
 * the context).  Never fails: an error reading the context counts as "not inside". */
int tracker_inside_request_object(snakepit_state *st, tracker_object *tracker);

/* Start of a call-stack request (a decorated call, start_request()) on the calling thread:
 * only the outermost one per (tracker, thread) counts, and not even that one when it runs
 * inside a request object of the same tracker (a decorated call in `with track_request():`). */
static inline void
tracker_begin(snakepit_state *st, tracker_object *tracker, shard_slot *slot)
{
    /* Only the owning thread writes its slot's counters (what makes them exact). */
    assert(slot->record == record_current(st) && slot->set_id == tracker->set.id);
    assert(slot->depth >= 0);
    if (slot->depth++ == 0) {
        int counted = atomic_load_explicit(&st->open_request_objects, SNAKEPIT_RELAXED) == 0
                      || !tracker_inside_request_object(st, tracker);
        slot->depth_counted = counted;
        if (counted) {
            slot->start_ticks = snakepit_ticks(&st->clock);
            SNAKEPIT_BUMP(slot->started, 1);
            atomic_store_explicit(&slot->active, 1, SNAKEPIT_RELAXED);
        }
    }
}

/* Add one finished request to the calling thread's slot (owner-only writes). */
static inline void
tracker_count_end(shard_slot *slot, uint64_t elapsed, int error)
{
    assert(!atomic_load_explicit(&slot->dead, SNAKEPIT_RELAXED));
    SNAKEPIT_BUMP(slot->busy_ticks, elapsed);
    if (elapsed > atomic_load_explicit(&slot->max_ticks, SNAKEPIT_RELAXED)) {
        atomic_store_explicit(&slot->max_ticks, elapsed, SNAKEPIT_RELAXED);
    }
    SNAKEPIT_BUMP(slot->completed, 1);
    if (error) {
        SNAKEPIT_BUMP(slot->errors, 1);
    }
}

static inline uint64_t
tracker_elapsed(snakepit_state *st, uint64_t start_ticks)
{
    uint64_t now = snakepit_ticks(&st->clock);
    /* A thread that migrates between cores may read a slightly smaller TSC. */
    return now > start_ticks ? now - start_ticks : 0;
}

static inline void
tracker_end(snakepit_state *st, shard_slot *slot, int error)
{
    assert(slot->record == record_current(st) && slot->depth > 0);
    if (--slot->depth == 0 && slot->depth_counted) {
        tracker_count_end(slot, tracker_elapsed(st, slot->start_ticks), error);
        atomic_store_explicit(&slot->active, 0, SNAKEPIT_RELAXED);
    }
}

#endif /* SNAKEPIT_TRACKER_H */

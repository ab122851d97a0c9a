/* RequestTracker: per-thread request counts, active requests and timings.
 *
 * Counting touches only the calling thread's shard (no shared writes, no lock); totals are
 * aggregated when read.  Nesting on one thread counts once: only the outermost
 * start/end pair of a thread is a request. */
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

static inline void
tracker_begin(snakepit_state *st, shard_slot *slot)
{
    if (slot->depth++ == 0) {
        slot->start_ticks = snakepit_ticks(&st->clock);
        BUMP(slot->started, 1);
        atomic_store_explicit(&slot->active, 1, RELAXED);
    }
}

static inline void
tracker_end(snakepit_state *st, shard_slot *slot, int error)
{
    if (--slot->depth == 0) {
        uint64_t now = snakepit_ticks(&st->clock);
        /* A thread that migrates between cores may read a slightly smaller TSC. */
        uint64_t elapsed = now > slot->start_ticks ? now - slot->start_ticks : 0;
        BUMP(slot->busy_ticks, elapsed);
        if (elapsed > atomic_load_explicit(&slot->max_ticks, RELAXED)) {
            atomic_store_explicit(&slot->max_ticks, elapsed, RELAXED);
        }
        BUMP(slot->completed, 1);
        if (error) {
            BUMP(slot->errors, 1);
        }
        atomic_store_explicit(&slot->active, 0, RELAXED);
    }
}

#endif /* SNAKEPIT_TRACKER_H */

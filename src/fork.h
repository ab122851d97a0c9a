/* Fork handling, in one place: who forks, the fork generation, the short locks that must
 * work in the child, and what the child does first (see fork.c).
 *
 * Nothing is held across fork(): other before-fork hooks and CPython's import lock run after
 * ours, and a thread holding one of them may need the registry.  The before-fork hook only
 * records who forks.  CPython stops every other thread at a safe point before it forks, and
 * no thread can be at one inside a registry section (they never detach), so the short locks
 * never reach the child held; should one, the first lock in the child resets it (defence in
 * depth: one generation compare per lock). */
#ifndef SNAKEPIT_FORK_H
#define SNAKEPIT_FORK_H

#include "compat.h"

/* Who is forking: set by the before-fork hook, cleared after it in the parent.  The child sees
 * it too, with a different pid, and starts a new generation at its first lock. */
typedef struct {
    _Atomic unsigned long thread;
    _Atomic long parent_pid;
    _Atomic unsigned int generation; /* bumped in every child */
} fork_watch;

/* A short lock that survives fork: reset once per fork generation, in the child. */
typedef struct {
    snakepit_mutex mutex;
    _Atomic unsigned int generation; /* the fork generation the mutex state belongs to */
} fork_safe_mutex;

void snakepit_fork_check(fork_watch *watch, fork_safe_mutex *m);

static inline void
fork_safe_lock(fork_watch *watch, fork_safe_mutex *m)
{
#ifdef SNAKEPIT_HAVE_SPINLOCK
    if (atomic_load_explicit(&watch->thread, SNAKEPIT_RELAXED) != 0
        || atomic_load_explicit(&m->generation, SNAKEPIT_RELAXED)
               != atomic_load_explicit(&watch->generation, SNAKEPIT_RELAXED)) {
        snakepit_fork_check(watch, m);
    }
#else
    (void)watch;
#endif
    snakepit_mutex_lock(&m->mutex);
}

static inline void
fork_safe_unlock(fork_safe_mutex *m)
{
    snakepit_mutex_unlock(&m->mutex);
}

/* Add the fork hooks to the module (as _before_fork, _after_fork_parent, _after_fork_child)
 * and register them with os.register_at_fork.  Returns 0 or -1. */
int snakepit_fork_init(PyObject *module);

#endif /* SNAKEPIT_FORK_H */

/* Writes to an adapter's instance dict that bypass its tp_setattro, seen by a dict watcher.
 *
 * object.__setattr__(adapter, ...) and object.__delattr__ (what frozen dataclasses' __init__
 * uses), and every write through vars(adapter) or adapter.__dict__, change the instance dict
 * without calling the adapter's tp_setattro, so the write observer does not see them there.
 * From 3.12 each module instance registers one dict watcher, and every adapter's instance
 * dict (made at construction, and any dict later assigned to adapter.__dict__) is watched.
 *
 * A dict watcher runs in the middle of the dict's update and must not run Python code: the
 * update reads the slot and the old value before notifying and uses them after, so if
 * anything changed the dict meanwhile (the observer itself, a __del__ run by the collector, or
 * another thread while this one waits for a lock or drops the GIL) it would finish on stale
 * state.  So the watcher only records the write, in C: a weak reference to the adapter, the
 * name, whether the writing thread owned the adapter's lock, and the writing code's file and
 * line.  The report reaches the write observer later, on the same thread, at its next report
 * point: before its next write through tp_setattro while observed, before a decorated call
 * enters or leaves on it, or when it calls report_pending_writes().  An observer's exception
 * there is unraisable (the write happened long ago).  Reports of an adapter that died first,
 * and those still pending when their observer is removed or replaced, are dropped.
 *
 * The write through tp_setattro itself is reported before it happens, as always, and the
 * watcher's event for exactly that store is not recorded again (a per-thread scope). */
#ifndef SNAKEPIT_WATCH_H
#define SNAKEPIT_WATCH_H

#include "adapter.h"

#if PY_VERSION_HEX >= 0x030C0000
#  define SNAKEPIT_DICT_WATCH 1
#else
#  define SNAKEPIT_DICT_WATCH 0
#endif

/* The calling thread's part: the scope of the observed tp_setattro store it is making, and
 * how many reports it recorded since it last delivered (a hint: 0 means none). */
typedef struct {
    adapter_object *adapter;
    PyObject *name;
    int consumed;
} watch_scope;

typedef struct {
    watch_scope scope;
    uint64_t pending;
} snakepit_watch_local;

#if SNAKEPIT_DICT_WATCH
extern _Thread_local snakepit_watch_local snakepit_watch_current
    __attribute__((visibility("hidden"), tls_model("initial-exec")));
#endif

/* Module exec: register this instance's dict watcher.  None left: a RuntimeWarning, and such
 * writes stay unobserved for this instance.  0 or -1 (the warning raised as an error). */
int watch_module_init(snakepit_state *st);
/* Module free: release the watcher id. */
void watch_module_free(snakepit_state *st);

/* tp_new: make the adapter's instance dict and watch it.  0 or -1 with an exception. */
int watch_adapter_new(adapter_object *self);
/* tp_clear and dealloc, before the instance dict is released: stop watching it. */
void watch_adapter_forget(adapter_object *self);
/* The __dict__ setter: assign `value` (a dict, checked by the caller), watching it instead of
 * the old one.  0 or -1 with an exception. */
int watch_adapter_set_dict(adapter_object *self, PyObject *value);

/* `st`'s write observer was installed (had=0, has=1), removed (1, 0) or replaced (1, 1); called
 * after its observer lock is released (and at module clear).  Keeps the watcher's fast path
 * in step and drops the reports recorded for the old observer. */
void watch_observer_changed(snakepit_state *st, int had, int has);

/* Deliver the calling thread's recorded reports to their adapters' write observers, in the
 * order the writes happened.  Keeps the caller's pending exception; never fails (an observer's
 * exception is unraisable).  Returns how many reached an observer. */
Py_ssize_t watch_report_pending_slow(void);

static inline Py_ssize_t
watch_report_pending(void)
{
#if SNAKEPIT_DICT_WATCH
    if (snakepit_watch_current.pending != 0) {
        return watch_report_pending_slow();
    }
#endif
    return 0;
}

/* Around the PyObject_GenericSetAttr of a write that tp_setattro has just reported: the
 * watcher's event for that store (same adapter, same name object) is not recorded again. */
static inline void
watch_scope_enter(watch_scope *saved, adapter_object *adapter, PyObject *name)
{
#if SNAKEPIT_DICT_WATCH
    *saved = snakepit_watch_current.scope;
    snakepit_watch_current.scope = (watch_scope){adapter, name, 0};
#else
    (void)saved, (void)adapter, (void)name;
#endif
}

static inline void
watch_scope_exit(const watch_scope *saved)
{
#if SNAKEPIT_DICT_WATCH
    snakepit_watch_current.scope = *saved; /* a __del__ run by the store may have nested one */
#else
    (void)saved;
#endif
}

/* Reports recorded and not delivered yet, over every thread, and how many were dropped at
 * once for want of room (tests). */
void watch_pending_count(Py_ssize_t *pending, uint64_t *dropped);

/* In a forked child, before anything else of ours: reset the watcher's lock and drop the
 * reports of threads that do not exist here. */
void watch_after_fork_child(void);

#endif /* SNAKEPIT_WATCH_H */

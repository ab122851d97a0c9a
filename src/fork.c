/* Fork handling.  See fork.h.
 *
 * os.register_at_fork hooks: before fork, record which thread forks (and the parent's pid);
 * in the parent afterwards, forget it; in the child, before any other code of ours runs,
 * reset the short locks (the first lock of each does that), then make the library's state
 * match the one thread that exists there: every adapter lock held by another thread is free,
 * and the slots of other threads are dropped (their values released, their running requests
 * not counted, since those run in the parent). */
#include "fork.h"

#include "rlock.h"
#include "shards.h"
#include "watch.h"

#include <unistd.h>

void
snakepit_fork_check(fork_watch *watch, fork_safe_mutex *m)
{
#ifdef SNAKEPIT_HAVE_SPINLOCK
    unsigned long forking = atomic_load_explicit(&watch->thread, SNAKEPIT_RELAXED);
    if (forking != 0 && forking == PyThread_get_thread_ident()
        && (long)getpid() != atomic_load_explicit(&watch->parent_pid, SNAKEPIT_RELAXED)) {
        /* The forking thread, now alone in the child: start a new fork generation. */
        atomic_store_explicit(&watch->thread, 0, SNAKEPIT_RELAXED);
        atomic_fetch_add_explicit(&watch->generation, 1, SNAKEPIT_RELAXED);
    }
    unsigned int current = atomic_load_explicit(&watch->generation, SNAKEPIT_RELAXED);
    if (atomic_load_explicit(&m->generation, SNAKEPIT_RELAXED) != current) {
        snakepit_mutex_reset(&m->mutex);
        atomic_store_explicit(&m->generation, current, SNAKEPIT_RELAXED);
    }
#else
    (void)watch, (void)m;
#endif
}

static snakepit_state *
state_of(PyObject *module)
{
    return (snakepit_state *)PyModule_GetState(module);
}

static PyObject *
before_fork(PyObject *module, PyObject *Py_UNUSED(ignored))
{
    /* Nothing is held across fork: other before-fork hooks and the import lock run after
     * this, and a thread holding one of them may need the registry. */
    fork_watch *watch = &state_of(module)->fork;
    atomic_store_explicit(&watch->parent_pid, (long)getpid(), SNAKEPIT_RELAXED);
    atomic_store_explicit(&watch->thread, PyThread_get_thread_ident(), SNAKEPIT_RELAXED);
    Py_RETURN_NONE;
}

static PyObject *
after_fork_parent(PyObject *module, PyObject *Py_UNUSED(ignored))
{
    atomic_store_explicit(&state_of(module)->fork.thread, 0, SNAKEPIT_RELAXED);
    Py_RETURN_NONE;
}

/* Only the forking thread exists in the child.  CPython has already cleared the other
 * threads' states (and so their records, which retired their slots, dropping what they were
 * running); whatever is left of another thread goes too. */
static PyObject *
after_fork_child(PyObject *module, PyObject *Py_UNUSED(ignored))
{
    snakepit_state *st = state_of(module);
    unsigned long me = PyThread_get_thread_ident();
    thread_record *mine = record_current(st);
    release_list owned = {0};
    watch_after_fork_child(); /* its lock first, like the registry's below */
    registry_lock(st); /* resets the registry lock, if it came locked */
    observer_lock(st); /* and the observer lock */
    observer_unlock(st);
    SNAKEPIT_LIST_FOR_EACH (set_link, &st->registry.sets) {
        shard_set *set = shard_set_of_link(set_link);
        SNAKEPIT_LIST_FOR_EACH (slot_link, &set->slots) {
            shard_slot *slot = shard_slot_of_link(slot_link);
            if (slot->record != mine) {
                atomic_store_explicit(&slot->active, 0, SNAKEPIT_RELAXED);
                atomic_store_explicit(&slot->open_requests, 0, SNAKEPIT_RELAXED);
                shard_slot_retire(slot, &owned);
            }
        }
    }
    SNAKEPIT_LIST_FOR_EACH (lock_link, &st->registry.locks) {
        rlock_object *lock = SNAKEPIT_CONTAINER_OF(lock_link, rlock_object, registry_link);
        snakepit_lock_forget_other_owner(&lock->lock, me);
    }
    registry_unlock(st);
    release_list_run(&owned);
    Py_RETURN_NONE;
}

static PyMethodDef fork_hooks[] = {
    {"_before_fork", before_fork, METH_NOARGS, "os.register_at_fork(before=...) hook."},
    {"_after_fork_parent", after_fork_parent, METH_NOARGS,
     "os.register_at_fork(after_in_parent=...) hook."},
    {"_after_fork_child", after_fork_child, METH_NOARGS,
     "os.register_at_fork(after_in_child=...) hook."},
};

int
snakepit_fork_init(PyObject *module)
{
    PyObject *hooks[3] = {NULL, NULL, NULL};
    PyObject *os = NULL, *register_at_fork = NULL, *args = NULL, *kwargs = NULL, *result = NULL;
    int r = -1;
    for (int i = 0; i < 3; i++) {
        hooks[i] = PyCFunction_NewEx(&fork_hooks[i], module, NULL);
        if (hooks[i] == NULL
            || PyModule_AddObjectRef(module, fork_hooks[i].ml_name, hooks[i]) < 0) {
            goto done;
        }
    }
    os = PyImport_ImportModule("os");
    if (os == NULL) {
        goto done;
    }
    register_at_fork = PyObject_GetAttrString(os, "register_at_fork");
    args = PyTuple_New(0);
    kwargs = Py_BuildValue("{sOsOsO}", "before", hooks[0], "after_in_parent", hooks[1],
                           "after_in_child", hooks[2]);
    if (register_at_fork == NULL || args == NULL || kwargs == NULL) {
        goto done;
    }
    result = PyObject_Call(register_at_fork, args, kwargs);
    r = result == NULL ? -1 : 0;
done:
    for (int i = 0; i < 3; i++) {
        Py_XDECREF(hooks[i]);
    }
    Py_XDECREF(result);
    Py_XDECREF(kwargs);
    Py_XDECREF(args);
    Py_XDECREF(register_at_fork);
    Py_XDECREF(os);
    return r;
}

/* Version shims and small primitives shared by every native type.
 *
 * Supported: CPython 3.11+ with the GIL, and 3.13+ free-threaded.  Counters that other
 * threads read use C11 atomics (present on every supported build, unlike _Py_atomic_*
 * which is public only from 3.13).  Short internal locks: see snakepit_mutex below. */
#ifndef SNAKEPIT_COMPAT_H
#define SNAKEPIT_COMPAT_H

#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <pythread.h>
#include <assert.h>
#include <stdatomic.h>
#include <stdint.h>

/* A spin-wait hint to the CPU (lets a hyperthread sibling run, saves power). */
static inline void
snakepit_cpu_relax(void)
{
#if defined(__x86_64__) || defined(__i386__)
    __builtin_ia32_pause();
#elif defined(__aarch64__)
    __asm__ __volatile__("yield");
#endif
}

/* The library's own short internal locks (the registry and the observer slots).
 *
 * Not PyMutex: PyMutex_Lock detaches the thread state while it waits, and a parked waiter
 * may be handed the mutex on release.  A waiter handed it after interpreter finalization has
 * begun (a daemon thread) can never re-attach, so it would own the mutex forever and the
 * exiting main thread, which needs it to release the records of ended threads, would hang.
 * The sections these locks guard are short, never run Python code, never allocate Python
 * objects and never block, so a waiter spins (then yields the CPU) while staying attached:
 * the lock is only ever held by a thread that is running and about to release it.
 * On GIL builds the GIL already serialises these sections, so they compile to nothing (a
 * debug build still records the holder, for the assertions). */
#ifdef Py_GIL_DISABLED
#  define SNAKEPIT_HAVE_SPINLOCK 1
#  include <sched.h>
typedef struct {
    _Atomic int locked;
#  ifndef NDEBUG
    _Atomic unsigned long holder;
#  endif
} snakepit_mutex;

static inline int
snakepit_mutex_try(snakepit_mutex *m)
{
    int expected = 0;
    return atomic_compare_exchange_weak_explicit(&m->locked, &expected, 1, memory_order_acquire,
                                                 memory_order_relaxed);
}

static inline void
snakepit_mutex_lock(snakepit_mutex *m)
{
    while (!snakepit_mutex_try(m)) {
        /* Wait for it to look free before trying again, so waiters do not bounce its line. */
        for (unsigned int spins = 0; atomic_load_explicit(&m->locked, memory_order_relaxed);
             spins++) {
            if (spins < 100) {
                snakepit_cpu_relax();
            }
            else {
                sched_yield(); /* the holder may be preempted: let it run */
            }
        }
    }
#  ifndef NDEBUG
    atomic_store_explicit(&m->holder, PyThread_get_thread_ident(), memory_order_relaxed);
#  endif
}

static inline void
snakepit_mutex_unlock(snakepit_mutex *m)
{
    assert(atomic_load_explicit(&m->holder, memory_order_relaxed) == PyThread_get_thread_ident());
#  ifndef NDEBUG
    atomic_store_explicit(&m->holder, 0, memory_order_relaxed);
#  endif
    atomic_store_explicit(&m->locked, 0, memory_order_release);
}

/* Forget a state inherited from the parent of a fork (only the forking thread exists). */
static inline void
snakepit_mutex_reset(snakepit_mutex *m)
{
    atomic_store_explicit(&m->locked, 0, memory_order_relaxed);
#  ifndef NDEBUG
    atomic_store_explicit(&m->holder, 0, memory_order_relaxed);
#  endif
}
#elif !defined(NDEBUG)
typedef struct {
    unsigned long holder; /* the GIL orders every access */
} snakepit_mutex;
static inline void
snakepit_mutex_lock(snakepit_mutex *m)
{
    assert(PyGILState_Check() && m->holder == 0);
    m->holder = PyThread_get_thread_ident();
}
static inline void
snakepit_mutex_unlock(snakepit_mutex *m)
{
    assert(m->holder == PyThread_get_thread_ident());
    m->holder = 0;
}
static inline void
snakepit_mutex_reset(snakepit_mutex *m)
{
    m->holder = 0;
}
#else
typedef struct {
    char unused;
} snakepit_mutex;
#  define snakepit_mutex_lock(m) ((void)(m))
#  define snakepit_mutex_unlock(m) ((void)(m))
#  define snakepit_mutex_reset(m) ((void)(m))
#endif

/* For assertions: whether the calling thread holds `m` (always true in release builds). */
#ifdef NDEBUG
#  define snakepit_mutex_held(m) 1
#elif defined(Py_GIL_DISABLED)
#  define snakepit_mutex_held(m) \
      (atomic_load_explicit(&(m)->holder, memory_order_relaxed) == PyThread_get_thread_ident())
#else
#  define snakepit_mutex_held(m) ((m)->holder == PyThread_get_thread_ident())
#endif

#if PY_VERSION_HEX < 0x030C0000
#  include <structmember.h>
#  define Py_T_PYSSIZET T_PYSSIZET
#  define Py_T_OBJECT_EX T_OBJECT_EX
#  define Py_READONLY READONLY
#endif

#define SNAKEPIT_RELAXED memory_order_relaxed

/* Single-writer counter bump: only the owning thread writes, other threads read, so a
 * relaxed load + store is exact and avoids a locked read-modify-write on the hot path. */
#define SNAKEPIT_BUMP(field, delta)                                                             \
    atomic_store_explicit(&(field), atomic_load_explicit(&(field), SNAKEPIT_RELAXED) + (delta), \
                          SNAKEPIT_RELAXED)

static inline int
snakepit_dict_get_ref(PyObject *dict, PyObject *key, PyObject **result)
{
#if PY_VERSION_HEX >= 0x030D0000
    return PyDict_GetItemRef(dict, key, result);
#else
    PyObject *item = PyDict_GetItemWithError(dict, key);
    if (item != NULL) {
        *result = Py_NewRef(item);
        return 1;
    }
    *result = NULL;
    return PyErr_Occurred() ? -1 : 0;
#endif
}

/* Per-object critical sections (3.13+; they lock only on free-threaded builds).  Before 3.13
 * the GIL serialises what they guard. */
#if PY_VERSION_HEX < 0x030D0000
#  define Py_BEGIN_CRITICAL_SECTION(op) {
#  define Py_END_CRITICAL_SECTION() }
#  define Py_BEGIN_CRITICAL_SECTION2(a, b) {
#  define Py_END_CRITICAL_SECTION2() }
#endif

/* A strong reference to a weak reference's object: 1, 0 when it is dead (or dying: its count
 * reached zero), -1 with an exception.  Safe against a concurrent deallocation on 3.13t. */
static inline int
snakepit_weakref_get(PyObject *ref, PyObject **obj)
{
#if PY_VERSION_HEX >= 0x030D0000
    return PyWeakref_GetRef(ref, obj);
#else
    PyObject *target = PyWeakref_GetObject(ref); /* borrowed; None once its count is zero */
    if (target == NULL) {
        *obj = NULL;
        return -1;
    }
    *obj = target == Py_None ? NULL : Py_NewRef(target);
    return *obj != NULL;
#endif
}

/* Save and restore the current exception around a call that must not disturb it. */
#if PY_VERSION_HEX >= 0x030C0000
typedef struct {
    PyObject *exc;
} snakepit_exc_state;
static inline void
snakepit_exc_save(snakepit_exc_state *s)
{
    s->exc = PyErr_GetRaisedException();
}
static inline void
snakepit_exc_restore(snakepit_exc_state *s)
{
    PyErr_SetRaisedException(s->exc);
}
#else
typedef struct {
    PyObject *type, *value, *tb;
} snakepit_exc_state;
static inline void
snakepit_exc_save(snakepit_exc_state *s)
{
    PyErr_Fetch(&s->type, &s->value, &s->tb);
}
static inline void
snakepit_exc_restore(snakepit_exc_state *s)
{
    PyErr_Restore(s->type, s->value, s->tb);
}
#endif

#endif /* SNAKEPIT_COMPAT_H */

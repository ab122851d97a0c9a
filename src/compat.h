/* Version shims and small primitives shared by every native type.
 *
 * Supported: CPython 3.11+ with the GIL, and 3.13+ free-threaded.  Counters that other
 * threads read use C11 atomics (present on every supported build, unlike _Py_atomic_*
 * which is public only from 3.13).  Short internal locks are PyMutex on 3.13+; on 3.11 and
 * 3.12 the GIL already serialises the few C sections they guard (those sections never
 * release the GIL or run Python code), so they compile to nothing there. */
#ifndef SNAKEPIT_COMPAT_H
#define SNAKEPIT_COMPAT_H

#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <pythread.h>
#include <stdatomic.h>
#include <stdint.h>

#if PY_VERSION_HEX >= 0x030D0000
#  define SNAKEPIT_HAVE_PYMUTEX 1
typedef PyMutex snakepit_mutex;
#  define snakepit_mutex_lock(m) PyMutex_Lock(m)
#  define snakepit_mutex_unlock(m) PyMutex_Unlock(m)
#  define snakepit_mutex_reset(m) memset((m), 0, sizeof(PyMutex))
#else
typedef struct { char unused; } snakepit_mutex;
#  define snakepit_mutex_lock(m) ((void)(m))
#  define snakepit_mutex_unlock(m) ((void)(m))
#  define snakepit_mutex_reset(m) ((void)(m))
#endif

#if PY_VERSION_HEX < 0x030C0000
#  include <structmember.h>
#  define Py_T_PYSSIZET T_PYSSIZET
#  define Py_T_OBJECT_EX T_OBJECT_EX
#  define Py_READONLY READONLY
#endif

#define RELAXED memory_order_relaxed

/* Single-writer counter bump: only the owning thread writes, other threads read, so a
 * relaxed load + store is exact and avoids a locked read-modify-write on the hot path. */
#define BUMP(field, delta) \
    atomic_store_explicit(&(field), atomic_load_explicit(&(field), RELAXED) + (delta), RELAXED)

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

/* Save and restore the current exception around a call that must not disturb it. */
#if PY_VERSION_HEX >= 0x030C0000
typedef struct { PyObject *exc; } snakepit_exc_state;
static inline void snakepit_exc_save(snakepit_exc_state *s) { s->exc = PyErr_GetRaisedException(); }
static inline void snakepit_exc_restore(snakepit_exc_state *s) { PyErr_SetRaisedException(s->exc); }
#else
typedef struct { PyObject *type, *value, *tb; } snakepit_exc_state;
static inline void snakepit_exc_save(snakepit_exc_state *s) { PyErr_Fetch(&s->type, &s->value, &s->tb); }
static inline void snakepit_exc_restore(snakepit_exc_state *s) { PyErr_Restore(s->type, s->value, s->tb); }
#endif

#endif /* SNAKEPIT_COMPAT_H */

/* Objects to release after a registry section.  Releasing an object may run any Python code
 * (a __del__), which must never run under the registry lock: sections collect what they take
 * out of the registry here, and the caller releases it once the lock is released. */
#ifndef SNAKEPIT_RELEASE_H
#define SNAKEPIT_RELEASE_H

#include "compat.h"

typedef struct {
    PyObject **items;
    size_t n, capacity;
} release_list;

/* Takes the reference.  Out of memory, it leaks the object rather than run code under the
 * lock. */
static inline void
release_list_add(release_list *list, PyObject *obj)
{
    if (list->n == list->capacity) {
        size_t grown = list->capacity ? list->capacity * 2 : 16;
        PyObject **items = PyMem_Realloc(list->items, grown * sizeof(PyObject *));
        if (items == NULL) {
            return;
        }
        list->items = items;
        list->capacity = grown;
    }
    list->items[list->n++] = obj;
}

/* Release everything collected (no lock held) and empty the list. */
static inline void
release_list_run(release_list *list)
{
    for (size_t i = 0; i < list->n; i++) {
        Py_DECREF(list->items[i]);
    }
    PyMem_Free(list->items);
    list->items = NULL;
    list->n = list->capacity = 0;
}

#endif /* SNAKEPIT_RELEASE_H */

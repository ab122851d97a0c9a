/* Writes that bypass an adapter's tp_setattro.  See watch.h.
 *
 * Process-wide (one interpreter: module_exec refuses subinterpreters), shared by module
 * instances: a table from each watched dict to its adapter, and the list of recorded reports.
 * Both are guarded by one short lock, taken for C sections that never run Python code, never
 * block and never take a critical section (the watcher runs inside the dict's own critical
 * section on 3.13t, so a dict's critical section is always taken first).  Every change to a
 * dict's watch bit and its table entry is made under that dict's critical section, so the two
 * agree whatever other threads do to the dict. */
#include "watch.h"

#include "shards.h"

#if SNAKEPIT_DICT_WATCH

_Thread_local snakepit_watch_local snakepit_watch_current
    __attribute__((visibility("hidden"), tls_model("initial-exec")));

/* An entry exists exactly while its adapter is alive and uses that dict (until the adapter's
 * tp_clear or dealloc, or until another dict is assigned to its __dict__), so under the lock
 * `adapter` and its native parts are valid.  Only the weak reference may be used after it. */
typedef struct {
    PyObject *dict; /* the key; NULL: an empty slot */
    adapter_object *adapter;
    PyObject *weakref; /* to the adapter (a strong reference to the weakref object) */
} watch_entry;

typedef struct pending_write {
    struct pending_write *next;
    uint64_t thread; /* the writer's thread state id: delivered on that thread only */
    const snakepit_state *state; /* whose observer it was recorded for (never dereferenced) */
    PyObject *weakref;
    PyObject *name; /* the key; NULL: the whole dict changed (reported as "__dict__") */
    PyObject *filename; /* of the writing code; NULL: no Python frame */
    int lineno;
    int owns; /* the writer owned the adapter's lock */
} pending_write;

/* Beyond this many undelivered reports (their threads may have ended without reaching a
 * report point), new ones are counted and dropped. */
#  define WATCH_MAX_PENDING 65536
#  define WATCH_MIN_CAPACITY 64

static struct {
    snakepit_mutex lock;
    watch_entry *table; /* open addressing on the dict's address, linear probing */
    size_t capacity, used;
    pending_write *head, **tail;
    size_t n_pending;
    uint64_t dropped;
    uint64_t observer_changes; /* reports recorded across one are not kept */
} watch = {.tail = &watch.head};

/* How many module instances have a write observer: 0 keeps the watcher to two loads. */
static _Atomic int watch_observers;

static inline void
watch_lock(void)
{
    snakepit_mutex_lock(&watch.lock);
}

static inline void
watch_unlock(void)
{
    snakepit_mutex_unlock(&watch.lock);
}

/* ---------------------------------------------------------------- the table (lock held) */

static inline size_t
watch_home(const PyObject *dict, size_t mask)
{
    return (size_t)(((uintptr_t)dict >> 4) * 0x9E3779B97F4A7C15ull >> 32) & mask;
}

static watch_entry *
table_find(const PyObject *dict)
{
    if (watch.used == 0) {
        return NULL;
    }
    size_t mask = watch.capacity - 1;
    for (size_t i = watch_home(dict, mask);; i = (i + 1) & mask) {
        watch_entry *e = &watch.table[i];
        if (e->dict == dict) {
            return e;
        }
        if (e->dict == NULL) {
            return NULL;
        }
    }
}

static void
table_place(watch_entry *table, size_t capacity, watch_entry entry)
{
    size_t mask = capacity - 1;
    size_t i = watch_home(entry.dict, mask);
    while (table[i].dict != NULL) {
        i = (i + 1) & mask;
    }
    table[i] = entry;
}

/* Rehash into `capacity` slots; -1 when out of memory (the table is unchanged). */
static int
table_resize(size_t capacity)
{
    watch_entry *table = PyMem_RawCalloc(capacity, sizeof(watch_entry));
    if (table == NULL) {
        return -1;
    }
    for (size_t i = 0; i < watch.capacity; i++) {
        if (watch.table[i].dict != NULL) {
            table_place(table, capacity, watch.table[i]);
        }
    }
    PyMem_RawFree(watch.table);
    watch.table = table;
    watch.capacity = capacity;
    return 0;
}

/* Map `dict` to the adapter.  An entry of another adapter for the same dict (two adapters
 * were given one dict) is replaced: its weakref is returned, to release after the lock.
 * -1 when out of memory. */
static int
table_insert(PyObject *dict, adapter_object *adapter, PyObject *weakref, PyObject **replaced)
{
    *replaced = NULL;
    watch_entry *e = table_find(dict);
    if (e != NULL) {
        *replaced = e->weakref;
        e->adapter = adapter;
        e->weakref = Py_NewRef(weakref);
        return 0;
    }
    if ((watch.used + 1) * 4 > watch.capacity * 3
        && table_resize(watch.capacity ? watch.capacity * 2 : WATCH_MIN_CAPACITY) < 0) {
        return -1;
    }
    table_place(watch.table, watch.capacity, (watch_entry){dict, adapter, Py_NewRef(weakref)});
    watch.used++;
    return 0;
}

/* Remove `e` (backward-shift deletion: no tombstones); returns its weakref, to release after
 * the lock. */
static PyObject *
table_remove(watch_entry *e)
{
    PyObject *weakref = e->weakref;
    size_t mask = watch.capacity - 1;
    size_t hole = (size_t)(e - watch.table);
    for (size_t i = (hole + 1) & mask; watch.table[i].dict != NULL; i = (i + 1) & mask) {
        size_t home = watch_home(watch.table[i].dict, mask);
        /* Entry i may fill the hole unless its home lies cyclically in (hole, i]. */
        int stays = hole <= i ? (hole < home && home <= i) : (hole < home || home <= i);
        if (!stays) {
            watch.table[hole] = watch.table[i];
            hole = i;
        }
    }
    watch.table[hole] = (watch_entry){NULL, NULL, NULL};
    watch.used--;
    if (watch.capacity > WATCH_MIN_CAPACITY && watch.used * 8 < watch.capacity) {
        (void)table_resize(watch.capacity / 2); /* out of memory: stay large */
    }
    return weakref;
}

/* ---------------------------------------------------------------- the watcher */

static void
pending_free(pending_write *item)
{
    Py_XDECREF(item->weakref);
    Py_XDECREF(item->name);
    Py_XDECREF(item->filename);
    PyMem_RawFree(item);
}

/* The writing code's file and line (frames only; no Python code runs). */
static void
record_location(pending_write *item)
{
    snakepit_exc_state saved;
    snakepit_exc_save(&saved); /* the watcher may be entered with an exception set */
    PyFrameObject *frame = PyThreadState_GetFrame(PyThreadState_Get());
    if (frame != NULL) {
        /* The frame object and its code are owned by the running frame: these references
         * are never the last ones. */
        PyCodeObject *code = PyFrame_GetCode(frame);
        item->filename = Py_NewRef(code->co_filename);
        item->lineno = PyFrame_GetLineNumber(frame);
        Py_DECREF(code);
        Py_DECREF(frame);
    }
    PyErr_Clear(); /* PyThreadState_GetFrame clears its own failures; be sure */
    snakepit_exc_restore(&saved);
}

static Py_NO_INLINE int
watch_record(PyDict_WatchEvent event, PyObject *dict, PyObject *key)
{
    int whole = event != PyDict_EVENT_ADDED && event != PyDict_EVENT_MODIFIED
                && event != PyDict_EVENT_DELETED; /* CLEARED, CLONED */
    watch_lock();
    watch_entry *e = table_find(dict);
    if (e == NULL
        || !atomic_load_explicit(&e->adapter->state->observing_writes, SNAKEPIT_RELAXED)) {
        watch_unlock();
        return 0;
    }
    watch_scope *scope = &snakepit_watch_current.scope;
    if (!whole && scope->adapter == e->adapter && scope->name == key && !scope->consumed) {
        scope->consumed = 1; /* the store tp_setattro has just reported */
        watch_unlock();
        return 0;
    }
    if (watch.n_pending >= WATCH_MAX_PENDING) {
        watch.dropped++;
        watch_unlock();
        return 0;
    }
    const snakepit_state *st = e->adapter->state;
    int owns = snakepit_lock_is_owned(&e->adapter->lock->lock);
    PyObject *weakref = Py_NewRef(e->weakref);
    uint64_t changes = watch.observer_changes;
    watch_unlock();

    pending_write *item = PyMem_RawCalloc(1, sizeof(pending_write));
    if (item == NULL) {
        Py_DECREF(weakref); /* runs no code (at most frees the weakref object) */
        watch_lock();
        watch.dropped++; /* no exception may be raised here */
        watch_unlock();
        return 0;
    }
    item->thread = snakepit_thread_state_id();
    item->state = st;
    item->owns = owns;
    item->weakref = weakref;
    item->name = whole ? NULL : Py_NewRef(key);
    record_location(item);
    watch_lock();
    /* An observer removed or replaced meanwhile dropped what was recorded for it: so is this
     * (when another instance's observer changed, needlessly: a rare loss, never a wrong one). */
    int kept = watch.observer_changes == changes;
    if (kept) {
        *watch.tail = item;
        watch.tail = &item->next;
        watch.n_pending++; /* may pass the bound by the few recorded meanwhile */
    }
    watch_unlock();
    if (kept) {
        snakepit_watch_current.pending++;
    }
    else {
        pending_free(item); /* runs no code: at most the weakref object is freed */
    }
    return 0;
}

static int
watch_callback(PyDict_WatchEvent event, PyObject *dict, PyObject *key, PyObject *new_value)
{
    (void)new_value;
    if (event == PyDict_EVENT_DEALLOCATED
        || atomic_load_explicit(&watch_observers, SNAKEPIT_RELAXED) == 0) {
        return 0;
    }
    return watch_record(event, dict, key);
}

/* ---------------------------------------------------------------- module and adapters */

int
watch_module_init(snakepit_state *st)
{
    st->has_dict_watcher = 0;
    st->dict_watcher_id = PyDict_AddWatcher(watch_callback);
    if (st->dict_watcher_id >= 0) {
        st->has_dict_watcher = 1;
        return 0;
    }
    if (!PyErr_ExceptionMatches(PyExc_RuntimeError)) {
        return -1;
    }
    PyErr_Clear();
    return PyErr_WarnEx(PyExc_RuntimeWarning,
                        "snakepit_bridge._native: no dict watcher id is left in this interpreter "
                        "(CPython has 8, and reserves 2), so writes that bypass an adapter's "
                        "__setattr__ (object.__setattr__, vars(adapter)) are not reported to the "
                        "write observer",
                        1);
}

void
watch_module_free(snakepit_state *st)
{
    if (!st->has_dict_watcher) {
        return;
    }
    st->has_dict_watcher = 0;
    /* Every adapter of this instance is gone (each holds its type, which holds the module). */
    snakepit_exc_state saved;
    snakepit_exc_save(&saved);
    if (PyDict_ClearWatcher(st->dict_watcher_id) < 0) {
        PyErr_Clear();
    }
    snakepit_exc_restore(&saved);
}

/* Set `dict`'s watch bit and map it to `self`; the caller holds the dict's critical section
 * (or the dict is not shared yet). */
static int
watch_attach(adapter_object *self, PyObject *dict, PyObject *weakref)
{
    if (PyDict_Watch(self->state->dict_watcher_id, dict) < 0) {
        return -1;
    }
    PyObject *replaced;
    watch_lock();
    int r = table_insert(dict, self, weakref, &replaced);
    watch_unlock();
    Py_XDECREF(replaced); /* a weakref object: no code runs */
    if (r < 0) {
        /* The watch bit stays: a watched dict without an entry is reported for no one. */
        PyErr_NoMemory();
        return -1;
    }
    return 0;
}

/* Forget `dict` as `self`'s (if it still is) and clear its watch bit; the caller holds the
 * dict's critical section.  Keeps the caller's exception. */
static void
watch_detach(adapter_object *self, PyObject *dict)
{
    PyObject *weakref = NULL;
    watch_lock();
    watch_entry *e = table_find(dict);
    if (e != NULL && e->adapter == self) {
        weakref = table_remove(e);
    }
    watch_unlock();
    if (weakref == NULL) {
        return; /* never watched for self, or another adapter took it since */
    }
    snakepit_exc_state saved;
    snakepit_exc_save(&saved);
    if (PyDict_Unwatch(self->state->dict_watcher_id, dict) < 0) {
        PyErr_Clear(); /* cannot happen: the watcher lives as long as its adapters */
    }
    snakepit_exc_restore(&saved);
    Py_DECREF(weakref); /* the weakref object only: no code runs */
}

int
watch_adapter_new(adapter_object *self)
{
    if (!self->state->has_dict_watcher) {
        return 0;
    }
    /* The same dict a first attribute write would make (sharing the class's cached keys). */
    PyObject *dict = PyObject_GenericGetDict((PyObject *)self, NULL);
    if (dict == NULL) {
        return -1;
    }
    PyObject *weakref = PyWeakref_NewRef((PyObject *)self, NULL);
    int r = weakref == NULL ? -1 : watch_attach(self, dict, weakref); /* not shared yet */
    Py_XDECREF(weakref);
    Py_DECREF(dict);
    return r;
}

void
watch_adapter_forget(adapter_object *self)
{
    PyObject *dict = self->dict;
    if (dict == NULL || !self->state->has_dict_watcher) {
        return;
    }
    /* Called before the dict is released: the adapter's reference keeps it alive. */
    Py_BEGIN_CRITICAL_SECTION(dict);
    watch_detach(self, dict);
    Py_END_CRITICAL_SECTION();
}

static inline void
store_dict(adapter_object *self, PyObject *dict)
{
#  ifdef Py_GIL_DISABLED
    /* Readers load it without the adapter's critical section (as CPython's own do). */
    _Py_atomic_store_ptr_release(&self->dict, dict);
#  else
    self->dict = dict;
#  endif
}

int
watch_adapter_set_dict(adapter_object *self, PyObject *value)
{
    PyObject *op = (PyObject *)self;
    PyObject *old = NULL;
    int r = 0;
    if (!self->state->has_dict_watcher) {
        Py_BEGIN_CRITICAL_SECTION(op);
        old = self->dict;
        store_dict(self, Py_NewRef(value));
        Py_END_CRITICAL_SECTION();
        Py_XDECREF(old);
        return 0;
    }
    PyObject *weakref = PyWeakref_NewRef(op, NULL);
    if (weakref == NULL) {
        return -1;
    }
    Py_BEGIN_CRITICAL_SECTION2(op, value);
    if (self->dict != value) {
        r = watch_attach(self, value, weakref);
        if (r == 0) {
            old = self->dict;
            store_dict(self, Py_NewRef(value));
        }
    }
    Py_END_CRITICAL_SECTION2();
    Py_DECREF(weakref);
    if (old != NULL) {
        /* Out of the pair's section: a second critical section on `old` inside it could
         * suspend the pair.  Until then a write to the old dict still counts as self's. */
        Py_BEGIN_CRITICAL_SECTION(old);
        watch_detach(self, old);
        Py_END_CRITICAL_SECTION();
        Py_DECREF(old);
    }
    return r;
}

/* ---------------------------------------------------------------- reports */

/* Unlink the reports `select` accepts, in order (lock held). */
static pending_write *
take_reports(int (*select)(const pending_write *, const void *), const void *arg)
{
    pending_write *taken = NULL, **taken_tail = &taken;
    pending_write **link = &watch.head;
    while (*link != NULL) {
        pending_write *item = *link;
        if (select(item, arg)) {
            *link = item->next;
            item->next = NULL;
            *taken_tail = item;
            taken_tail = &item->next;
            watch.n_pending--;
        }
        else {
            link = &item->next;
        }
    }
    watch.tail = link;
    return taken;
}

static void
free_reports(pending_write *item)
{
    while (item != NULL) {
        pending_write *next = item->next;
        pending_free(item);
        item = next;
    }
}

static int
of_thread(const pending_write *item, const void *thread)
{
    return item->thread == *(const uint64_t *)thread;
}

static int
not_of_thread(const pending_write *item, const void *thread)
{
    return item->thread != *(const uint64_t *)thread;
}

static int
of_state(const pending_write *item, const void *st)
{
    return item->state == st;
}

/* Hand one report to its adapter's current write observer; 1 if one was called. */
static int
deliver(const pending_write *item)
{
    PyObject *adapter;
    int alive = snakepit_weakref_get(item->weakref, &adapter);
    if (alive <= 0) {
        PyErr_Clear();
        return 0; /* the adapter died first */
    }
    snakepit_state *st = ((adapter_object *)adapter)->state;
    PyObject *observer = observer_get(st, &st->write_observer);
    if (observer == NULL) {
        Py_DECREF(adapter);
        return 0;
    }
    PyObject *filename = item->filename ? item->filename : st->str_unknown_file;
    PyObject *name = item->name ? item->name : st->str_dunder_dict;
    PyObject *owns = item->owns ? Py_True : Py_False;
    PyObject *where = Py_BuildValue("(Oi)", filename, item->lineno);
    PyObject *r = NULL;
    if (where != NULL) {
        r = PyObject_CallFunctionObjArgs(observer, adapter, name, owns, where, NULL);
    }
    if (r == NULL) {
        PyErr_WriteUnraisable(observer); /* the write cannot be undone */
    }
    Py_XDECREF(r);
    Py_XDECREF(where);
    Py_DECREF(observer);
    Py_DECREF(adapter);
    return 1;
}

Py_ssize_t
watch_report_pending_slow(void)
{
    snakepit_watch_current.pending = 0;
    uint64_t me = snakepit_thread_state_id();
    watch_lock();
    pending_write *mine = take_reports(of_thread, &me);
    watch_unlock();
    if (mine == NULL) {
        return 0;
    }
    Py_ssize_t delivered = 0;
    snakepit_exc_state saved;
    snakepit_exc_save(&saved);
    while (mine != NULL) {
        /* An observer may record new reports of this thread: they wait for the next point. */
        pending_write *item = mine;
        mine = item->next;
        delivered += deliver(item);
        pending_free(item);
    }
    snakepit_exc_restore(&saved);
    return delivered;
}

void
watch_observer_changed(snakepit_state *st, int had, int has)
{
    if (has != had) {
        atomic_fetch_add_explicit(&watch_observers, has - had, SNAKEPIT_RELAXED);
    }
    if (!had) {
        return;
    }
    watch_lock();
    watch.observer_changes++;
    pending_write *dropped = take_reports(of_state, st);
    watch_unlock();
    free_reports(dropped); /* a key's __del__ may run: no lock is held */
}

void
watch_pending_count(Py_ssize_t *pending, uint64_t *dropped)
{
    watch_lock();
    *pending = (Py_ssize_t)watch.n_pending;
    *dropped = watch.dropped;
    watch_unlock();
}

void
watch_after_fork_child(void)
{
    /* Nobody can hold it at fork (its sections never detach, and CPython stops every other
     * thread at a safe point first); should it ever come locked, only this thread exists. */
    snakepit_mutex_reset(&watch.lock);
    uint64_t me = snakepit_thread_state_id();
    watch_lock();
    pending_write *gone = take_reports(not_of_thread, &me);
    watch_unlock();
    free_reports(gone);
}

#else /* before 3.12: no dict watchers */

int
watch_module_init(snakepit_state *st)
{
    st->has_dict_watcher = 0;
    st->dict_watcher_id = -1;
    return 0;
}

void
watch_module_free(snakepit_state *st)
{
    (void)st;
}

int
watch_adapter_new(adapter_object *self)
{
    (void)self;
    return 0;
}

void
watch_adapter_forget(adapter_object *self)
{
    (void)self;
}

int
watch_adapter_set_dict(adapter_object *self, PyObject *value)
{
    PyObject *old = self->dict;
    self->dict = Py_NewRef(value);
    Py_XDECREF(old);
    return 0;
}

void
watch_observer_changed(snakepit_state *st, int had, int has)
{
    (void)st, (void)had, (void)has;
}

Py_ssize_t
watch_report_pending_slow(void)
{
    return 0;
}

void
watch_pending_count(Py_ssize_t *pending, uint64_t *dropped)
{
    *pending = 0;
    *dropped = 0;
}

void
watch_after_fork_child(void)
{
}

#endif

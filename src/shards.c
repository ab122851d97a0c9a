/* Per-thread shards: thread records, slots and shard sets.  See shards.h. */
#include "shards.h"

#include <string.h>

#include <unistd.h>

_Thread_local snakepit_record_cache snakepit_current_record
    __attribute__((visibility("hidden"), tls_model("initial-exec")));

/* ---------------------------------------------------------------- slots */

static shard_slot *
slot_alloc(shard_set *set, thread_record *rec)
{
    /* Aligned by hand: PyMem_Malloc guarantees only 16 bytes. */
    size_t size =
        (sizeof(shard_slot) + SNAKEPIT_CACHE_LINE - 1) & ~(size_t)(SNAKEPIT_CACHE_LINE - 1);
    void *raw = PyMem_Malloc(size + SNAKEPIT_CACHE_LINE);
    if (raw == NULL) {
        PyErr_NoMemory();
        return NULL;
    }
    uintptr_t aligned =
        ((uintptr_t)raw + SNAKEPIT_CACHE_LINE - 1) & ~(uintptr_t)(SNAKEPIT_CACHE_LINE - 1);
    shard_slot *slot = (shard_slot *)aligned;
    memset(slot, 0, sizeof(*slot));
    slot->allocation = raw;
    slot->set_id = set->id;
    /* Serials start at 1: 0 means "started on no slot" to a request object. */
    slot->serial =
        atomic_fetch_add_explicit(&set->state->next_slot_serial, 1, SNAKEPIT_RELAXED) + 1;
    assert(slot->serial != 0);
    slot->record = rec;
    slot->name = rec->name; /* the owner's own record: read without the lock */
    slot->set = set;
    return slot;
}

static void
slot_free(shard_slot *slot)
{
    PyMem_Free(slot->allocation);
}

/* Registry lock held: what a slot owns (thread-local values, lock guard), to be released once
 * the lock is (releasing may run any Python code). */
static void
slot_take_objects(shard_slot *slot, release_list *owned)
{
    if (slot->values != NULL) {
        release_list_add(owned, slot->values);
        slot->values = NULL;
    }
    if (slot->guard != NULL) {
        release_list_add(owned, slot->guard);
        slot->guard = NULL;
    }
}

/* Registry lock held. */
static void
slot_unlink(shard_slot *slot)
{
    assert(registry_held(slot->set->state));
    snakepit_list_remove(&slot->set_link);
    slot->set->n_slots--;
    slot->set = NULL;
}

/* Registry lock held: add a finished thread's counts to its set's history. */
static void
retire_counts(shard_slot *slot)
{
    shard_set *set = slot->set;
    assert(registry_held(set->state));
    int64_t started = atomic_load_explicit(&slot->started, SNAKEPIT_RELAXED);
    set->retired_started += started;
    set->retired_completed += atomic_load_explicit(&slot->completed, SNAKEPIT_RELAXED);
    set->retired_errors += atomic_load_explicit(&slot->errors, SNAKEPIT_RELAXED);
    if (atomic_load_explicit(&slot->active, SNAKEPIT_RELAXED)) {
        /* Started and never ended (a thread gone mid-request): it ended, in error. */
        set->retired_completed++;
        set->retired_errors++;
        atomic_store_explicit(&slot->active, 0, SNAKEPIT_RELAXED);
    }
    /* Request objects it started may still be ended, by other threads: they stay open. */
    set->retired_open_requests +=
        atomic_exchange_explicit(&slot->open_requests, 0, SNAKEPIT_RELAXED);
    set->retired_busy_ticks += atomic_load_explicit(&slot->busy_ticks, SNAKEPIT_RELAXED);
    uint64_t max_ticks = atomic_load_explicit(&slot->max_ticks, SNAKEPIT_RELAXED);
    if (max_ticks > set->retired_max_ticks) {
        set->retired_max_ticks = max_ticks;
    }
    if (started == 0) {
        return;
    }
    set->retired_threads++;
    PyObject *name = slot->name != NULL ? slot->name : set->state->str_unnamed;
    for (Py_ssize_t i = 0; i < set->n_retired_names; i++) {
        if (set->retired_names[i].name == name
            || PyUnicode_Compare(set->retired_names[i].name, name) == 0) {
            set->retired_names[i].requests += started;
            return;
        }
    }
    /* PyUnicode_Compare of two str objects cannot fail. */
    if (set->n_retired_names < SNAKEPIT_MAX_RETIRED_NAMES) {
        if (set->retired_names == NULL) {
            set->retired_names = PyMem_Calloc(SNAKEPIT_MAX_RETIRED_NAMES, sizeof(retired_name));
        }
        if (set->retired_names != NULL) {
            set->retired_names[set->n_retired_names].name = Py_NewRef(name);
            set->retired_names[set->n_retired_names].requests = started;
            set->n_retired_names++;
            return;
        }
    }
    set->retired_other_requests += started;
}

void
shard_slot_retire(shard_slot *slot, release_list *owned)
{
    retire_counts(slot);
    slot_take_objects(slot, owned);
    slot_unlink(slot);
    atomic_store_explicit(&slot->dead, 1, memory_order_release);
}

/* ---------------------------------------------------------------- thread records */

/* Rebuild the table with room for one more live slot, freeing slots whose set died.
 * Owner thread only.  Returns 0 or -1 with MemoryError. */
static int
record_make_room(thread_record *rec)
{
    if ((rec->used + 1) * 2 <= rec->capacity) {
        return 0;
    }
    size_t live = 0;
    for (size_t i = 0; i < rec->capacity; i++) {
        shard_slot *slot = rec->table[i];
        if (slot != NULL && !atomic_load_explicit(&slot->dead, memory_order_acquire)) {
            live++;
        }
    }
    size_t capacity = 8;
    while ((live + 1) * 2 > capacity) {
        capacity *= 2;
    }
    shard_slot **table = PyMem_Calloc(capacity, sizeof(shard_slot *));
    if (table == NULL) {
        PyErr_NoMemory();
        return -1;
    }
    for (size_t i = 0; i < rec->capacity; i++) {
        shard_slot *slot = rec->table[i];
        if (slot == NULL) {
            continue;
        }
        if (atomic_load_explicit(&slot->dead, memory_order_acquire)) {
            /* Its set is gone and will never touch it again. */
            slot_free(slot);
            continue;
        }
        size_t j = shard_table_index(slot->set_id, capacity - 1);
        while (table[j] != NULL) {
            j = (j + 1) & (capacity - 1);
        }
        table[j] = slot;
    }
    PyMem_Free(rec->table);
    rec->table = table;
    rec->capacity = capacity;
    rec->used = live;
    rec->cached_id = 0;
    rec->cached_slot = NULL;
    return 0;
}

static void
record_insert(thread_record *rec, shard_slot *slot)
{
    size_t mask = rec->capacity - 1;
    size_t i = shard_table_index(slot->set_id, mask);
    while (rec->table[i] != NULL) {
        i = (i + 1) & mask;
    }
    rec->table[i] = slot;
    rec->used++;
}

/* Remove a slot from its owner's table (owner thread only), keeping linear probing valid
 * by shifting later entries of the run back. */
static void
record_remove(thread_record *rec, shard_slot *slot)
{
    if (rec->capacity == 0) {
        return;
    }
    size_t mask = rec->capacity - 1;
    size_t i = shard_table_index(slot->set_id, mask);
    while (rec->table[i] != slot) {
        if (rec->table[i] == NULL) {
            return;
        }
        i = (i + 1) & mask;
    }
    for (size_t j = (i + 1) & mask; rec->table[j] != NULL; j = (j + 1) & mask) {
        size_t home = shard_table_index(rec->table[j]->set_id, mask);
        /* Entry j may move to hole i unless its home lies cyclically in (i, j]. */
        int stays = i <= j ? (i < home && home <= j) : (i < home || home <= j);
        if (!stays) {
            rec->table[i] = rec->table[j];
            i = j;
        }
    }
    rec->table[i] = NULL;
    rec->used--;
    if (rec->cached_slot == slot) {
        rec->cached_id = 0;
        rec->cached_slot = NULL;
    }
}

PyObject *
snakepit_thread_name(unsigned long ident)
{
    PyObject *name = NULL;
    PyObject *threading = PyImport_ImportModule("threading");
    if (threading != NULL) {
        PyObject *active = PyObject_GetAttrString(threading, "_active");
        if (active != NULL) {
            PyObject *thread = PyObject_CallMethod(active, "get", "k", ident);
            if (thread != NULL && thread != Py_None) {
                name = PyObject_GetAttrString(thread, "name");
            }
            Py_XDECREF(thread);
            Py_DECREF(active);
        }
        Py_DECREF(threading);
    }
    if (name != NULL && !PyUnicode_Check(name)) {
        Py_SETREF(name, PyObject_Str(name));
    }
    if (name == NULL) {
        PyErr_Clear(); /* a name is a label; never fail a request over it */
    }
    return name;
}

static PyObject *
current_thread_name(void)
{
    unsigned long ident = PyThread_get_thread_ident();
    PyObject *name = snakepit_thread_name(ident);
    return name != NULL ? name : PyUnicode_FromFormat("Thread-%lu", ident);
}

/* A record already stored in this thread state's dict for this module: a live record of
 * this OS thread whose tss entry was lost (reinstalled), or of another OS thread using the
 * same thread state (an error: the record's table belongs to that thread alone, and
 * replacing the record would free it under that thread's cached pointer). */
static thread_record *
record_adopt(snakepit_state *st, PyObject *found)
{
    if (!PyObject_TypeCheck(found, st->record_type)) {
        PyErr_SetString(PyExc_RuntimeError, "snakepit_bridge: its per-thread record was replaced");
        return NULL;
    }
    thread_record *rec = (thread_record *)found;
    unsigned long me = PyThread_get_thread_ident();
    if (rec->ident != me) {
        PyErr_Format(PyExc_RuntimeError,
                     "snakepit_bridge: this Python thread state already belongs to OS thread %lu "
                     "and is now used by OS thread %lu; one thread state shared by several OS "
                     "threads is not supported",
                     rec->ident, me);
        return NULL;
    }
    if (PyThread_tss_set(st->record_tss, rec) != 0) {
        PyErr_SetString(PyExc_RuntimeError, "snakepit_bridge: PyThread_tss_set failed");
        return NULL;
    }
    snakepit_current_record.state = st;
    snakepit_current_record.record = rec;
    return rec;
}

static thread_record *
record_create(snakepit_state *st)
{
    PyObject *tdict = PyThreadState_GetDict();
    if (tdict == NULL) {
        PyErr_SetString(PyExc_RuntimeError, "snakepit_bridge: no thread state dict");
        return NULL;
    }
    /* Never overwrite a live record (see record_adopt). */
    PyObject *found;
    if (snakepit_dict_get_ref(tdict, st->record_key, &found) < 0) {
        return NULL;
    }
    if (found != NULL) {
        thread_record *adopted = record_adopt(st, found);
        Py_DECREF(found); /* the dict keeps it alive */
        return adopted;
    }
    thread_record *rec = PyObject_New(thread_record, st->record_type);
    if (rec == NULL) {
        return NULL;
    }
    rec->state = st;
    rec->module = NULL;
    rec->name = NULL;
    rec->ident = PyThread_get_thread_ident();
    rec->table = PyMem_Calloc(8, sizeof(shard_slot *));
    rec->capacity = 8;
    rec->used = 0;
    rec->cached_id = 0;
    rec->cached_slot = NULL;
    if (rec->table == NULL) {
        rec->capacity = 0;
        Py_DECREF(rec);
        PyErr_NoMemory();
        return NULL;
    }
    rec->module = PyType_GetModule(st->record_type);
    if (rec->module == NULL) {
        Py_DECREF(rec);
        return NULL;
    }
    Py_INCREF(rec->module);
    /* The thread state dict owns the record; it is cleared when the thread ends. */
    if (PyDict_SetItem(tdict, st->record_key, (PyObject *)rec) < 0) {
        Py_DECREF(rec);
        return NULL;
    }
    Py_DECREF(rec);
    if (PyThread_tss_set(st->record_tss, rec) != 0) {
        PyErr_SetString(PyExc_RuntimeError, "snakepit_bridge: PyThread_tss_set failed");
        (void)PyDict_DelItem(tdict, st->record_key);
        return NULL;
    }
    snakepit_current_record.state = st;
    snakepit_current_record.record = rec;
    /* Published first: looking the name up runs Python code, which may use the library
     * on this thread again and must find this record. */
    PyObject *name = current_thread_name();
    if (name != NULL) {
        registry_lock(st);
        PyObject *previous = rec->name;
        rec->name = name;
        /* The slots made while the name was looked up (see above) name it too. */
        for (size_t i = 0; i < rec->capacity; i++) {
            if (rec->table[i] != NULL) {
                rec->table[i]->name = name;
            }
        }
        registry_unlock(st);
        Py_XDECREF(previous);
    }
    else {
        PyErr_Clear();
    }
    return rec;
}

static void
record_dealloc(PyObject *self)
{
    thread_record *rec = (thread_record *)self;
    snakepit_state *st = rec->state;
    PyTypeObject *tp = Py_TYPE(self);
    if (PyThread_tss_get(st->record_tss) == rec) {
        /* The thread is ending.  Release its values while the record is still installed:
         * a value's __del__ may use the library on this thread, and must find this record
         * rather than build one that nothing would ever clear.  Repeat while releasing
         * creates more (bounded). */
        for (int pass = 0; pass < 8; pass++) {
            release_list owned = {0};
            registry_lock(st);
            for (size_t i = 0; i < rec->capacity; i++) {
                shard_slot *slot = rec->table[i];
                if (slot != NULL && !atomic_load_explicit(&slot->dead, memory_order_acquire)) {
                    slot_take_objects(slot, &owned);
                }
            }
            registry_unlock(st);
            if (owned.n == 0) {
                PyMem_Free(owned.items);
                break;
            }
            release_list_run(&owned);
        }
        (void)PyThread_tss_set(st->record_tss, NULL);
        /* While this thread state ends, it makes no new shards (its calls run untracked). */
        snakepit_current_record.exiting_state_id = snakepit_thread_state_id();
    }
    if (snakepit_current_record.record == rec) {
        snakepit_current_record.state = NULL;
        snakepit_current_record.record = NULL;
    }
    /* Freed by another OS thread: a forked child clearing the states of the parent's other
     * threads (their requests run in the parent, not here), or interpreter exit.  Their
     * in-flight requests are dropped, not counted as ended. */
    int elsewhere = rec->ident != PyThread_get_thread_ident();
    release_list owned = {0};
    registry_lock(st);
    for (size_t i = 0; i < rec->capacity; i++) {
        shard_slot *slot = rec->table[i];
        if (slot == NULL || atomic_load_explicit(&slot->dead, memory_order_acquire)) {
            continue;
        }
        if (elsewhere) {
            atomic_store_explicit(&slot->active, 0, SNAKEPIT_RELAXED);
            atomic_store_explicit(&slot->open_requests, 0, SNAKEPIT_RELAXED);
        }
        shard_slot_retire(slot, &owned);
    }
    registry_unlock(st);
    for (size_t i = 0; i < rec->capacity; i++) {
        if (rec->table[i] != NULL) {
            slot_free(rec->table[i]);
        }
    }
    PyMem_Free(rec->table);
    release_list_run(&owned);
    Py_XDECREF(rec->name);
    PyObject *module = rec->module;
    PyObject_Free(self);
    Py_DECREF(tp);
    Py_XDECREF(module);
}

static PyType_Slot record_slots[] = {
    {Py_tp_dealloc, record_dealloc},
    {Py_tp_doc, "Per-thread record of snakepit_bridge shards (internal)."},
    {0, NULL},
};

PyType_Spec snakepit_record_spec = {
    .name = "snakepit_bridge._native._ThreadRecord",
    .basicsize = sizeof(thread_record),
    .flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_IMMUTABLETYPE | Py_TPFLAGS_DISALLOW_INSTANTIATION,
    .slots = record_slots,
};

shard_slot *
shard_get_slow(shard_set *set)
{
    snakepit_state *st = set->state;
    thread_record *rec = record_current(st);
    if (rec == NULL) {
        if (shard_thread_exiting()) {
            return NULL; /* no exception: the caller runs without a shard */
        }
        rec = record_create(st);
        if (rec == NULL) {
            return NULL;
        }
    }
    /* Creating the record ran Python code (the thread-name lookup), which may already
     * have made this slot. */
    shard_slot *found = shard_find(set);
    if (found != NULL) {
        return found;
    }
    if (record_make_room(rec) < 0) {
        return NULL;
    }
    shard_slot *slot = slot_alloc(set, rec);
    if (slot == NULL) {
        return NULL;
    }
    registry_lock(st);
    snakepit_list_push(&set->slots, &slot->set_link);
    set->n_slots++;
    registry_unlock(st);
    record_insert(rec, slot);
    rec->cached_id = set->id;
    rec->cached_slot = slot;
    return slot;
}

/* ---------------------------------------------------------------- shard sets */

void
shard_set_init(snakepit_state *st, shard_set *set)
{
    memset(set, 0, sizeof(*set));
    set->state = st;
    set->id = atomic_fetch_add_explicit(&st->next_set_id, 1, SNAKEPIT_RELAXED);
    snakepit_list_init(&set->slots);
    registry_lock(st);
    snakepit_list_push(&st->registry.sets, &set->registry_link);
    registry_unlock(st);
}

void
shard_set_fini(shard_set *set)
{
    snakepit_state *st = set->state;
    if (st == NULL) {
        return; /* never initialised */
    }
    release_list owned = {0};
    /* Slots of the calling thread are freed at once (the common case of an adapter made
     * and dropped on one thread); other threads free theirs when they next grow. */
    thread_record *mine = record_current(st);
    snakepit_link free_now;
    snakepit_list_init(&free_now);
    registry_lock(st);
    SNAKEPIT_LIST_FOR_EACH (link, &set->slots) {
        shard_slot *slot = shard_slot_of_link(link);
        slot_take_objects(slot, &owned);
        slot_unlink(slot);
        if (mine != NULL && slot->record == mine) {
            snakepit_list_push(&free_now, &slot->set_link);
        }
        else {
            /* From here on only the owning thread touches the slot, to free it. */
            atomic_store_explicit(&slot->dead, 1, memory_order_release);
        }
    }
    snakepit_list_remove(&set->registry_link);
    registry_unlock(st);
    SNAKEPIT_LIST_FOR_EACH (link, &free_now) {
        shard_slot *slot = shard_slot_of_link(link);
        record_remove(mine, slot);
        slot_free(slot);
    }
    release_list_run(&owned);
    for (Py_ssize_t i = 0; i < set->n_retired_names; i++) {
        Py_DECREF(set->retired_names[i].name);
    }
    PyMem_Free(set->retired_names);
    set->retired_names = NULL;
    set->n_retired_names = 0;
    set->state = NULL;
}

void
shard_set_clear_values(shard_set *set)
{
    snakepit_state *st = set->state;
    if (st == NULL) {
        return;
    }
    release_list owned = {0};
    registry_lock(st);
    SNAKEPIT_LIST_FOR_EACH (link, &set->slots) {
        shard_slot *s = shard_slot_of_link(link);
        slot_take_objects(s, &owned);
    }
    registry_unlock(st);
    release_list_run(&owned);
}

/* Called by the garbage collector: on free-threaded builds the world is stopped, and on
 * GIL builds the GIL is held; no thread can be inside a registry section either way,
 * because those sections never allocate Python objects or release the GIL. */
int
shard_set_traverse_values(shard_set *set, visitproc visit, void *arg)
{
    if (set->state == NULL) {
        return 0;
    }
    SNAKEPIT_LIST_FOR_EACH (link, &set->slots) {
        shard_slot *s = shard_slot_of_link(link);
        Py_VISIT(s->values);
    }
    return 0;
}

int
shard_set_snapshot(shard_set *set, shard_snapshot *snap)
{
    snakepit_state *st = set->state;
    /* The inline entries are written before they are read: only the totals need zeroing. */
    memset(snap, 0, offsetof(shard_snapshot, inline_names));
    registry_lock(st);
    Py_ssize_t capacity = set->n_retired_names + set->n_slots;
    if (capacity > 0 && capacity <= SNAKEPIT_SNAPSHOT_INLINE) {
        snap->by_name = snap->inline_names; /* the common case needs no allocation */
    }
    else if (capacity > 0) {
        snap->by_name = PyMem_Calloc((size_t)capacity, sizeof(retired_name));
        if (snap->by_name == NULL) {
            registry_unlock(st);
            PyErr_NoMemory();
            return -1;
        }
    }
    snap->started = set->retired_started;
    snap->completed = set->retired_completed;
    snap->errors = set->retired_errors;
    snap->busy_ticks = set->retired_busy_ticks;
    snap->max_ticks = set->retired_max_ticks;
    snap->threads_seen = set->retired_threads;
    snap->active_requests = set->retired_open_requests;
    snap->other_requests = set->retired_other_requests;
    for (Py_ssize_t i = 0; i < set->n_retired_names; i++) {
        snap->by_name[snap->n_by_name].name = Py_NewRef(set->retired_names[i].name);
        snap->by_name[snap->n_by_name].requests = set->retired_names[i].requests;
        snap->n_by_name++;
    }
    SNAKEPIT_LIST_FOR_EACH (link, &set->slots) {
        shard_slot *s = shard_slot_of_link(link);
        int64_t started = atomic_load_explicit(&s->started, SNAKEPIT_RELAXED);
        snap->started += started;
        snap->completed += atomic_load_explicit(&s->completed, SNAKEPIT_RELAXED);
        snap->errors += atomic_load_explicit(&s->errors, SNAKEPIT_RELAXED);
        snap->busy_ticks += atomic_load_explicit(&s->busy_ticks, SNAKEPIT_RELAXED);
        uint64_t max_ticks = atomic_load_explicit(&s->max_ticks, SNAKEPIT_RELAXED);
        if (max_ticks > snap->max_ticks) {
            snap->max_ticks = max_ticks;
        }
        int running = atomic_load_explicit(&s->active, SNAKEPIT_RELAXED) != 0;
        int64_t open = atomic_load_explicit(&s->open_requests, SNAKEPIT_RELAXED);
        snap->active_requests += running + open;
        snap->active_threads += running || open > 0;
        if (started > 0) {
            snap->threads_seen++;
            snap->by_name[snap->n_by_name].name =
                Py_NewRef(s->name != NULL ? s->name : st->str_unnamed);
            snap->by_name[snap->n_by_name].requests = started;
            snap->n_by_name++;
        }
    }
    registry_unlock(st);
    return 0;
}

int64_t
shard_set_active(shard_set *set)
{
    snakepit_state *st = set->state;
    registry_lock(st);
    int64_t active = set->retired_open_requests;
    SNAKEPIT_LIST_FOR_EACH (link, &set->slots) {
        shard_slot *s = shard_slot_of_link(link);
        active += (atomic_load_explicit(&s->active, SNAKEPIT_RELAXED) != 0)
                  + atomic_load_explicit(&s->open_requests, SNAKEPIT_RELAXED);
    }
    registry_unlock(st);
    return active;
}

/* Registry lock held: one request object started on the slot with this serial is closed. */
static void
close_started_on(shard_set *set, uint64_t started_on)
{
    assert(registry_held(set->state));
    if (started_on == 0) {
        return;
    }
    SNAKEPIT_LIST_FOR_EACH (link, &set->slots) {
        shard_slot *s = shard_slot_of_link(link);
        if (s->serial == started_on) {
            atomic_fetch_sub_explicit(&s->open_requests, 1, SNAKEPIT_RELAXED);
            return;
        }
    }
    /* Its thread has ended and folded it in.  (Not below zero: a forked child drops the
     * open requests of the parent's other threads, and may still end one of those.) */
    if (set->retired_open_requests > 0) {
        set->retired_open_requests--;
    }
}

void
shard_set_close_remote(shard_set *set, uint64_t started_on)
{
    registry_lock(set->state);
    close_started_on(set, started_on);
    registry_unlock(set->state);
}

void
shard_set_end_detached(shard_set *set, uint64_t started_on, uint64_t elapsed_ticks, int error)
{
    registry_lock(set->state);
    close_started_on(set, started_on);
    set->retired_completed++;
    set->retired_errors += error != 0;
    set->retired_busy_ticks += elapsed_ticks;
    if (elapsed_ticks > set->retired_max_ticks) {
        set->retired_max_ticks = elapsed_ticks;
    }
    registry_unlock(set->state);
}

void
shard_snapshot_release(shard_snapshot *snap)
{
    for (Py_ssize_t i = 0; i < snap->n_by_name; i++) {
        Py_DECREF(snap->by_name[i].name);
    }
    if (snap->by_name != snap->inline_names) {
        PyMem_Free(snap->by_name);
    }
    snap->by_name = NULL;
    snap->n_by_name = 0;
}

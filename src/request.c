/* Request objects.  See request.h. */
#include "request.h"

enum {
    REQUEST_NEW, /* made, not entered */
    REQUEST_COUNTED, /* entered and counted: a request of its own */
    REQUEST_NESTED, /* entered inside another request of the tracker: counted by that one */
    REQUEST_DONE, /* exited (or abandoned) */
};

typedef struct request_object {
    PyObject_HEAD
    tracker_object *tracker;
    PyObject *parent; /* the context's current request when this one was entered */
    PyObject *context_token; /* to restore the context on exit; NULL once restored */
    uint64_t start_ticks;
    uint64_t started_on; /* serial of the starting thread's slot; 0 if none */
    _Atomic int state; /* read by other threads walking a context's chain */
} request_object;

PyObject *
request_new(tracker_object *tracker)
{
    snakepit_state *st = tracker->state;
    request_object *self = PyObject_GC_New(request_object, st->request_type);
    if (self == NULL) {
        return NULL;
    }
    self->tracker = (tracker_object *)Py_NewRef(tracker);
    self->parent = NULL;
    self->context_token = NULL;
    self->start_ticks = 0;
    self->started_on = 0;
    atomic_store_explicit(&self->state, REQUEST_NEW, SNAKEPIT_RELAXED);
    PyObject_GC_Track(self);
    return (PyObject *)self;
}

static int
request_is_open(request_object *req)
{
    int state = atomic_load_explicit(&req->state, SNAKEPIT_RELAXED);
    return state == REQUEST_COUNTED || state == REQUEST_NESTED;
}

int
request_chain_has_open(snakepit_state *st, PyObject *innermost, tracker_object *tracker)
{
    /* Parents are set before a request is published in a context and kept until it is
     * freed, and each request holds its parent: the chain is stable while we hold its head. */
    for (PyObject *op = innermost; op != NULL && Py_IS_TYPE(op, st->request_type);
         op = ((request_object *)op)->parent) {
        request_object *req = (request_object *)op;
        if (req->tracker == tracker && request_is_open(req)) {
            return 1;
        }
    }
    return 0;
}

int
tracker_inside_request_object(snakepit_state *st, tracker_object *tracker)
{
    PyObject *current = NULL;
    if (PyContextVar_Get(st->current_request, NULL, &current) < 0) {
        PyErr_Clear();
        return 0;
    }
    int inside = request_chain_has_open(st, current, tracker);
    Py_XDECREF(current);
    return inside;
}

int
request_begin(PyObject *op)
{
    request_object *self = (request_object *)op;
    tracker_object *tracker = self->tracker;
    snakepit_state *st = tracker->state;
    if (atomic_load_explicit(&self->state, SNAKEPIT_RELAXED) != REQUEST_NEW) {
        PyErr_SetString(PyExc_RuntimeError, "this request object was already entered; "
                                            "track_request() makes one per request");
        return -1;
    }
    shard_slot *slot = shard_get(&tracker->set);
    if (slot == NULL && PyErr_Occurred()) {
        return -1;
    }
    PyObject *parent = NULL;
    if (PyContextVar_Get(st->current_request, NULL, &parent) < 0) {
        return -1;
    }
    /* Inside a call-stack request of this thread (a decorated call), or inside a request
     * object of the context: counted by that one.  A thread that is exiting has no slot and
     * is not tracked. */
    int nested = slot == NULL || slot->depth > 0 || request_chain_has_open(st, parent, tracker);
    self->parent = parent; /* set before the request is published in a context */
    atomic_fetch_add_explicit(&st->open_request_objects, 1, SNAKEPIT_RELAXED);
    if (nested) {
        atomic_store_explicit(&self->state, REQUEST_NESTED, SNAKEPIT_RELAXED);
        return 0;
    }
    assert(slot->record == record_current(st));
    self->start_ticks = snakepit_ticks(&st->clock);
    self->started_on = slot->serial;
    SNAKEPIT_BUMP(slot->started, 1);
    atomic_fetch_add_explicit(&slot->open_requests, 1, SNAKEPIT_RELAXED);
    atomic_store_explicit(&self->state, REQUEST_COUNTED, SNAKEPIT_RELAXED);
    return 0;
}

PyObject *
request_push(PyObject *op)
{
    request_object *self = (request_object *)op;
    return PyContextVar_Set(self->tracker->state->current_request, op);
}

void
request_pop(PyObject *op, PyObject *token)
{
    /* Fails when popped in another context (another task or thread): that context was never
     * changed, and the one it was pushed in keeps a closed request, which every check skips. */
    if (PyContextVar_Reset(((request_object *)op)->tracker->state->current_request, token) < 0) {
        PyErr_Clear();
    }
}

/* Leave the open state exactly once (a request may be ended by one thread while another
 * frees it, or exited twice by mistake).  Returns the state it left, or REQUEST_NEW /
 * REQUEST_DONE when it was not open. */
static int
request_close(request_object *self)
{
    int state = atomic_load_explicit(&self->state, SNAKEPIT_RELAXED);
    while (state == REQUEST_COUNTED || state == REQUEST_NESTED) {
        if (atomic_compare_exchange_weak_explicit(&self->state, &state, REQUEST_DONE,
                                                  SNAKEPIT_RELAXED, SNAKEPIT_RELAXED)) {
            atomic_fetch_sub_explicit(&self->tracker->state->open_request_objects, 1,
                                      SNAKEPIT_RELAXED);
            return state;
        }
    }
    return state;
}

/* Count the end of a request that request_close() just closed (from `state`). */
static int
request_count_end(request_object *self, int state, int error)
{
    if (state != REQUEST_COUNTED) {
        return state == REQUEST_NESTED;
    }
    tracker_object *tracker = self->tracker;
    snakepit_state *st = tracker->state;
    uint64_t elapsed = tracker_elapsed(st, self->start_ticks);
    shard_slot *slot = shard_get(&tracker->set);
    if (slot == NULL) {
        /* An exiting thread (or no memory for a slot): the set counts it. */
        shard_set_end_detached(&tracker->set, self->started_on, elapsed, error);
        return PyErr_Occurred() ? -1 : 1;
    }
    assert(slot->record == record_current(st));
    tracker_count_end(slot, elapsed, error);
    if (slot->serial == self->started_on) {
        atomic_fetch_sub_explicit(&slot->open_requests, 1, SNAKEPIT_RELAXED);
    }
    else {
        shard_set_close_remote(&tracker->set, self->started_on);
    }
    return 1;
}

int
request_finish(PyObject *op, int error)
{
    request_object *self = (request_object *)op;
    return request_count_end(self, request_close(self), error);
}

void
request_abandon(PyObject *op, int error)
{
    request_object *self = (request_object *)op;
    if (request_close(self) == REQUEST_COUNTED) {
        shard_set_end_detached(&self->tracker->set, self->started_on,
                               tracker_elapsed(self->tracker->state, self->start_ticks), error);
    }
}

static PyObject *
request_enter(PyObject *op, PyObject *Py_UNUSED(ignored))
{
    request_object *self = (request_object *)op;
    if (request_begin(op) < 0) {
        return NULL;
    }
    PyObject *token = request_push(op);
    if (token == NULL) {
        request_abandon(op, 1);
        return NULL;
    }
    self->context_token = token;
    Py_RETURN_NONE;
}

static PyObject *
request_exit(PyObject *op, PyObject *const *args, Py_ssize_t nargs)
{
    request_object *self = (request_object *)op;
    if (nargs != 3) {
        PyErr_Format(PyExc_TypeError, "__exit__() takes 3 positional arguments (%zd given)", nargs);
        return NULL;
    }
    /* Closed first, so that of two racing exits only one goes on to touch the token. */
    int state = request_close(self);
    if (state == REQUEST_NEW) {
        PyErr_SetString(PyExc_RuntimeError, "this request object was never entered");
        return NULL;
    }
    if (state == REQUEST_DONE) {
        PyErr_SetString(PyExc_RuntimeError, "this request has already ended");
        return NULL;
    }
    PyObject *token = self->context_token;
    if (token != NULL) {
        self->context_token = NULL;
        request_pop(op, token);
        Py_DECREF(token);
    }
    if (request_count_end(self, state, args[0] != Py_None) < 0) {
        return NULL;
    }
    Py_RETURN_FALSE;
}

static int
request_traverse(PyObject *op, visitproc visit, void *arg)
{
    request_object *self = (request_object *)op;
    Py_VISIT(Py_TYPE(op));
    Py_VISIT(self->tracker);
    Py_VISIT(self->parent);
    Py_VISIT(self->context_token); /* the token refers to the context, which refers to us */
    return 0;
}

static int
request_clear(PyObject *op)
{
    request_object *self = (request_object *)op;
    Py_CLEAR(self->parent);
    Py_CLEAR(self->context_token);
    return 0;
}

static void
request_dealloc(PyObject *op)
{
    request_object *self = (request_object *)op;
    PyTypeObject *tp = Py_TYPE(op);
    PyObject_GC_UnTrack(op);
    /* Entered and never exited (dropped, or collected with its context): it ended, in
     * error, now.  Counted without a slot: freeing may happen on any thread, at any time. */
    request_abandon(op, 1);
    (void)request_clear(op);
    Py_CLEAR(self->tracker);
    PyObject_GC_Del(op);
    Py_DECREF(tp);
}

static PyObject *
request_repr(PyObject *op)
{
    static const char *names[] = {"new", "open", "open (nested)", "ended"};
    int state = atomic_load_explicit(&((request_object *)op)->state, SNAKEPIT_RELAXED);
    return PyUnicode_FromFormat("<%s request at %p>", names[state], op);
}

static PyMethodDef request_methods[] = {
    {"__enter__", request_enter, METH_NOARGS, "Start the request (once)."},
    {"__exit__", (PyCFunction)(void (*)(void))request_exit, METH_FASTCALL,
     "__exit__(exc_type, exc, tb, /)\n--\n\nEnd the request, as an error if exc_type is not None."},
    {NULL, NULL, 0, NULL},
};

static PyType_Slot request_slots[] = {
    {Py_tp_dealloc, request_dealloc},
    {Py_tp_traverse, request_traverse},
    {Py_tp_clear, request_clear},
    {Py_tp_repr, request_repr},
    {Py_tp_methods, request_methods},
    {Py_tp_doc, "One request of a RequestTracker, as a context manager (made by track_request()).\n"
                "It may be exited on another thread than the one that entered it."},
    {0, NULL},
};

PyType_Spec snakepit_request_spec = {
    .name = "snakepit_bridge._native._Request",
    .basicsize = sizeof(request_object),
    .flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_HAVE_GC | Py_TPFLAGS_IMMUTABLETYPE
             | Py_TPFLAGS_DISALLOW_INSTANTIATION,
    .slots = request_slots,
};

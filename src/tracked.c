/* Tracked coroutines and generators.  See tracked.h. */
#include "tracked.h"

#include "method.h"
#include "request.h"

enum { PHASE_NEW, PHASE_BEGUN, PHASE_DONE };
enum { RESUME_SEND, RESUME_THROW, RESUME_CLOSE };
enum { OUTCOME_YIELD, OUTCOME_RETURN, OUTCOME_ERROR };

typedef struct tracked_object {
    PyObject_HEAD
    snakepit_state *state;
    PyObject *inner; /* the coroutine, generator, async generator or step awaitable */
    PyObject *request; /* the request object; NULL in a step (its owner's is used) */
    PyObject *method; /* for the call observer */
    PyObject *adapter; /* for the call observer */
    struct tracked_object *owner; /* a step's async generator; NULL otherwise */
    int kind;
    int closes; /* a step made by aclose(): completing it closes the owner */
    _Atomic int running; /* a step of this object is running (no concurrent resumption) */
    _Atomic int phase; /* of the request: PHASE_* (owners only) */
} tracked_object;

int
tracked_kind_of(PyObject *func)
{
    if (!PyFunction_Check(func)) {
        return TRACKED_NONE;
    }
    int flags = ((PyCodeObject *)PyFunction_GET_CODE(func))->co_flags;
    if (flags & CO_ASYNC_GENERATOR) {
        return TRACKED_ASYNC_GENERATOR;
    }
    if (flags & CO_COROUTINE) {
        return TRACKED_COROUTINE;
    }
    if (flags & CO_GENERATOR) {
        return TRACKED_GENERATOR;
    }
    return TRACKED_NONE;
}

static PyTypeObject *
tracked_type(snakepit_state *st, int kind)
{
    switch (kind) {
    case TRACKED_COROUTINE:
        return st->tracked_coroutine_type;
    case TRACKED_GENERATOR:
        return st->tracked_generator_type;
    default:
        return st->tracked_async_generator_type;
    }
}

static tracked_object *
tracked_alloc(snakepit_state *st, PyTypeObject *type, PyObject *inner)
{
    tracked_object *self = PyObject_GC_New(tracked_object, type);
    if (self == NULL) {
        Py_DECREF(inner);
        return NULL;
    }
    self->state = st;
    self->inner = inner;
    self->request = NULL;
    self->method = NULL;
    self->adapter = NULL;
    self->owner = NULL;
    self->kind = TRACKED_NONE;
    self->closes = 0;
    atomic_store_explicit(&self->running, 0, SNAKEPIT_RELAXED);
    atomic_store_explicit(&self->phase, PHASE_NEW, SNAKEPIT_RELAXED);
    return self;
}

PyObject *
tracked_new(snakepit_state *st, int kind, PyObject *inner, PyObject *request, PyObject *method,
            PyObject *adapter)
{
    assert(kind != TRACKED_NONE);
    tracked_object *self = tracked_alloc(st, tracked_type(st, kind), inner);
    if (self == NULL) {
        return NULL;
    }
    self->kind = kind;
    self->request = Py_NewRef(request);
    self->method = Py_XNewRef(method);
    self->adapter = Py_XNewRef(adapter);
    PyObject_GC_Track(self);
    return (PyObject *)self;
}

static PyObject *
tracked_step_new(tracked_object *owner, PyObject *inner, int closes)
{
    if (inner == NULL) {
        return NULL;
    }
    tracked_object *self = tracked_alloc(owner->state, owner->state->tracked_step_type, inner);
    if (self == NULL) {
        return NULL;
    }
    self->kind = TRACKED_ASYNC_GENERATOR;
    self->owner = (tracked_object *)Py_NewRef(owner);
    self->closes = closes;
    PyObject_GC_Track(self);
    return (PyObject *)self;
}

/* ---------------------------------------------------------------- the request */

static int
observing(tracked_object *owner)
{
    return owner->method != NULL
           && atomic_load_explicit(&owner->state->observing_calls, SNAKEPIT_RELAXED);
}

/* The body's first step: the request begins here, in this thread and context. */
static int
tracked_begin(tracked_object *owner)
{
    int expected = PHASE_NEW;
    if (!atomic_compare_exchange_strong_explicit(&owner->phase, &expected, PHASE_BEGUN,
                                                 SNAKEPIT_RELAXED, SNAKEPIT_RELAXED)) {
        return 0;
    }
    if (request_begin(owner->request) < 0) {
        atomic_store_explicit(&owner->phase, PHASE_DONE, SNAKEPIT_RELAXED);
        return -1;
    }
    if (observing(owner)
        && snakepit_notify_call(owner->state, owner->method, owner->adapter, 1) < 0) {
        atomic_store_explicit(&owner->phase, PHASE_DONE, SNAKEPIT_RELAXED);
        snakepit_exc_state saved;
        snakepit_exc_save(&saved);
        if (request_finish(owner->request, 1) < 0) {
            PyErr_WriteUnraisable(owner->request);
        }
        snakepit_exc_restore(&saved);
        return -1;
    }
    return 0;
}

/* The body ended (or was dropped): end the request once.  A pending exception is kept. */
static void
tracked_end(tracked_object *owner, int error, int on_this_thread)
{
    int expected = PHASE_BEGUN;
    if (!atomic_compare_exchange_strong_explicit(&owner->phase, &expected, PHASE_DONE,
                                                 SNAKEPIT_RELAXED, SNAKEPIT_RELAXED)) {
        return;
    }
    snakepit_exc_state saved;
    snakepit_exc_save(&saved);
    if (on_this_thread) {
        if (request_finish(owner->request, error) < 0) {
            PyErr_WriteUnraisable(owner->request);
        }
    }
    else {
        request_abandon(owner->request, error);
    }
    if (observing(owner)
        && snakepit_notify_call(owner->state, owner->method, owner->adapter, 0) < 0) {
        PyErr_WriteUnraisable(owner->method);
    }
    snakepit_exc_restore(&saved);
}

/* Whether this step's outcome ended the body, and how. */
static void
tracked_settle(tracked_object *self, tracked_object *owner, int outcome)
{
    if (atomic_load_explicit(&owner->phase, SNAKEPIT_RELAXED) != PHASE_BEGUN
        || outcome == OUTCOME_YIELD) {
        return;
    }
    int ended, error = 0;
    if (self->owner == NULL) {
        /* A coroutine or generator: it returned (or was closed), or raised.  From throw(),
         * StopIteration means it returned and GeneratorExit that it was closed. */
        ended = 1;
        if (outcome == OUTCOME_ERROR) {
            error = !PyErr_ExceptionMatches(PyExc_StopIteration)
                    && !PyErr_ExceptionMatches(PyExc_GeneratorExit);
        }
    }
    else if (outcome == OUTCOME_RETURN) {
        /* A step of an async generator finished: it produced a value (the body goes on), or
         * it was aclose() and the body is closed. */
        ended = self->closes;
    }
    else if (PyErr_ExceptionMatches(PyExc_StopAsyncIteration)
             || PyErr_ExceptionMatches(PyExc_GeneratorExit)) {
        ended = 1; /* exhausted, or closed */
    }
    else if (PyErr_ExceptionMatches(PyExc_StopIteration)) {
        ended = self->closes; /* the step's own completion */
    }
    else {
        ended = 1;
        error = 1;
    }
    if (ended) {
        tracked_end(owner, error, 1);
    }
}

/* One step of the body: send a value, throw an exception in, or close.  The request begins at
 * the first step and is the context's current one while the step runs. */
static PyObject *
tracked_resume(tracked_object *self, int how, PyObject *value, PyObject *const *args,
               Py_ssize_t nargs, int *outcome)
{
    tracked_object *owner = self->owner != NULL ? self->owner : self;
    snakepit_state *st = self->state;
    *outcome = OUTCOME_ERROR;
    int idle = 0;
    if (!atomic_compare_exchange_strong_explicit(&self->running, &idle, 1, SNAKEPIT_RELAXED,
                                                 SNAKEPIT_RELAXED)) {
        PyErr_SetString(PyExc_ValueError, "generator already executing");
        return NULL;
    }
    /* Closing a body that never started runs none of it: no request. */
    if (how != RESUME_CLOSE && tracked_begin(owner) < 0) {
        atomic_store_explicit(&self->running, 0, SNAKEPIT_RELAXED);
        return NULL;
    }
    PyObject *token = NULL;
    if (atomic_load_explicit(&owner->phase, SNAKEPIT_RELAXED) == PHASE_BEGUN) {
        token = request_push(owner->request);
        if (token == NULL) {
            atomic_store_explicit(&self->running, 0, SNAKEPIT_RELAXED);
            return NULL;
        }
    }
    PyObject *result = NULL;
    switch (how) {
    case RESUME_SEND: {
        PySendResult sent = PyIter_Send(self->inner, value, &result);
        *outcome = sent == PYGEN_NEXT     ? OUTCOME_YIELD
                   : sent == PYGEN_RETURN ? OUTCOME_RETURN
                                          : OUTCOME_ERROR;
        break;
    }
    case RESUME_THROW: {
        PyObject *stack[4] = {self->inner, NULL, NULL, NULL};
        for (Py_ssize_t i = 0; i < nargs; i++) {
            stack[i + 1] = args[i];
        }
        result = PyObject_VectorcallMethod(
            st->str_throw, stack, (size_t)(nargs + 1) | PY_VECTORCALL_ARGUMENTS_OFFSET, NULL);
        *outcome = result != NULL ? OUTCOME_YIELD : OUTCOME_ERROR;
        break;
    }
    default:
        result = PyObject_CallMethodNoArgs(self->inner, st->str_close);
        *outcome = result != NULL ? OUTCOME_RETURN : OUTCOME_ERROR;
        break;
    }
    if (token != NULL) {
        snakepit_exc_state saved;
        snakepit_exc_save(&saved);
        request_pop(owner->request, token);
        Py_DECREF(token);
        snakepit_exc_restore(&saved);
    }
    tracked_settle(self, owner, *outcome);
    atomic_store_explicit(&self->running, 0, SNAKEPIT_RELAXED);
    return result;
}

/* ---------------------------------------------------------------- protocols */

/* StopIteration(value), made explicitly: PyErr_SetObject would unpack a tuple value. */
static void
set_stop_iteration(PyObject *value)
{
    PyObject *stop = PyObject_CallOneArg(PyExc_StopIteration, value);
    if (stop != NULL) {
        PyErr_SetObject(PyExc_StopIteration, stop);
        Py_DECREF(stop);
    }
}

static PyObject *
tracked_send(PyObject *op, PyObject *value)
{
    int outcome;
    PyObject *result = tracked_resume((tracked_object *)op, RESUME_SEND, value, NULL, 0, &outcome);
    if (outcome == OUTCOME_RETURN) {
        set_stop_iteration(result);
        Py_DECREF(result);
        return NULL;
    }
    return result;
}

static PySendResult
tracked_am_send(PyObject *op, PyObject *value, PyObject **result)
{
    int outcome;
    *result = tracked_resume((tracked_object *)op, RESUME_SEND, value, NULL, 0, &outcome);
    return outcome == OUTCOME_YIELD    ? PYGEN_NEXT
           : outcome == OUTCOME_RETURN ? PYGEN_RETURN
                                       : PYGEN_ERROR;
}

static PyObject *
tracked_iternext(PyObject *op)
{
    int outcome;
    PyObject *result =
        tracked_resume((tracked_object *)op, RESUME_SEND, Py_None, NULL, 0, &outcome);
    if (outcome == OUTCOME_RETURN) {
        if (result != Py_None) {
            set_stop_iteration(result);
        }
        Py_DECREF(result);
        return NULL;
    }
    return result;
}

static PyObject *
tracked_throw(PyObject *op, PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs < 1 || nargs > 3) {
        PyErr_Format(PyExc_TypeError, "throw expected 1 to 3 arguments, got %zd", nargs);
        return NULL;
    }
    int outcome;
    return tracked_resume((tracked_object *)op, RESUME_THROW, NULL, args, nargs, &outcome);
}

static PyObject *
tracked_close(PyObject *op, PyObject *Py_UNUSED(ignored))
{
    int outcome;
    return tracked_resume((tracked_object *)op, RESUME_CLOSE, NULL, NULL, 0, &outcome);
}

static PyObject *
tracked_self(PyObject *op)
{
    return Py_NewRef(op);
}

static PyObject *
tracked_anext(PyObject *op)
{
    tracked_object *self = (tracked_object *)op;
    PyAsyncMethods *async = Py_TYPE(self->inner)->tp_as_async;
    if (async == NULL || async->am_anext == NULL) {
        PyErr_Format(PyExc_TypeError, "%.200s has no __anext__", Py_TYPE(self->inner)->tp_name);
        return NULL;
    }
    return tracked_step_new(self, async->am_anext(self->inner), 0);
}

static PyObject *
tracked_asend(PyObject *op, PyObject *value)
{
    tracked_object *self = (tracked_object *)op;
    return tracked_step_new(
        self, PyObject_CallMethodOneArg(self->inner, self->state->str_asend, value), 0);
}

static PyObject *
tracked_athrow(PyObject *op, PyObject *const *args, Py_ssize_t nargs)
{
    tracked_object *self = (tracked_object *)op;
    if (nargs < 1 || nargs > 3) {
        PyErr_Format(PyExc_TypeError, "athrow expected 1 to 3 arguments, got %zd", nargs);
        return NULL;
    }
    PyObject *stack[4] = {self->inner, NULL, NULL, NULL};
    for (Py_ssize_t i = 0; i < nargs; i++) {
        stack[i + 1] = args[i];
    }
    PyObject *awaitable = PyObject_VectorcallMethod(
        self->state->str_athrow, stack, (size_t)(nargs + 1) | PY_VECTORCALL_ARGUMENTS_OFFSET, NULL);
    return tracked_step_new(self, awaitable, 0);
}

static PyObject *
tracked_aclose(PyObject *op, PyObject *Py_UNUSED(ignored))
{
    tracked_object *self = (tracked_object *)op;
    return tracked_step_new(self, PyObject_CallMethodNoArgs(self->inner, self->state->str_aclose),
                            1);
}

/* Everything else (cr_frame, gi_code, ag_running, __name__, __qualname__ ...) is the wrapped
 * object's. */
static PyObject *
tracked_getattro(PyObject *op, PyObject *name)
{
    PyObject *found = PyObject_GenericGetAttr(op, name);
    if (found != NULL || !PyErr_ExceptionMatches(PyExc_AttributeError)) {
        return found;
    }
    PyErr_Clear();
    return PyObject_GetAttr(((tracked_object *)op)->inner, name);
}

static PyObject *
tracked_repr(PyObject *op)
{
    return PyUnicode_FromFormat("<%s of %R>", Py_TYPE(op)->tp_name, ((tracked_object *)op)->inner);
}

/* ---------------------------------------------------------------- lifetime */

/* Dropped (or collected) before the body ended: a generator or async generator was left
 * early (not an error: the consumer stopped, e.g. `break` out of a `for` or `async for`,
 * which does not close an async generator); a coroutine never finished (an error). */
static void
tracked_abandon(tracked_object *self)
{
    if (self->owner == NULL && self->request != NULL) {
        int error = self->kind == TRACKED_COROUTINE;
        tracked_end(self, error, 0);
    }
}

static int
tracked_traverse(PyObject *op, visitproc visit, void *arg)
{
    tracked_object *self = (tracked_object *)op;
    Py_VISIT(Py_TYPE(op));
    Py_VISIT(self->inner);
    Py_VISIT(self->request);
    Py_VISIT(self->method);
    Py_VISIT(self->adapter);
    Py_VISIT(self->owner);
    return 0;
}

static int
tracked_clear(PyObject *op)
{
    tracked_object *self = (tracked_object *)op;
    tracked_abandon(self);
    Py_CLEAR(self->inner);
    Py_CLEAR(self->request);
    Py_CLEAR(self->method);
    Py_CLEAR(self->adapter);
    Py_CLEAR(self->owner);
    return 0;
}

static void
tracked_dealloc(PyObject *op)
{
    PyTypeObject *tp = Py_TYPE(op);
    PyObject_GC_UnTrack(op);
    (void)tracked_clear(op);
    PyObject_GC_Del(op);
    Py_DECREF(tp);
}

/* ---------------------------------------------------------------- types */

static PyMethodDef iteration_methods[] = {
    {"send", tracked_send, METH_O,
     "Resume the body with a value (its request begins at the first step)."},
    {"throw", (PyCFunction)(void (*)(void))tracked_throw, METH_FASTCALL,
     "Raise an exception at the suspension point."},
    {"close", tracked_close, METH_NOARGS, "Close the body (its request ends, not as an error)."},
    {NULL, NULL, 0, NULL},
};

static PyMethodDef async_generator_methods[] = {
    {"asend", tracked_asend, METH_O, "An awaitable resuming the body with a value."},
    {"athrow", (PyCFunction)(void (*)(void))tracked_athrow, METH_FASTCALL,
     "An awaitable raising an exception at the suspension point."},
    {"aclose", tracked_aclose, METH_NOARGS,
     "An awaitable closing the body (its request ends, not as an error)."},
    {NULL, NULL, 0, NULL},
};

#define TRACKED_COMMON_SLOTS                                              \
    {Py_tp_dealloc, tracked_dealloc}, {Py_tp_traverse, tracked_traverse}, \
        {Py_tp_clear, tracked_clear}, {Py_tp_getattro, tracked_getattro}, \
    {                                                                     \
        Py_tp_repr, tracked_repr                                          \
    }

#define TRACKED_FLAGS                                                   \
    (Py_TPFLAGS_DEFAULT | Py_TPFLAGS_HAVE_GC | Py_TPFLAGS_IMMUTABLETYPE \
     | Py_TPFLAGS_DISALLOW_INSTANTIATION)

static PyType_Slot coroutine_slots[] = {
    TRACKED_COMMON_SLOTS,
    {Py_am_await, tracked_self},
    {Py_am_send, tracked_am_send},
    {Py_tp_iternext, tracked_iternext},
    {Py_tp_methods, iteration_methods},
    {Py_tp_doc, "The coroutine of a thread_safe_method: its request lasts while its body runs."},
    {0, NULL},
};

PyType_Spec snakepit_tracked_coroutine_spec = {
    .name = "snakepit_bridge._native._TrackedCoroutine",
    .basicsize = sizeof(tracked_object),
    .flags = TRACKED_FLAGS,
    .slots = coroutine_slots,
};

static PyType_Slot generator_slots[] = {
    TRACKED_COMMON_SLOTS,
    {Py_tp_iter, tracked_self},
    {Py_tp_iternext, tracked_iternext},
    {Py_tp_methods, iteration_methods},
    {Py_tp_doc, "The generator of a thread_safe_method: its request lasts until it is "
                "exhausted, closed or raises."},
    {0, NULL},
};

PyType_Spec snakepit_tracked_generator_spec = {
    .name = "snakepit_bridge._native._TrackedGenerator",
    .basicsize = sizeof(tracked_object),
    .flags = TRACKED_FLAGS,
    .slots = generator_slots,
};

static PyType_Slot async_generator_slots[] = {
    TRACKED_COMMON_SLOTS,
    {Py_am_aiter, tracked_self},
    {Py_am_anext, tracked_anext},
    {Py_tp_methods, async_generator_methods},
    {Py_tp_doc, "The async generator of a thread_safe_method: its request lasts until it is "
                "exhausted, closed or raises."},
    {0, NULL},
};

PyType_Spec snakepit_tracked_async_generator_spec = {
    .name = "snakepit_bridge._native._TrackedAsyncGenerator",
    .basicsize = sizeof(tracked_object),
    .flags = TRACKED_FLAGS,
    .slots = async_generator_slots,
};

static PyType_Slot step_slots[] = {
    TRACKED_COMMON_SLOTS,
    {Py_am_await, tracked_self},
    {Py_am_send, tracked_am_send},
    {Py_tp_iternext, tracked_iternext},
    {Py_tp_methods, iteration_methods},
    {Py_tp_doc, "One step of a tracked async generator (__anext__, asend, athrow, aclose)."},
    {0, NULL},
};

PyType_Spec snakepit_tracked_step_spec = {
    .name = "snakepit_bridge._native._TrackedAsyncGeneratorStep",
    .basicsize = sizeof(tracked_object),
    .flags = TRACKED_FLAGS,
    .slots = step_slots,
};

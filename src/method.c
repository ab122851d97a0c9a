/* thread_safe_method.  See method.h. */
#include "method.h"

#include "adapter.h"
#include "request.h"
#include "tracked.h"
#include "watch.h"

typedef struct {
    PyObject_HEAD
    PyObject *func;
    PyObject *dict;
    vectorcallfunc vectorcall;
    snakepit_state *state;
    int kind; /* TRACKED_*: what calling func makes */
} method_object;

int
snakepit_notify_call(snakepit_state *st, PyObject *method, PyObject *adapter, int entering)
{
    /* A report point for writes that bypassed __setattr__: the checker sees them inside the
     * call that made them (it keeps any pending exception). */
    (void)watch_report_pending();
    PyObject *observer = observer_get(st, &st->call_observer);
    if (observer == NULL) {
        return 0;
    }
    snakepit_exc_state saved;
    int had_error = !entering && PyErr_Occurred() != NULL;
    if (had_error) {
        snakepit_exc_save(&saved);
    }
    PyObject *r = PyObject_CallFunctionObjArgs(observer, method, adapter,
                                               entering ? Py_True : Py_False, NULL);
    if (had_error) {
        if (r == NULL) {
            PyErr_WriteUnraisable(observer);
        }
        snakepit_exc_restore(&saved);
    }
    Py_DECREF(observer);
    if (r == NULL) {
        return had_error ? 0 : -1;
    }
    Py_DECREF(r);
    return 0;
}

static PyObject *
method_vectorcall(PyObject *op, PyObject *const *args, size_t nargsf, PyObject *kwnames)
{
    method_object *self = (method_object *)op;
    snakepit_state *st = self->state;
    Py_ssize_t nargs = PyVectorcall_NARGS(nargsf);
    if (self->func == NULL) {
        PyErr_SetString(PyExc_RuntimeError, "thread_safe_method was cleared");
        return NULL;
    }
    if (nargs == 0 || !adapter_check(st, args[0])) {
        return PyObject_Vectorcall(self->func, args, nargsf, kwnames); /* not an adapter */
    }
    adapter_object *adapter = (adapter_object *)args[0];
    if (self->kind != TRACKED_NONE) {
        /* Calling it only makes the coroutine or generator: its request covers its body. */
        PyObject *request = request_new(adapter->tracker);
        if (request == NULL) {
            return NULL;
        }
        PyObject *inner = PyObject_Vectorcall(self->func, args, nargsf, kwnames);
        PyObject *tracked =
            inner == NULL ? NULL
                          : tracked_new(adapter->state, self->kind, inner, request, op, args[0]);
        Py_DECREF(request);
        return tracked;
    }
    /* Valid for the whole call: the caller holds the adapter, which holds its tracker, and
     * a slot is freed only when its thread or its tracker ends. */
    shard_slot *slot = adapter_slot_get(adapter);
    if (slot == NULL) {
        if (PyErr_Occurred()) {
            return NULL;
        }
        return PyObject_Vectorcall(self->func, args, nargsf, kwnames); /* exiting thread */
    }
    int observed = atomic_load_explicit(&st->observing_calls, SNAKEPIT_RELAXED);
    if (observed && snakepit_notify_call(st, op, args[0], 1) < 0) {
        return NULL;
    }
    /* The adapter's own module state times it (the same unless several module instances). */
    tracker_begin(adapter->state, adapter->tracker, slot);
    PyObject *result = PyObject_Vectorcall(self->func, args, nargsf, kwnames);
    /* Before the request ends: if the observer fails, the caller gets its exception, and
     * the tracker must count the call as the error the caller sees. */
    if (observed && snakepit_notify_call(st, op, args[0], 0) < 0) {
        Py_CLEAR(result);
    }
    tracker_end(adapter->state, slot, result == NULL);
    return result;
}

static PyObject *
method_tp_new(PyTypeObject *type, PyObject *args, PyObject *kwargs)
{
    PyObject *func;
    if (kwargs != NULL && PyDict_GET_SIZE(kwargs) != 0) {
        PyErr_SetString(PyExc_TypeError, "thread_safe_method() takes no keyword arguments");
        return NULL;
    }
    if (!PyArg_UnpackTuple(args, "thread_safe_method", 1, 1, &func)) {
        return NULL;
    }
    if (PyObject_TypeCheck(func, &PyStaticMethod_Type)
        || PyObject_TypeCheck(func, &PyClassMethod_Type)) {
        PyErr_SetString(PyExc_TypeError,
                        "thread_safe_method tracks instance methods of adapters; apply it to "
                        "the plain function, not to a staticmethod or classmethod");
        return NULL;
    }
    if (!PyCallable_Check(func)) {
        PyErr_Format(PyExc_TypeError, "thread_safe_method() needs a callable, not %.200s",
                     Py_TYPE(func)->tp_name);
        return NULL;
    }
    snakepit_state *st = PyType_GetModuleState(type);
    if (st == NULL) {
        return NULL;
    }
    method_object *self = (method_object *)type->tp_alloc(type, 0);
    if (self == NULL) {
        return NULL;
    }
    self->func = Py_NewRef(func);
    self->state = st;
    self->kind = tracked_kind_of(func);
    self->vectorcall = method_vectorcall;
    self->dict = PyDict_New();
    if (self->dict == NULL) {
        goto error;
    }
    /* Same metadata as functools.wraps: name, qualname, doc, module, annotations,
     * the function's own __dict__ (tool metadata), and __wrapped__. */
    PyObject *functools = PyImport_ImportModule("functools");
    if (functools == NULL) {
        goto error;
    }
    PyObject *r = PyObject_CallMethod(functools, "update_wrapper", "OO", (PyObject *)self, func);
    Py_DECREF(functools);
    if (r == NULL) {
        goto error;
    }
    Py_DECREF(r);
    if (PyDict_SetItem(self->dict, st->str_dunder_thread_safe, Py_True) < 0) {
        goto error;
    }
    /* A decorated method is shared by every thread that calls it, and each call takes a
     * reference to it: on a free-threaded build that is an atomic add on one cache line for
     * all threads.  CPython spares functions this with deferred reference counting (3.14+;
     * 3.13t makes such functions immortal once a second thread starts).  Decorated methods
     * get the same treatment, for the same objects: on 3.14+ through the public call; on
     * 3.13t, whose call is internal, by making the object immortal, but only where 3.13t
     * would make the function immortal: a function defined at module or class level, not a
     * nested one (a closure, a class built inside a function), whose captured objects must
     * be freed promptly (CPython's rule in funcobject.c: no deferral for CO_NESTED code). */
#if defined(Py_GIL_DISABLED) && PY_VERSION_HEX >= 0x030E0000
    (void)PyUnstable_Object_EnableDeferredRefcount((PyObject *)self);
#elif defined(Py_GIL_DISABLED)
    if (PyFunction_Check(func)
        && !(((PyCodeObject *)PyFunction_GET_CODE(func))->co_flags & CO_NESTED)) {
        PyObject_GC_UnTrack(self);
        self->ob_base.ob_ref_local = _Py_IMMORTAL_REFCNT_LOCAL;
        self->ob_base.ob_ref_shared = 0;
        self->ob_base.ob_tid = 0; /* unowned, as CPython leaves immortal objects */
    }
#endif
    return (PyObject *)self;
error:
    Py_DECREF(self);
    return NULL;
}

static PyObject *
method_descr_get(PyObject *op, PyObject *obj, PyObject *Py_UNUSED(type))
{
    if (obj == NULL || obj == Py_None) {
        return Py_NewRef(op);
    }
    return PyMethod_New(op, obj);
}

static int
method_traverse(PyObject *op, visitproc visit, void *arg)
{
    method_object *self = (method_object *)op;
    Py_VISIT(Py_TYPE(op));
    Py_VISIT(self->func);
    Py_VISIT(self->dict);
    return 0;
}

static int
method_clear(PyObject *op)
{
    method_object *self = (method_object *)op;
    Py_CLEAR(self->func);
    Py_CLEAR(self->dict);
    return 0;
}

static void
method_dealloc(PyObject *op)
{
    PyTypeObject *tp = Py_TYPE(op);
    PyObject_GC_UnTrack(op);
    (void)method_clear(op);
    tp->tp_free(op);
    Py_DECREF(tp);
}

static PyObject *
method_repr(PyObject *op)
{
    method_object *self = (method_object *)op;
    return PyUnicode_FromFormat("<thread_safe_method of %R>", self->func ? self->func : Py_None);
}

static PyObject *
method_get_func(PyObject *op, void *Py_UNUSED(closure))
{
    method_object *self = (method_object *)op;
    if (self->func == NULL) {
        PyErr_SetString(PyExc_AttributeError, "__func__");
        return NULL;
    }
    return Py_NewRef(self->func);
}

/* __code__, __defaults__ and __kwdefaults__ of the decorated function: with them (and the
 * copied __name__ and __annotations__) inspect takes the decorator for a function and reads
 * its code flags, so iscoroutinefunction() and friends answer for the function. */
static PyObject *
method_get_function_attribute(PyObject *op, void *name)
{
    method_object *self = (method_object *)op;
    if (self->func == NULL) {
        PyErr_SetString(PyExc_AttributeError, (const char *)name);
        return NULL;
    }
    return PyObject_GetAttrString(self->func, (const char *)name);
}

static PyGetSetDef method_getset[] = {
    {"__dict__", PyObject_GenericGetDict, PyObject_GenericSetDict, NULL, NULL},
    {"__func__", method_get_func, NULL, "The decorated function.", NULL},
    {"__code__", method_get_function_attribute, NULL, "The decorated function's code.", "__code__"},
    {"__defaults__", method_get_function_attribute, NULL, "The decorated function's defaults.",
     "__defaults__"},
    {"__kwdefaults__", method_get_function_attribute, NULL,
     "The decorated function's keyword-only defaults.", "__kwdefaults__"},
    {NULL, NULL, NULL, NULL, NULL},
};

static PyMemberDef method_members[] = {
    {"__dictoffset__", Py_T_PYSSIZET, offsetof(method_object, dict), Py_READONLY, NULL},
    {"__vectorcalloffset__", Py_T_PYSSIZET, offsetof(method_object, vectorcall), Py_READONLY, NULL},
    {NULL, 0, 0, 0, NULL},
};

static PyType_Slot method_slots[] = {
    {Py_tp_new, method_tp_new},
    {Py_tp_dealloc, method_dealloc},
    {Py_tp_traverse, method_traverse},
    {Py_tp_clear, method_clear},
    {Py_tp_call, PyVectorcall_Call},
    {Py_tp_descr_get, method_descr_get},
    {Py_tp_repr, method_repr},
    {Py_tp_getset, method_getset},
    {Py_tp_members, method_members},
    {Py_tp_doc,
     "thread_safe_method(func, /)\n--\n\n"
     "Decorator for adapter methods: each call is tracked in the adapter's RequestTracker\n"
     "(start, duration, error; exceptions propagate unchanged).  A decorated method that\n"
     "calls another on the same adapter counts once.  Takes no lock: use acquire_lock()\n"
     "for shared state.  On a self that is not a ThreadSafeAdapter it just calls through."},
    {0, NULL},
};

PyType_Spec snakepit_method_spec = {
    .name = "snakepit_bridge._native.thread_safe_method",
    .basicsize = sizeof(method_object),
    .flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_HAVE_GC | Py_TPFLAGS_IMMUTABLETYPE
             | Py_TPFLAGS_HAVE_VECTORCALL | Py_TPFLAGS_METHOD_DESCRIPTOR,
    .slots = method_slots,
};

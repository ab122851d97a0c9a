/* Tracked coroutines and generators: what a thread_safe_method returns for an `async def`,
 * generator or async generator function.
 *
 * Calling such a function only makes the coroutine or generator; its body runs later, in
 * steps, perhaps on another thread (a generator drained by a pool thread) or interleaved with
 * other tasks on one event loop.  So its request is a request object (request.h) that begins
 * at the body's first step and ends when the body does: returned, exhausted, closed (not an
 * error: the consumer stopped) or raised (an error; a cancelled task is one).  While a step
 * runs, the request is the context's current one, so calls made by the body count within it;
 * between steps the caller's context is untouched.
 *
 * The wrappers forward every other attribute (cr_frame, gi_code, __name__ ...) to the wrapped
 * object, and implement the protocols asyncio and `for` use: a tracked coroutine is awaitable
 * and has send/throw/close (so it is a collections.abc.Coroutine); a tracked generator is an
 * iterator with send/throw/close; a tracked async generator has __aiter__/__anext__ and
 * asend/athrow/aclose, each of whose awaitables is a tracked step of it. */
#ifndef SNAKEPIT_TRACKED_H
#define SNAKEPIT_TRACKED_H

#include "state.h"

enum {
    TRACKED_NONE = 0, /* a plain function: tracked as a call */
    TRACKED_COROUTINE,
    TRACKED_GENERATOR,
    TRACKED_ASYNC_GENERATOR,
};

extern PyType_Spec snakepit_tracked_coroutine_spec;
extern PyType_Spec snakepit_tracked_generator_spec;
extern PyType_Spec snakepit_tracked_async_generator_spec;
extern PyType_Spec snakepit_tracked_step_spec;

/* Which kind of object calling `func` makes, from its code flags. */
int tracked_kind_of(PyObject *func);

/* Wrap `inner` (what calling the decorated function returned; the reference is stolen) so
 * that `request` (a fresh request object of the adapter's tracker) covers its body. `method`
 * and `adapter` are reported to the call observer, if any, when the body starts and ends. */
PyObject *tracked_new(snakepit_state *st, int kind, PyObject *inner, PyObject *request,
                      PyObject *method, PyObject *adapter);

#endif /* SNAKEPIT_TRACKED_H */

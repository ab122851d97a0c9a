/* thread_safe_method: the decorator that tracks each call of an adapter method.
 *
 * A vectorcall object flagged as a method descriptor, so `adapter.method(...)` calls it
 * with self prepended and no bound-method allocation, while attribute access still
 * returns a real bound method (inspect.ismethod is true).  It carries the wrapped
 * function's metadata and its own __dict__ (functools.update_wrapper semantics), so tool
 * metadata works in either decorator order and inspect.signature sees the original.
 *
 * For an `async def`, generator or async generator function, a call returns a tracked
 * coroutine or generator (tracked.h) whose request covers its body, not its creation; the
 * decorator exposes the function's __code__, __defaults__ and __kwdefaults__, so inspect's
 * iscoroutinefunction / isgeneratorfunction / isasyncgenfunction still tell the truth. */
#ifndef SNAKEPIT_METHOD_H
#define SNAKEPIT_METHOD_H

#include "state.h"

extern PyType_Spec snakepit_method_spec;

/* Tell the checker's call observer, if any, that a decorated call (or the body of a tracked
 * coroutine or generator) starts or ends.  On the way out the caller's pending exception, if
 * any, is kept and a failing observer is reported as unraisable; on the way in its failure
 * is returned (-1 with the exception). */
int snakepit_notify_call(snakepit_state *st, PyObject *method, PyObject *adapter, int entering);

#endif /* SNAKEPIT_METHOD_H */

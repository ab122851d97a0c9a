/* Request objects: what track_request() returns.
 *
 * A call-stack request (a decorated call, start_request()) lives in its thread's slot and
 * nests by depth.  A request object is a request in its own right: `with track_request():`
 * may be suspended at an `await` while other tasks of the same thread run their own, and may
 * even be ended on another thread.  So it carries its own start time and names the slot it
 * was started on; it counts as started by the thread that enters it and completed by the
 * thread that exits it, and never touches a thread's depth.
 *
 * "Inside" is decided by the context (contextvars): entering one makes it the context's
 * current request (with the one it found as parent), so a request made within it - in the
 * same task, or in a task or thread that inherited the context - counts once, while the
 * requests of two tasks interleaving on one thread are two. */
#ifndef SNAKEPIT_REQUEST_H
#define SNAKEPIT_REQUEST_H

#include "tracker.h"

extern PyType_Spec snakepit_request_spec;

/* A new, not yet entered request object of this tracker. */
PyObject *request_new(tracker_object *tracker);

/* The parts of entering and exiting, for objects that run a request in steps (tracked
 * coroutines and generators, tracked.c):
 * request_begin   start it in the calling thread and context (decide nested or counted);
 *                 0, or -1 with an exception (RuntimeError if it was already begun);
 * request_push    make it the context's current request while a step runs: the token to pop;
 * request_pop     restore the context (a failure in another context is ignored);
 * request_finish  end it on the calling thread: 1 if this call ended it, 0 if it was not
 *                 open, -1 with an exception (it is ended anyway);
 * request_abandon end it without touching any thread's slot (from a deallocator). */
int request_begin(PyObject *request);
PyObject *request_push(PyObject *request);
void request_pop(PyObject *request, PyObject *token);
int request_finish(PyObject *request, int error);
void request_abandon(PyObject *request, int error);

/* Whether the chain of request objects starting at `innermost` (a context's current one,
 * or NULL) holds an open one of this tracker. */
int request_chain_has_open(snakepit_state *st, PyObject *innermost, tracker_object *tracker);

#endif /* SNAKEPIT_REQUEST_H */

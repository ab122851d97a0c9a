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

/* Whether the chain of request objects starting at `innermost` (a context's current one,
 * or NULL) holds an open one of this tracker. */
int request_chain_has_open(snakepit_state *st, PyObject *innermost, tracker_object *tracker);

#endif /* SNAKEPIT_REQUEST_H */

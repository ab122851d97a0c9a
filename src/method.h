/* thread_safe_method: the decorator that tracks each call of an adapter method.
 *
 * A vectorcall object flagged as a method descriptor, so `adapter.method(...)` calls it
 * with self prepended and no bound-method allocation, while attribute access still
 * returns a real bound method (inspect.ismethod is true).  It carries the wrapped
 * function's metadata and its own __dict__ (functools.update_wrapper semantics), so tool
 * metadata works in either decorator order and inspect.signature sees the original. */
#ifndef SNAKEPIT_METHOD_H
#define SNAKEPIT_METHOD_H

#include "state.h"

extern PyType_Spec snakepit_method_spec;

#endif /* SNAKEPIT_METHOD_H */

"""The adapter every server benchmark serves: a trivial tool, a CPU-bound tool and a NumPy tool.

Served by our server (``--adapter benchmarks.server_tools.BenchToolsAdapter``) and by the
grpcio reference server (``benchmarks/grpcio_server.py``), on either interpreter.

The tools use nothing but locals and small ints (-5 to 256, immortal). On 3.13t a shared
object read in a hot loop (a module-level constant, an attribute of the shared adapter, even a
large int literal of the function) has one reference count that every thread writes on every
read; that cache line bouncing between the cores was seen to halve the 2-thread throughput of
a CPU-bound tool. Objects made inside the call (the ints the loop computes) are the thread's
own.
"""

from __future__ import annotations

from typing import Any

from snakepit_bridge.base_adapter_threaded import ThreadSafeAdapter, tool


class BenchToolsAdapter(ThreadSafeAdapter):
    __thread_safe__ = True

    @tool
    def echo(self, x: int) -> int:
        """The trivial tool: the request's own small int back."""
        return x

    @tool
    def spin(self, n: int) -> int:
        """Pure-Python CPU work: ``n`` iterations of an add and a mask, on locals only."""
        total = 0
        for i in range(n):
            total += i & 7
        return total

    @tool
    def numpy_sum(self, n: int) -> float:
        """NumPy work on arrays made for this call: sqrt(a*a + 1) summed over n float64s."""
        import numpy as np  # imported by the first call (the servers start without it)

        a = np.arange(n, dtype=np.float64)
        b = a * a
        b += 1
        np.sqrt(b, out=b)
        result: Any = b.sum()
        return float(result)

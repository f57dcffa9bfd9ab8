"""A Dask worker plugin that lets glibc's malloc serve a task's arrays from the heap.

A Dask worker's nanny sets ``MALLOC_TRIM_THRESHOLD_``, which also fixes malloc's mmap threshold
at 128 KiB: every array above it (a customer bucket's columns are 1-30 MB) is mapped from the
kernel, faulted in page by page and unmapped when freed, so the same report spends as much time in
the kernel as in Python (medium, pandas engine: 1.4-2.5 s system without the setting, 9.7-10.7 s with
it; benchmarks/README.md). Serving arrays up to 32 MB from the heap removes that, but the freed heap
would then count against the worker's memory limit and the nanny restarts workers over it
(:func:`csmetrics._compat.tune_allocator`). So the plugin also gives the heap's free pages back
to the system after every task (``malloc_trim``): temporaries made and freed inside a task reuse
the heap's pages, and between tasks the worker's memory is what the tasks keep.

The CLI's local cluster (``csmetrics report --engine dask`` without ``--scheduler``) registers it.
On a cluster of your own: ``client.register_plugin(HeapPlugin())``. ``CSMETRICS_MALLOC=default``
in the workers' environment turns it off; other C libraries than glibc are left alone.
"""

from __future__ import annotations

from typing import Any

from distributed.diagnostics.plugin import WorkerPlugin

from csmetrics._compat import HEAP_ARRAYS, heap_arrays_up_to

#: glibc's default mmap threshold, restored when the plugin is removed
_GLIBC_MMAP_THRESHOLD = 128 << 10


class HeapPlugin(WorkerPlugin):
    """Arrays up to 32 MB from the heap, and the heap's free pages returned after each task."""

    name = "csmetrics-heap"

    def __init__(self) -> None:
        self.trims = 0
        self._libc: Any = None

    def setup(self, worker: Any) -> None:
        self._libc = heap_arrays_up_to(HEAP_ARRAYS)

    def transition(self, key: Any, start: str, finish: str, **kwargs: Any) -> None:
        if self._libc is not None and start == "executing":
            self._libc.malloc_trim(0)
            self.trims += 1

    def teardown(self, worker: Any) -> None:
        if self._libc is not None:
            heap_arrays_up_to(_GLIBC_MMAP_THRESHOLD)
            self._libc.malloc_trim(0)
            self._libc = None

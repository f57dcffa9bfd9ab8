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

Trimming after every task means the next task's arrays are faulted in again, 4 KiB at a time. The
CLI's workers are started with ``GLIBC_TUNABLES=glibc.malloc.hugetlb=1`` (:func:`worker_tunables`),
so glibc asks the kernel for transparent huge pages for its heap and its large maps (where the kernel
offers them on request, ``madvise`` in ``/sys/kernel/mm/transparent_hugepage/enabled``): a fault
then brings in 2 MiB (large report: 23.6M page faults 14.6M, 162 s of system time 131 s).

The CLI's local cluster (``csmetrics report --engine dask`` without ``--scheduler``) registers the
plugin and sets that tunable. On a cluster of your own: ``client.register_plugin(HeapPlugin())``,
and ``GLIBC_TUNABLES=glibc.malloc.hugetlb=1`` in the environment the workers are started with.
``CSMETRICS_MALLOC=default`` in the workers' environment turns both off; other C libraries than
glibc are left alone.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

from distributed.diagnostics.plugin import WorkerPlugin

from csmetrics._compat import HEAP_ARRAYS, glibc_malloc, heap_arrays_up_to

#: glibc's tunable for transparent huge pages (glibc 2.35 on; older versions ignore it)
HUGE_PAGES = "glibc.malloc.hugetlb"

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


def worker_tunables(environ: Mapping[str, str] = os.environ) -> dict[str, str]:
    """The environment to start a local cluster's workers with (Dask's
    ``distributed.nanny.pre-spawn-environ``: tunables are read when a process starts): ``GLIBC_TUNABLES``
    with huge pages asked for, after whatever tunables ``environ`` sets already. Nothing where malloc
    is not glibc's, where ``CSMETRICS_MALLOC=default`` (:func:`csmetrics._compat.glibc_malloc`) or
    where the tunables name ``glibc.malloc.hugetlb`` themselves (the user's value is kept)."""
    given = environ.get("GLIBC_TUNABLES", "")
    if HUGE_PAGES in given or glibc_malloc(environ) is None:
        return {}
    return {"GLIBC_TUNABLES": ":".join(t for t in (given, f"{HUGE_PAGES}=1") if t)}


def spawn_config() -> dict[str, str]:
    """Dask configuration that starts a local cluster's workers with :func:`worker_tunables`."""
    return {f"distributed.nanny.pre-spawn-environ.{k}": v for k, v in worker_tunables().items()}

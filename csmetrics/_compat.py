"""Optional dependencies, asked about without importing them (the way polars' ``dependencies.py`` does).

Only :func:`csmetrics.engines.open_engine` looks at input types; it asks here whether a
table is a Dask DataFrame, and imports Dask through :func:`import_dask` only then.
"""

from __future__ import annotations

import importlib
import os
import platform
import threading
from collections.abc import Callable
from concurrent.futures import Future
from types import ModuleType
from typing import Any

__all__ = [
    "HEAP_ARRAYS",
    "any_dask",
    "glibc_malloc",
    "heap_arrays_up_to",
    "import_dask",
    "is_dask",
    "lazy_module",
    "one_blas_thread",
    "tune_allocator",
]


def is_dask(obj: Any) -> bool:
    """A Dask DataFrame (without importing dask)."""
    return type(obj).__module__.split(".")[0] in ("dask", "dask_expr") and hasattr(obj, "npartitions")


def any_dask(*objs: Any) -> bool:
    """Any of ``objs`` is a Dask DataFrame."""
    return any(is_dask(o) for o in objs)


def import_dask() -> ModuleType:
    """The dask module, or an ImportError that says which extra to install."""
    try:
        import dask
    except ImportError as err:  # pragma: no cover - the extra is not installed
        raise ImportError("the Dask engine needs the dask extra: pip install 'csmetrics[dask]'") from err
    return dask


class lazy_module:  # noqa: N801 - used like a module
    """A module imported on the first attribute access (scipy for the fitted models: importing
    csmetrics does not pay for it)."""

    def __init__(self, name: str):
        self._name = name
        self._module: ModuleType | None = None

    def __getattr__(self, attribute: str) -> Any:
        if self._module is None:
            self._module = importlib.import_module(self._name)
        return getattr(self._module, attribute)


#: imported on the first fit (:func:`one_blas_thread`); scipy.linalg loads scipy's own BLAS
threadpoolctl = lazy_module("threadpoolctl")
scipy_linalg = lazy_module("scipy.linalg")

#: glibc mallopt parameters (malloc.h)
_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3
#: arrays up to this size are served from malloc's heap when csmetrics tunes it (the families' arrays
#: are a few MB); glibc's own default mmap threshold is 128 KiB
HEAP_ARRAYS = 32 << 20
_TUNED: list[bool] = []
_TUNE_LOCK = threading.Lock()


def glibc_malloc() -> Any | None:
    """glibc's C library, for ``mallopt`` and ``malloc_trim``; None where malloc is not glibc's or
    ``CSMETRICS_MALLOC=default`` leaves malloc alone."""
    if os.environ.get("CSMETRICS_MALLOC", "").lower() == "default" or platform.libc_ver()[0] != "glibc":
        return None
    try:
        import ctypes

        return ctypes.CDLL("libc.so.6")
    except OSError:  # pragma: no cover - no such library
        return None


def heap_arrays_up_to(size: int) -> Any | None:
    """Let glibc's malloc serve allocations up to ``size`` bytes from its heap (its mmap threshold);
    returns the C library when it did, else None (see :func:`glibc_malloc`)."""
    libc = glibc_malloc()
    try:
        return libc if libc is not None and libc.mallopt(_M_MMAP_THRESHOLD, size) else None
    except AttributeError:  # pragma: no cover - no such symbol
        return None


def tune_allocator() -> bool:
    """Let glibc's malloc keep freed arrays for reuse (once per process; True if it did).

    The families allocate many short-lived arrays of a few MB. By default glibc maps each from the
    kernel and unmaps it when freed, so every new array is zeroed page by page again: a third of a
    medium survey pipeline's time (measured, benchmarks/README.md). Serving arrays up to 32 MB from
    the heap and returning its free top to the system only beyond 128 MB (per arena) removes that;
    larger arrays are mapped as before. Polars and DuckDB get the same from their own allocators.
    ``CSMETRICS_MALLOC=default`` leaves malloc alone; other C libraries are left alone.

    So does a process whose environment sets malloc's thresholds itself (``MALLOC_TRIM_THRESHOLD_``,
    ``MALLOC_MMAP_THRESHOLD_``, or ``glibc.malloc`` in ``GLIBC_TUNABLES``): a Dask worker's nanny sets
    a trim threshold of 64 KiB so that freed memory goes back to the system, where the worker's
    memory limit measures it. Kept in the heap, it counted against the limit (medium at 2 x 1 GB:
    workers over 95% restarted by their nanny in 4 of 7 runs, against 0 of 3 without the tuning).
    """
    with _TUNE_LOCK:
        if _TUNED:
            return _TUNED[0]
        libc = None if _malloc_set_by_environment() else heap_arrays_up_to(HEAP_ARRAYS)
        _TUNED.append(libc is not None and bool(libc.mallopt(_M_TRIM_THRESHOLD, 128 << 20)))
        return _TUNED[0]


def _malloc_set_by_environment() -> bool:
    """The environment sets glibc malloc's thresholds itself (``CSMETRICS_MALLOC=default``, which
    declines the tuning, is :func:`glibc_malloc`'s)."""
    env = os.environ
    return any(name in env for name in ("MALLOC_TRIM_THRESHOLD_", "MALLOC_MMAP_THRESHOLD_")) or (
        "glibc.malloc." in env.get("GLIBC_TUNABLES", "")
    )


def one_blas_thread() -> Any:
    """A context in which BLAS (numpy's and scipy's OpenBLAS, or MKL, BLIS) runs on one thread.

    The model fits make many tiny BLAS calls: L-BFGS-B's on 3-4 parameters and a dot product per
    likelihood. OpenBLAS wakes its threads for each and they spin between calls, so a fit kept both
    cores busy for one core's work (BG/NBD + Gamma-Gamma on 300,000 customers: 3.10 s wall, 5.39 s
    CPU; with one thread 2.57 s, 2.56 s), and beside the report's families that second core is
    theirs. One thread also makes a fit's result independent of the machine's core count (a
    threaded dot product sums in a different order). The previous limits come back on exit.
    threadpoolctl limits only the libraries loaded on entry, so scipy's BLAS is loaded first.
    """
    scipy_linalg.get_blas_funcs  # noqa: B018 - imports scipy.linalg, which loads scipy's BLAS
    return threadpoolctl.threadpool_limits(limits=1, user_api="blas")


def in_background(work: Callable[[], Any], name: str) -> Future:
    """``work()``'s result (or its exception), computed from now in a daemon thread called ``name``:
    a run that stops before asking for it does not wait for it."""
    future: Future = Future()

    def run() -> None:
        try:
            future.set_result(work())
        except BaseException as err:  # noqa: BLE001 - handed to whoever asks for the result
            future.set_exception(err)

    threading.Thread(target=run, name=name, daemon=True).start()
    return future

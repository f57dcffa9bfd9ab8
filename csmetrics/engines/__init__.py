"""Engines: where the per-customer work runs. :func:`open_engine` is the one place that looks at
the input types, validates once and (lazily) imports Dask.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

import pandas as pd

from csmetrics._compat import any_dask, tune_allocator
from csmetrics.engines.base import AS_OF_COLUMNS, Engine, Handle, Memo, Pending, resolve
from csmetrics.engines.dask import load
from csmetrics.engines.pandas import PandasEngine, ThreadedEngine
from csmetrics.options import ConfigError, UnknownNameError, check_bool, check_int
from csmetrics.validate import TABLES, validate_tables

__all__ = [
    "AS_OF_COLUMNS",
    "ENGINES",
    "THREADS_MIN_ROWS",
    "default_engine",
    "Engine",
    "Handle",
    "Memo",
    "Pending",
    "PandasEngine",
    "open_engine",
    "resolve",
]

ENGINES = ("pandas", "dask", "threads")

#: Below this many rows in the largest table the pandas engine is the default: the buckets' takes and
#: the per-call fixed costs (contexts, grids) eat the second core's gain. Measured at medium (2 cores):
#: support 1.0M rows 0.36 s pandas / 0.42 s threads, surveys 0.67M 0.38 / 0.36, revenue 1.6M
#: 1.96 / 1.39, engagement 4.9M 4.42 / 2.66.
THREADS_MIN_ROWS = 1_500_000


#: The threads engine needs about this many times the tables' in-memory size (the pandas engine's
#: working memory, billing's bucket copies and one bucket of another table taken per running call):
#: measured at large, 22.9 GB for 5.8 GB of tables (pandas engine: 19.7 GB).
THREADS_MEMORY_FACTOR = 4.0


def default_engine(tables: Mapping[str, Any], available: int | None = None) -> str:
    """The engine ``open_engine`` picks when none is named: Dask for Dask inputs; threads for large
    pandas inputs on a machine with more than one core and the memory for them (``available``
    bytes, default: the machine's free memory); else pandas."""
    if any_dask(*tables.values()):
        return "dask"
    frames = [t for t in tables.values() if isinstance(t, pd.DataFrame)]
    rows = max((len(t) for t in frames), default=0)
    if (os.cpu_count() or 1) < 2 or rows < THREADS_MIN_ROWS:
        return "pandas"
    size = sum(int(t.memory_usage(index=False).sum()) for t in frames)
    free = available if available is not None else _free_memory()
    return "threads" if free is None or THREADS_MEMORY_FACTOR * size <= free else "pandas"


def _free_memory() -> int | None:
    """Bytes of memory available to new allocations (Linux: MemAvailable, page cache included; other
    Unixes: free pages), None where unknown."""
    try:
        with open("/proc/meminfo") as info:
            for line in info:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:  # not Linux
        pass
    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):  # pragma: no cover - not on this platform
        return None


def open_engine(
    tables: Mapping[str, Any],
    *,
    engine: str | None = None,
    quarantine: bool = False,
    validated: bool = False,
    base_currency: str | None = None,
    buckets: int | None = None,
    progress: bool = False,
) -> tuple[Engine, dict[str, pd.DataFrame]]:
    """Validate ``tables`` once and hold them in an engine; returns (engine, rejected rows per table).

    ``engine`` is "pandas", "threads" or "dask"; by default (:func:`default_engine`) Dask when any
    table is a Dask DataFrame, threads for large tables on a multi-core machine with the memory for
    them, else pandas.
    Absent tables (None) are left out. ``validated``: the tables are :func:`csmetrics.validate`
    output (validation is skipped). ``buckets`` and ``progress`` apply to Dask.
    """
    tune_allocator()
    given = {name: table for name, table in tables.items() if table is not None}
    unknown = sorted(set(given) - set(TABLES))
    if unknown:
        raise UnknownNameError(f"unknown table(s) {unknown}; expected some of {', '.join(TABLES)}")
    quarantine, validated = check_bool("quarantine", quarantine), check_bool("validated", validated)
    if buckets is not None:
        check_int("buckets", buckets, low=1)
    kind = engine if engine is not None else default_engine(given)
    if kind not in ENGINES:
        raise ConfigError(f"engine must be one of {', '.join(ENGINES)}, not {engine!r}")
    if kind == "dask":
        return load(
            given,
            quarantine=quarantine,
            validated=validated,
            base_currency=base_currency,
            buckets=buckets,
            progress=progress,
        )
    rejected: dict[str, pd.DataFrame] = {}
    if validated:
        valid = given
    else:
        valid, rejected = validate_tables(given, quarantine=quarantine, base_currency=base_currency)
    if kind == "threads":
        return ThreadedEngine(valid, buckets or max(os.cpu_count() or 1, 1)), rejected
    return PandasEngine(valid), rejected

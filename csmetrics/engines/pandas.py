"""The pandas engine: everything in this process, one bucket holding the whole tables."""

from __future__ import annotations

import threading
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from csmetrics.engines.base import AS_OF_COLUMNS, Handle, Memo, merged_rows
from csmetrics.periods import NAT, instants
from csmetrics.schemas import BIG_TABLES
from csmetrics.sorting import order_by

__all__ = ["PandasEngine", "ThreadedEngine"]


class PandasEngine:
    """Everything in this process: one bucket holding the whole (validated) tables.

    The engine owns a :class:`~csmetrics.engines.base.Memo`, so the families of one run that
    are given the same billing frame share its ledger (nobody changes the engine's frames).
    """

    name = "pandas"
    n = 1

    def __init__(self, tables: Mapping[str, pd.DataFrame | None]):
        self.tables = {k: v for k, v in tables.items() if v is not None}
        self.memo = Memo(slots=8)

    def has(self, name: str) -> bool:
        return name in self.tables and len(self.tables[name]) > 0

    def holds(self, name: str) -> bool:
        return name in self.tables

    def table(self, name: str, columns: Sequence[str] | None = None) -> Handle:
        return [self.tables[name] if self.has(name) else None]

    def whole(self, name: str) -> Handle | None:
        """The whole table as a handle whose first bucket holds it (the others None): for work that
        needs every row at once, such as exact quantiles. None on engines that cannot hold it."""
        return self.table(name)

    def slices(self, name: str) -> Handle:
        """The table split into ``n`` parts of any rows (not by customer), for families whose sums
        are additive over any split of the rows (surveys): the buckets here."""
        return self.table(name)

    def small(self, name: str) -> pd.DataFrame | None:
        return self.tables.get(name)

    def latest(self, name: str) -> int:
        table = self.tables.get(name)
        if table is None:
            return NAT
        return max(
            (instants(table[c]).max(initial=NAT) for c in AS_OF_COLUMNS.get(name, ()) if c in table), default=NAT
        )

    def map(self, fn: Callable, *handles: Handle, **shared: Any) -> Handle:
        return [fn(*items, **shared) for items in zip(*handles, strict=True)]

    def regroup(self, handle: Handle, key: Callable, n: int) -> Handle:
        return handle

    def persist(self, handle: Handle) -> Handle:
        return handle

    def gather(self, *handles: Handle) -> tuple[list, ...]:
        return handles

    def summary(self, name: str, as_of: object = None) -> pd.DataFrame:
        return self.tables[name]

    def input_rows(self, name: str, given: object, rejected: Mapping[str, pd.DataFrame]) -> int:
        """Rows of the table as given (valid + rejected)."""
        return int(len(given))  # type: ignore[arg-type]

    def customer_output(self, rows: Handle, key: Callable, order: Callable, n: int) -> pd.DataFrame:
        """customers.parquet: the buckets' rows merged in ``order`` (:func:`merged_rows`)."""
        return merged_rows([_done(r) for r in rows], order)


_POOLS: dict[int, ThreadPoolExecutor] = {}
_POOLS_LOCK = threading.Lock()


def shared_pool(workers: int) -> ThreadPoolExecutor:
    """One pool per size for the process (engines come and go with every API call; their pools stay)."""
    with _POOLS_LOCK:
        if workers not in _POOLS:
            _POOLS[workers] = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="csmetrics")
        return _POOLS[workers]


class ThreadedEngine(PandasEngine):
    """In this process, the customers split into ``n`` buckets whose partials run in a thread pool
    (issue 14): numpy and pandas release the GIL in sorts, factorize and searchsorted, and partials
    are additive over disjoint customers, so the frames are the pandas engine's.

    ``summary`` is the whole table (contexts are built once, as on the pandas engine).
    """

    name = "threads"
    finishes_as_ready = True  # resolve finishes each pending as its futures complete

    def __init__(self, tables: Mapping[str, pd.DataFrame | None], buckets: int):
        super().__init__(tables)
        self.n = buckets
        self.memo = Memo(slots=8 * buckets, lock=True)
        self.pool = shared_pool(buckets)
        self.parts: dict[str, list[Any]] = {}
        self._parts_lock = threading.Lock()

    def _buckets(self, name: str) -> list[Any]:
        """The customer buckets of a big table, made on first use (a run of surveys alone never
        hashes a customer id)."""
        with self._parts_lock:
            if name not in self.parts:
                table = self.tables[name]
                bucket = pd.util.hash_pandas_object(table["customer_id"], index=False).to_numpy() % np.uint64(self.n)
                rows = [np.flatnonzero(bucket == b) for b in range(self.n)]
                # billing's buckets are kept (the families share each bucket's ledger through the memo, keyed
                # by the frame); the other tables' are row positions, taken when a call runs and freed after
                # it, so the engine holds no second copy of events, tickets and surveys
                self.parts[name] = [table.take(r) if name == "billing" else _Rows(table, r) for r in rows]
            return self.parts[name]

    def table(self, name: str, columns: Sequence[str] | None = None) -> Handle:
        if not self.has(name):
            return [None] * self.n
        if name in BIG_TABLES:
            buckets = self._buckets(name)
            if columns is None:
                return buckets
            present = tuple(c for c in dict.fromkeys(columns) if c in self.tables[name].columns)
            return [_Rows(b.table, b.rows, present) if isinstance(b, _Rows) else b for b in buckets]
        return [self.tables[name]] + [self.tables[name].iloc[:0]] * (self.n - 1)

    def whole(self, name: str) -> Handle | None:
        return [self.tables.get(name)] + [None] * (self.n - 1)

    def slices(self, name: str) -> Handle:
        """Contiguous row ranges of the table: views, no take (the sums need no customer split)."""
        if not self.has(name):
            return [None] * self.n
        table = self.tables[name]
        bounds = np.linspace(0, len(table), self.n + 1).astype(np.int64)
        return [table.iloc[bounds[k] : bounds[k + 1]] for k in range(self.n)]

    def map(self, fn: Callable, *handles: Handle, **shared: Any) -> Handle:
        """Futures, one per bucket: the calls start now, so the families of a report overlap. A call
        waits for its inputs, which were all submitted before it (the pool runs calls in submission
        order, so the inputs it waits for are running or done: no deadlock)."""
        return [self.pool.submit(_call, fn, items, shared) for items in zip(*handles, strict=True)]

    def persist(self, handle: Handle) -> Handle:
        return handle

    def gather(self, *handles: Handle) -> tuple[list, ...]:
        return tuple([_done(item) for item in handle] for handle in handles)

    def customer_output(self, rows: Handle, key: Callable, order: Callable, n: int) -> pd.DataFrame:
        """customers.parquet: as on the pandas engine, its columns merged in the pool's threads."""
        return merged_rows([_done(r) for r in rows], order, self.pool)

    def regroup(self, handle: Handle, key: Callable, n: int) -> Handle:
        frames = [f for f in map(_done, handle) if f is not None and len(f)]
        if not frames:
            return [handle[0]] + [handle[0]] * (n - 1) if handle else handle
        rows = pd.concat(frames, ignore_index=True)
        group = np.asarray(key(rows), dtype=np.int64)
        order = order_by(group)  # one take, then slices: not one mask per group
        bounds = np.searchsorted(group[order], np.arange(n + 1))
        rows = rows.take(order).reset_index(drop=True)
        return [rows.iloc[bounds[g] : bounds[g + 1]].reset_index(drop=True) for g in range(n)]


@dataclass(frozen=True)
class _Rows:
    """A bucket of a table as row positions: the frame is taken when a call needs it."""

    table: pd.DataFrame
    rows: np.ndarray
    columns: tuple[str, ...] | None = None  # those the call reads (None: all)


def _done(item: Any) -> Any:
    """A bucket's value: a future's result, a taken bucket, or the value itself."""
    if isinstance(item, Future):
        return item.result()
    if isinstance(item, _Rows):
        table = item.table if item.columns is None else item.table[list(item.columns)]
        return table.take(item.rows)
    return item


def _call(fn: Callable, items: tuple, shared: Mapping[str, Any]) -> Any:
    return fn(*(_done(item) for item in items), **shared)

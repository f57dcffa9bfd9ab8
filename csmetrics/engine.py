"""Where the per-customer work runs: in this process (pandas) or on a Dask cluster.

An engine holds the validated tables split into *buckets*: disjoint sets of
customers, every table of one customer in the same bucket. The pandas engine has
one bucket (the whole tables); :class:`csmetrics.dask_engine.DaskEngine` has many,
made by hashing ``customer_id``. Families are written once against this interface
(see :mod:`csmetrics.pipeline`):

- ``table(name)``: the handle of a table (one item per bucket; None items where it is absent or empty);
- ``n``: the number of buckets;
- ``latest(name)``: the latest timestamp of a table's as_of columns (int ns, NAT if none);
- ``map(fn, *handles, **shared)``: ``fn`` per bucket; ``shared`` values go to every call;
- ``regroup(handle, key, n)``: frames re-split by ``key(frame) -> group in 0..n-1``
  (a shuffle: for exact per-cell quantiles and for ordered output);
- ``persist(handle)``: keep results for several later maps;
- ``gather(*handles)``: the per-bucket results, all computed together;
- ``summary(name, as_of)``: a small frame with the table's columns whose timestamps
  have the table's extremes (min, max, max up to as_of) and its distinct currencies:
  all that ``prepare`` needs to build a family's context.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import pandas as pd

from csmetrics.metrics._common import NAT, instants

Handle = list

#: timestamp columns whose latest value sets a table's as_of
AS_OF_COLUMNS = {
    "events": ("timestamp",),
    "tickets": ("created_at", "first_response_at", "resolved_at"),
    "surveys": ("responded_at", "sent_at"),
    "billing": ("service_start", "invoiced_at"),
    "costs": ("incurred_at",),
}


@dataclass
class Pending:
    """Handles to compute and what to do with their gathered per-bucket results."""

    handles: tuple
    finish: Callable[..., Any]


def resolve(engine, pendings: Mapping[str, Pending]) -> dict[str, Any]:
    """Compute every pending's handles in one go, then finish each."""
    flat = [h for p in pendings.values() for h in p.handles]
    results = engine.gather(*flat)
    out, k = {}, 0
    for name, pending in pendings.items():
        mine = results[k:k + len(pending.handles)]
        k += len(pending.handles)
        out[name] = pending.finish(*mine)
    return out


class PandasEngine:
    """Everything in this process: one bucket holding the whole tables."""

    name = "pandas"
    n = 1

    def __init__(self, tables: Mapping[str, pd.DataFrame]):
        self.tables = dict(tables)

    def has(self, name: str) -> bool:
        return name in self.tables and len(self.tables[name]) > 0

    def table(self, name: str) -> Handle:
        return [self.tables[name] if self.has(name) else None]

    def latest(self, name: str) -> int:
        table = self.tables.get(name)
        if table is None:
            return NAT
        return max((instants(table[c]).max(initial=NAT) for c in AS_OF_COLUMNS.get(name, ()) if c in table), default=NAT)

    def map(self, fn: Callable, *handles: Handle, **shared) -> Handle:
        return [fn(*items, **shared) for items in zip(*handles, strict=True)]

    def regroup(self, handle: Handle, key: Callable, n: int) -> Handle:
        return handle

    def persist(self, handle: Handle) -> Handle:
        return handle

    def gather(self, *handles: Handle) -> tuple[list, ...]:
        return handles

    def summary(self, name: str, as_of: object = None) -> pd.DataFrame:
        return self.tables[name]

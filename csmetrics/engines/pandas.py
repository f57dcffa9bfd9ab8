"""The pandas engine: everything in this process, one bucket holding the whole tables."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import pandas as pd

from csmetrics.engines.base import AS_OF_COLUMNS, Handle, Memo
from csmetrics.periods import NAT, instants

__all__ = ["PandasEngine"]


class PandasEngine:
    """Everything in this process: one bucket holding the whole (validated) tables.

    The engine owns a :class:`~csmetrics.engines.base.Memo`, so the families of one run that
    are given the same billing frame share its ledger (nobody changes the engine's frames).
    """

    name = "pandas"
    n = 1

    def __init__(self, tables: Mapping[str, pd.DataFrame | None]):
        self.tables = {k: v for k, v in tables.items() if v is not None}
        self.memo = Memo()

    def has(self, name: str) -> bool:
        return name in self.tables and len(self.tables[name]) > 0

    def holds(self, name: str) -> bool:
        return name in self.tables

    def table(self, name: str) -> Handle:
        return [self.tables[name] if self.has(name) else None]

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

    def customer_output(self, groups: Handle) -> pd.DataFrame:
        """customers.parquet: the one bucket's rows."""
        return groups[0]

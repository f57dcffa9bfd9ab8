"""Where the per-customer work runs: the engine interface, planned work, and its resolution.

An engine holds the validated tables split into *buckets*: disjoint sets of customers,
every table of one customer in the same bucket. The pandas engine
(:mod:`csmetrics.engines.pandas`) has one bucket (the whole tables); the Dask engine
(:mod:`csmetrics.engines.dask`) has many, made by hashing ``customer_id``. Plans
(:mod:`csmetrics.plans`) are written once against :class:`Engine`; a plan returns a
:class:`Pending` and :func:`resolve` computes any number of them in one go.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import Executor
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np
import pandas as pd

from csmetrics.memo import Memo
from csmetrics.schemas import AS_OF_COLUMNS

__all__ = ["AS_OF_COLUMNS", "Engine", "Handle", "Memo", "Pending", "resolve"]

#: One item per bucket: a frame (or None where the table is absent) or a result of ``map``.
Handle = list


class Engine(Protocol):
    """What a plan may ask of an engine.

    - ``n``: the number of buckets; ``name``: for the manifest only;
    - ``has(name)``: the table is given and has rows; ``holds(name)``: it is given (maybe empty);
    - ``table(name, columns)``: the handle of a big table (None items where it is absent or empty);
      ``columns``: those a call reads (of those present), so an engine that copies buckets copies no more;
    - ``small(name)``: a small table (customers, costs, fx) as one pandas frame, or None;
    - ``latest(name)``: the latest timestamp of a table's as_of columns (int ns, NAT if none);
    - ``map(fn, *handles, **shared)``: ``fn`` per bucket; ``shared`` values go to every call;
    - ``regroup(handle, key, n)``: frames re-split by ``key(frame) -> group in 0..n-1``;
    - ``persist(handle)``: keep results for several later maps; ``gather(*handles)``: compute;
    - ``summary(name, as_of)``: a small frame holding the table's columns and timestamp
      extremes (all that a family's ``prepare`` needs to build its context);
    - ``memo``: a :class:`Memo` the families may share work through, or None;
    - ``input_rows`` and ``customer_output`` (the customer rows of every bucket as one output, in
      ``order``; ``key`` groups them into ``n`` period ranges where it is streamed): what differs
      between engines in a report.
    """

    @property
    def name(self) -> str: ...

    @property
    def n(self) -> int: ...

    @property
    def memo(self) -> Memo | None: ...

    def has(self, name: str) -> bool: ...

    def holds(self, name: str) -> bool: ...

    def table(self, name: str, columns: Sequence[str] | None = None) -> Handle: ...

    def whole(self, name: str) -> Handle | None: ...

    def slices(self, name: str) -> Handle: ...

    def small(self, name: str) -> pd.DataFrame | None: ...

    def latest(self, name: str) -> int: ...

    def map(self, fn: Callable, *handles: Handle, **shared: Any) -> Handle: ...

    def regroup(self, handle: Handle, key: Callable, n: int) -> Handle: ...

    def persist(self, handle: Handle) -> Handle: ...

    def gather(self, *handles: Handle) -> tuple[list, ...]: ...

    def summary(self, name: str, as_of: object = None) -> pd.DataFrame: ...

    def input_rows(self, name: str, given: object, rejected: Mapping[str, pd.DataFrame]) -> int: ...

    def customer_output(self, rows: Handle, key: Callable, order: Callable, n: int) -> Any: ...


@dataclass
class Pending:
    """Handles to compute and what to do with their gathered per-bucket results."""

    handles: tuple
    finish: Callable[..., Any]


def merged_rows(
    parts: Sequence[Any], order: Callable[[pd.DataFrame], pd.DataFrame], pool: Executor | None = None
) -> pd.DataFrame:
    """customers.parquet from the buckets' rows (each a frame or a list of frames): one frame in
    ``order``, the order of the key columns found once and each column merged and its parts dropped
    (no second whole copy; ``pool``: columns merged in its threads, as numpy and Arrow copy without
    the GIL); parts with other columns (a bucket without movements or scores) are concatenated."""
    pieces = [f for part in parts for f in (part if isinstance(part, list) else [part]) if f is not None]
    frames = [f for f in pieces if len(f)]
    if len(frames) <= 1:
        return order(frames[0] if frames else pieces[0])
    if any(list(f.columns) != list(frames[0].columns) for f in frames):
        return order(pd.concat(frames, ignore_index=True))
    keys = pd.concat([f[["period", "customer_id"]] for f in frames], ignore_index=True)
    permutation = order(keys.assign(row=np.arange(len(keys))))["row"].to_numpy()
    by_column = {column: [f.pop(column) for f in frames] for column in frames[0].columns}
    names = list(by_column)

    def merge(column: str) -> Any:
        return pd.concat(by_column.pop(column), ignore_index=True).array.take(permutation)

    merged = list(pool.map(merge, names)) if pool is not None else [merge(c) for c in names]
    return pd.DataFrame(dict(zip(names, merged, strict=True)), copy=False)


def joined_rows(part: Any) -> Any:
    """A bucket's rows as one frame (the parts of :func:`merged_rows` concatenated)."""
    return pd.concat(part, ignore_index=True) if isinstance(part, list) else part


def resolve(
    engine: Engine, pendings: Mapping[str, Pending], started: Callable[[], Any] | None = None
) -> dict[str, Any]:
    """Compute every pending's handles in one go, then finish each; on an engine whose calls run in
    the background (threads), each is finished as soon as its own handles are done, so the caller's
    thread finishes the early families while the pool computes the later ones. An engine with
    ``start`` (Dask) submits every handle at once first, and then does the same. ``started`` is
    called once the work is under way (the report submits customers.parquet's regroup there)."""
    start = getattr(engine, "start", None)
    if start is not None:
        flat = start(*[h for p in pendings.values() for h in p.handles])
        k, submitted = 0, {}
        for name, pending in pendings.items():
            submitted[name] = Pending(tuple(flat[k : k + len(pending.handles)]), pending.finish)
            k += len(pending.handles)
        pendings = submitted
    if started is not None:
        started()
    if start is not None or getattr(engine, "finishes_as_ready", False):
        return {name: pending.finish(*engine.gather(*pending.handles)) for name, pending in pendings.items()}
    flat = [h for p in pendings.values() for h in p.handles]
    results = engine.gather(*flat)
    out, k = {}, 0
    for name, pending in pendings.items():
        mine = results[k : k + len(pending.handles)]
        k += len(pending.handles)
        out[name] = pending.finish(*mine)
    return out

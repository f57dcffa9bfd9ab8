"""Plumbing shared by the families: contexts, segment codes, partial frames.

A partial is a long DataFrame keyed by ``period_index`` and the ``by`` columns
with additive sum columns. Partials of disjoint row sets (for per-customer
families: disjoint customer sets) are combined by :func:`combine` and spread
back onto the dense (period, segment) grid by :func:`dense` for finalizing.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from csmetrics.frame import attach_segments, dense_codes, encode_segments, int_offsets
from csmetrics.options import ConfigError, UnknownNameError, check_by, check_freq, check_tz
from csmetrics.periods import NAT, Spine, instants, make_spine, period_codes, resolve_as_of
from csmetrics.sorting import order_by, run_starts

__all__ = [
    "instant_range",
    "distinct_per_cell",
    "run_starts",
    "user_codes",
    "UserOrder",
    "user_order",
    "users_of",
    "Context",
    "Grid",
    "as_tuple",
    "check_segment_columns",
    "combine",
    "dense",
    "long_partial",
    "make_context",
    "resolve_spine",
    "segments_of",
]


def as_tuple(by: Sequence[str] | str | None) -> tuple[str, ...]:
    return (by,) if isinstance(by, str) else tuple(by or ())


@dataclass(frozen=True)
class Context:
    """Global facts every partition of a family shares."""

    spine: Spine
    by: tuple[str, ...]
    customers: pd.DataFrame | None = field(default=None, repr=False)
    options: dict = field(default_factory=dict)


def resolve_spine(
    table: pd.DataFrame,
    *,
    period_columns: Sequence[str],
    as_of_columns: Sequence[str],
    freq: str,
    tz: str,
    as_of: object,
    start: object,
    end: object,
    through_as_of: bool,
) -> Spine:
    """as_of (given, else the latest of ``as_of_columns``) and the spine of the periods with
    data in ``period_columns`` up to it; ``through_as_of`` extends the spine to as_of's period."""
    if as_of is None:
        latest = max((instants(table[c]).max(initial=NAT) for c in as_of_columns if c in table), default=NAT)
        if latest == NAT:
            raise ConfigError("as_of cannot be inferred from an empty table; pass as_of=")
        as_of_ts = pd.Timestamp(latest, tz="UTC")
    else:
        as_of_ts = resolve_as_of(as_of)
    ranges = [instant_range(instants(table[c]), as_of_ts.value) for c in period_columns if c in table]
    known = [r for r in ranges if r is not None]
    if through_as_of or not known:
        known.append((as_of_ts.value, as_of_ts.value))
    bounds = np.array([min(r[0] for r in known), max(r[1] for r in known)], dtype=np.int64)
    return make_spine(period_codes(bounds, freq, tz), freq, tz, as_of_ts, start, end)


def instant_range(stamps: np.ndarray, as_of: int) -> tuple[int, int] | None:
    """(earliest, latest) instant of ``stamps`` at or before as_of, NaT left out; None if there is none."""
    if not len(stamps):
        return None
    with np.errstate(over="ignore"):
        earliest = int((stamps - 1).min()) + 1  # NaT (the smallest int64) wraps to the largest: never the min
    if earliest > as_of:  # nothing by as_of (or every stamp NaT)
        return None
    latest = int(stamps.max())
    if latest > as_of:  # some after as_of (an explicit as_of): the latest of the others
        latest = int(np.max(stamps, where=stamps <= as_of, initial=NAT))
    return earliest, latest


def make_context(
    table: pd.DataFrame,
    *,
    period_columns: Sequence[str],
    as_of_columns: Sequence[str],
    freq: str,
    by: Sequence[str] | str | None,
    customers: pd.DataFrame | None,
    tz: str,
    as_of: object,
    start: object,
    end: object,
    table_name: str = "the table",
    reserved: Sequence[str] = (),
    extra_columns: Sequence[str] = (),
    **options,
) -> Context:
    """Spine from the periods with data (``period_columns`` up to as_of) and the as_of instant.

    as_of defaults to the latest of ``as_of_columns``; an explicit as_of also
    extends the spine through its period (stock metrics such as backlog are
    known up to it).
    """
    freq, tz = check_freq(freq), check_tz(tz)
    by = check_by(by, reserved=reserved)
    check_segment_columns(by, table, customers, table_name, extra=extra_columns)
    spine = resolve_spine(
        table,
        period_columns=period_columns,
        as_of_columns=as_of_columns,
        freq=freq,
        tz=tz,
        as_of=as_of,
        start=start,
        end=end,
        through_as_of=as_of is not None,
    )
    return Context(spine, by, customers, options)


def check_segment_columns(
    by: Sequence[str], table: pd.DataFrame, customers: pd.DataFrame | None, table_name: str, extra: Sequence[str] = ()
) -> None:
    """Each ``by`` column is in the table, in customers or in ``extra``; else an error listing the columns there are."""
    available = [*table.columns, *(customers.columns if customers is not None else ()), *extra]
    missing = [c for c in by if c not in available]
    if missing:
        there = ", ".join(dict.fromkeys(str(c) for c in available if c != "customer_id"))
        raise UnknownNameError(
            f"segment column(s) {missing} are neither in {table_name} nor in customers"
            + ("" if customers is not None else " (no customers table given)")
            + f"; the columns there are: {there}"
        )


def segments_of(table: pd.DataFrame, context: Context, table_name: str) -> tuple[np.ndarray, pd.DataFrame | None]:
    """Segment code of each row of ``table`` and the segment table."""
    values = attach_segments(table, context.by, context.customers, table_name)
    return encode_segments(values)


def long_partial(
    columns: dict[str, np.ndarray],
    names: Sequence[str],
    seg_table: pd.DataFrame | None,
    n_periods: int,
    every_segment: bool = False,
) -> pd.DataFrame:
    """The (periods, segments) arrays as a long frame of the cells any row touched
    (``every_segment``: and a zero row in the first period for segments no row touched,
    so that every segment of the rows is reported, whatever engine splits them)."""
    n_seg = next(iter(columns.values())).shape[1]
    values = np.column_stack([np.asarray(columns[name], dtype=float).ravel() for name in names])
    touched = values.any(axis=1)
    if every_segment and n_periods:
        grid = touched.reshape(n_periods, n_seg)
        grid[0, ~grid.any(axis=0)] = True
    cells = np.flatnonzero(touched)
    out: dict[str, object] = {"period_index": cells // n_seg}
    if seg_table is not None:
        segment_of_cell = cells % n_seg
        for column in seg_table.columns:
            out[column] = seg_table[column].iloc[segment_of_cell].reset_index(drop=True)
    sums = pd.DataFrame(values[cells], columns=list(names))  # one block, not a column at a time
    return pd.concat([pd.DataFrame(out), sums], axis=1)


def combine(partials: Sequence[pd.DataFrame], by: Sequence[str], names: Sequence[str]) -> pd.DataFrame:
    """Sum partials of disjoint row sets, per period and segment."""
    keys = ["period_index", *by]
    stacked = pd.concat(partials, ignore_index=True)
    return stacked.groupby(keys, dropna=False, sort=True, observed=True)[list(names)].sum().reset_index()


def dense(
    summed: pd.DataFrame, by: Sequence[str], names: Sequence[str], n_periods: int
) -> tuple[dict[str, np.ndarray], pd.DataFrame | None]:
    """A combined partial as (period, segment) arrays over every period of the spine."""
    seg_codes, seg_table = encode_segments(summed[list(by)])
    n_seg = len(seg_table) if seg_table is not None else 1
    cell = summed["period_index"].to_numpy(dtype=np.int64) * n_seg + seg_codes
    return {
        name: np.bincount(cell, weights=summed[name].to_numpy(dtype=float), minlength=n_periods * n_seg).reshape(
            n_periods, n_seg
        )
        for name in names
    }, seg_table


# --------------------------------------------------------------------------
# Sums over the (period, segment) grid
# --------------------------------------------------------------------------
class Grid:
    """Sums over the (period, segment) grid. ``cells`` maps rows to cells once; each
    ``add`` is then one bincount."""

    def __init__(self, n_periods: int, n_segments: int):
        self.n_periods, self.n_segments = n_periods, n_segments

    def points(self, period: np.ndarray, segment: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Cells of rows at their period (rows outside the spine are dropped)."""
        keep = (period >= 0) & (period < self.n_periods)
        return period[keep] * self.n_segments + segment[keep], keep

    def cells(self, period: np.ndarray, segment: np.ndarray) -> np.ndarray:
        """Cells of every row in a grid padded by a period before the spine and one after it, where
        rows outside the spine fall: no masks, the padding is dropped by the sums. ``period`` is a
        position in -1..n (:meth:`~csmetrics.periods.Spine.positions`)."""
        cells = period + 1
        if self.n_segments > 1:
            cells *= self.n_segments
            cells += segment
        return cells

    def count_classes(self, cells: np.ndarray, classes: np.ndarray, n_classes: int) -> np.ndarray:
        """Row counts per (period, segment, class) of padded ``cells``, ``classes`` in 0..n_classes-1."""
        flat = np.bincount(cells * n_classes + classes, minlength=(self.n_periods + 2) * self.n_segments * n_classes)
        return flat.reshape(self.n_periods + 2, self.n_segments, n_classes)[1:-1].astype(float)

    def sum(self, cells: np.ndarray, values: np.ndarray) -> np.ndarray:
        """Sum of ``values`` per (period, segment) of padded ``cells`` (values in the padding may be NaN)."""
        flat = np.bincount(cells, weights=values, minlength=(self.n_periods + 2) * self.n_segments)
        return flat.reshape(self.n_periods + 2, self.n_segments)[1:-1]

    def add(self, cells: tuple[np.ndarray, np.ndarray], values: np.ndarray) -> np.ndarray:
        index, keep = cells
        size = self.n_periods * self.n_segments
        weights = np.asarray(values)
        if len(index) != len(weights):  # some rows fall outside the spine
            weights = weights[keep]
        # a count (bool weights) too: weighting by the flags is 3-4x faster than picking the true rows
        counts = np.bincount(index, weights=weights, minlength=size)
        return counts.reshape(self.n_periods, self.n_segments).astype(float)

    def add_classes(self, cells: tuple[np.ndarray, np.ndarray], classes: np.ndarray, n_classes: int) -> np.ndarray:
        """Row counts per cell and class in one bincount: (periods, segments, n_classes).

        ``classes`` holds one code per row in 0..n_classes-1, or -1 for rows that count nowhere.
        """
        index, keep = cells
        codes = np.asarray(classes)
        if len(index) != len(codes):
            codes = codes[keep]
        # -1 goes to an extra class that is dropped: one bincount, no masked copies
        width = n_classes + 1
        flat = np.bincount(
            index * width + np.where(codes >= 0, codes, n_classes), minlength=self.n_periods * self.n_segments * width
        )
        return flat.reshape(self.n_periods, self.n_segments, width)[..., :n_classes].astype(float)

    def ranges(
        self, start: np.ndarray, stop: np.ndarray, segment: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Cells of the first period and of the period after the last, for range sums."""
        start = np.clip(start, 0, self.n_periods)
        stop = np.clip(stop, 0, self.n_periods)
        keep = stop > start
        return start[keep] * self.n_segments + segment[keep], stop[keep] * self.n_segments + segment[keep], keep

    def add_range(self, cells: tuple[np.ndarray, np.ndarray, np.ndarray], values: np.ndarray) -> np.ndarray:
        """Sum of ``values`` over each row's periods start..stop-1 (a difference array)."""
        first, after, keep = cells
        size = (self.n_periods + 1) * self.n_segments
        weights = np.asarray(values, dtype=float)[keep]
        diff = np.bincount(first, weights=weights, minlength=size) - np.bincount(after, weights=weights, minlength=size)
        return np.cumsum(diff.reshape(self.n_periods + 1, self.n_segments), axis=0)[: self.n_periods]


def distinct_per_cell(cell: np.ndarray, item: np.ndarray, n_cells: int) -> np.ndarray:
    """Number of distinct ``item`` per ``cell`` (both non-negative ints)."""
    if len(cell) == 0:
        return np.zeros(n_cells)
    width = int(item.max()) + 1
    pairs = np.sort(cell * width + item)  # a sort of values (vectorized): 2-5x a hash of the pairs at 24M
    return np.bincount(pairs[run_starts(pairs)] // width, minlength=n_cells).astype(float)


def user_codes(events: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
    """(user code, customer code) per event: a user is (customer_id, user_id), the customer itself
    where user_id is missing (METRICS.md §8, §15). Integer ids are offsets (no hashing) combined into
    one key: one factorize, at most."""
    customer, n_customers = dense_codes(events["customer_id"])
    if "user_id" not in events:
        return customer, customer
    found = int_offsets(events["user_id"])  # -1 where missing
    if found is None or n_customers * (found[1] + 1) >= 2**62:  # text ids, or a key too wide for int64
        found = dense_codes(events["user_id"])
    user, width = found
    key = customer * (width + 1) + (user + 1)
    codes, _ = pd.factorize(key)  # a hash here: users are few per customer (1.7 s vs 4.4 s sorting 24M)
    return codes.astype(np.int64), customer


@dataclass(frozen=True)
class UserOrder:
    """The users of a bucket's events, found once for the families that read them (engagement, usage
    retention, active days): the :func:`user_codes` of each event and the events in (user, instant)
    order (stable: ties keep the rows' order). Arithmetic on the codes casts them to int64 first."""

    user: np.ndarray
    customer: np.ndarray
    order: np.ndarray

    def kept(self, keep: np.ndarray) -> UserOrder:
        """The same for the rows ``keep`` (a mask over these events) selects, numbered among them."""
        if len(keep) != len(self.user):
            raise ValueError(f"internal: the users of {len(self.user)} events given for {len(keep)} events")
        if keep.all():
            return self
        position = np.cumsum(keep) - 1
        return UserOrder(self.user[keep], self.customer[keep], position[self.order[keep[self.order]]])


def user_order(events: pd.DataFrame) -> UserOrder:
    """The :class:`UserOrder` of validated events (a map over a bucket: one per report), in 32-bit
    integers where the rows allow (a report holds them for three families: 12 bytes an event)."""
    user, customer = user_codes(events)
    order = order_by(user, instants(events["timestamp"]))
    if len(events) < 2**31:
        return UserOrder(user.astype(np.int32), customer.astype(np.int32), order.astype(np.int32))
    return UserOrder(user, customer, order)


def users_of(events: pd.DataFrame, users: UserOrder | None, keep: np.ndarray) -> UserOrder:
    """The users of ``events`` (the rows ``keep`` selected): ``users`` (found on all of them) as kept, or found here."""
    return user_order(events) if users is None else users.kept(keep)

"""Support metrics from tickets (METRICS.md §6), by created_at.

``partial`` sums per (period, segment) over any set of tickets (counts, sums of
handle and wait seconds, resolved, reopened, SLA outcomes, backlog, distinct
customers); ``quantiles`` computes the response and resolution quantiles
exactly per cell from the rows; ``finalize`` turns both into the metric frame.

Conventions where the specification is silent (docs/METRICS_NOTES.md):
a ticket counts as resolved (or responded) only if that happened by as_of;
FCR needs contacts == 1 and reopens == 0 (a missing reopens counts as 0, a
missing contacts as not first-contact); abandoned tickets never enter the
backlog; a ticket with an SLA target that is still unanswered and still within
its target at as_of is left out of the SLA rate (not yet decided). Metrics whose
input column is absent (e.g. no ``contacts``: no fcr_rate) are not reported.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd

from csmetrics.frame import FrameBuilder, dense_codes, segment_positions
from csmetrics.metrics._common import (
    Context,
    Grid,
    combine,
    dense,
    instants,
    long_partial,
    make_context,
    segments_of,
)
from csmetrics.options import ConfigError, UnknownNameError, check_sla_targets
from csmetrics.periods import NAT
from csmetrics.schedule import Schedule, business_minutes
from csmetrics.schemas import AS_OF_COLUMNS
from csmetrics.stats import quantiles_by_group_columns

__all__ = [
    "DURATION_COLUMNS",
    "PARTIAL_COLUMNS",
    "QUANTILE_COLUMNS",
    "Clock",
    "check_schedules",
    "combine",
    "distinct_customers",
    "durations",
    "exact_quantiles",
    "finalize",
    "partial",
    "prepare",
    "quantiles",
    "share",
    "slice_arrays",
    "ticket_arrays",
]

PARTIAL_COLUMNS = (
    "tickets",
    "fcr",
    "handle_sum",
    "handle_n",
    "wait_sum",
    "wait_n",
    "abandoned",
    "resolved",
    "reopened",
    "sla_met",
    "sla_due",
    "sla_resolution_met",
    "sla_resolution_due",
    "one_touch",
    "two_touch",
    "backlog",
    "customers",
)
#: the duration columns of the quantile rows: calendar always, business time with a schedule
DURATION_COLUMNS = (
    "first_response_minutes",
    "resolution_hours",
    "first_response_business_minutes",
    "resolution_business_hours",
)
QUANTILE_COLUMNS = tuple(f"{name}_{q}" for name in DURATION_COLUMNS for q in ("p50", "p90"))
_MINUTE = 60 * 10**9
_HOUR = 3600 * 10**9
_DENSE_PAIRS = 2**28  # bytes of the (cell, customer) grid for distinct customers


def prepare(
    tickets: pd.DataFrame,
    *,
    freq: str = "M",
    by: Sequence[str] | str | None = None,
    customers: pd.DataFrame | None = None,
    tz: str = "UTC",
    as_of: object = None,
    start: object = None,
    end: object = None,
    sla_targets: Mapping[str, float] | None = None,
    resolution_targets: Mapping[str, float] | None = None,
    business_hours: Schedule | Mapping[str, Schedule] | None = None,
    schedule_column: str | None = None,
) -> tuple[pd.DataFrame, Context]:
    """The shared context (spine, as_of, which columns exist, targets, schedules) of validated tickets."""
    context = make_context(
        tickets,
        period_columns=["created_at"],
        as_of_columns=AS_OF_COLUMNS["tickets"],
        freq=freq,
        by=by,
        customers=customers,
        tz=tz,
        as_of=as_of,
        start=start,
        end=end,
        table_name="tickets",
        present=frozenset(tickets.columns),
        sla_targets=check_sla_targets(sla_targets) or None,
        resolution_targets=check_sla_targets(resolution_targets, "resolution_targets") or None,
        schedules=check_schedules(business_hours, schedule_column, tickets),
    )
    return tickets, context


def _optional(tickets: pd.DataFrame, column: str, fill: float = np.nan) -> np.ndarray:
    if column not in tickets:
        return np.full(len(tickets), fill)
    return tickets[column].to_numpy(dtype=float, na_value=np.nan)


def ticket_arrays(tickets: pd.DataFrame, context: Context):
    """(created instants, spine position of each ticket's creation period: -1 before the spine or
    created after as_of, n after the spine; segment codes, segment table, as_of)."""
    spine = context.spine
    as_of = spine.as_of.value
    created = instants(tickets["created_at"])
    period = spine.positions(created)
    late = created > as_of
    if late.any():
        period[late] = -1
    seg, seg_table = segments_of(tickets, context, "tickets")
    return created, period, seg, seg_table, as_of


def _instant_by(tickets: pd.DataFrame, column: str, as_of: int) -> np.ndarray:
    """The column's instants, NaT where absent, missing or after as_of."""
    if column not in tickets:
        return np.full(len(tickets), NAT)
    values = instants(tickets[column])
    late = values > as_of
    return np.where(late, NAT, values) if late.any() else values


def slice_arrays(arrays: tuple, rows: slice | np.ndarray) -> tuple:
    """The :func:`ticket_arrays` of some of the rows (a slice, or row positions)."""
    created, period, seg, seg_table, as_of = arrays
    return created[rows], period[rows], seg[rows], seg_table, as_of


#: The count columns of the partial as factors of one class code per ticket (one bincount counts them
#: all): resolved by as_of, contacts (other / 1 / 2), reopened, handle and wait known, abandoned, and
#: the first-response and resolution SLA outcomes (not due / due and missed / met).
_FACTORS = (("resolved", 2), ("contacts", 3), ("reopened", 2), ("handle_n", 2), ("wait_n", 2), ("abandoned", 2),
            ("sla", 3), ("sla_resolution", 3))  # fmt: skip


def partial(
    tickets: pd.DataFrame, context: Context, arrays: tuple | None = None, customers: bool = True
) -> pd.DataFrame:
    """Additive sums per (period index, segment values) over these tickets.

    ``arrays`` (from ``ticket_arrays``) may be passed when ``quantiles`` runs on the same rows.
    ``customers=False`` leaves the distinct customers at 0 (they are counted per whole cell
    elsewhere, :func:`distinct_customers`): the other sums are additive over any split of the rows.
    """
    created, period, seg, seg_table, as_of = arrays or ticket_arrays(tickets, context)
    n = context.spine.n
    grid = Grid(n, len(seg_table) if seg_table is not None else 1)
    cells = grid.cells(period, seg)
    resolved_at = _instant_by(tickets, "resolved_at", as_of)
    responded_at = _instant_by(tickets, "first_response_at", as_of)
    resolved = resolved_at != NAT
    abandoned = tickets["abandoned"].to_numpy(dtype=bool) if "abandoned" in tickets else np.zeros(len(tickets), bool)
    contacts = _optional(tickets, "contacts")
    handle = _optional(tickets, "handle_seconds")
    wait = _optional(tickets, "wait_seconds")
    handle_known = ~np.isnan(handle) & ~abandoned
    wait_known = ~np.isnan(wait) & ~abandoned
    clock = Clock(tickets, context, created, as_of)
    sla_met, sla_due = _within(context.options.get("sla_targets"), tickets, clock, responded_at, _MINUTE)
    res_met, res_due = _within(
        context.options.get("resolution_targets"), tickets, clock, resolved_at, _HOUR, ~abandoned
    )
    two = np.int8(2)
    factors = (  # each factor's level per ticket, in _FACTORS' order (bool flags are levels 0 / 1)
        resolved,
        (contacts == 1).view(np.int8) + two * (contacts == 2),  # other 0, one contact 1, two contacts 2
        _optional(tickets, "reopens", 0.0) > 0,  # a missing reopens counts as 0 (NaN > 0 is False)
        handle_known,
        wait_known,
        abandoned,
        sla_due.view(np.int8) + sla_met,  # not due 0, due and missed 1, met 2
        res_due.view(np.int8) + res_met,
    )
    code = np.zeros(len(tickets), dtype=np.int16)  # 864 classes: two bytes a ticket
    for (_, size), factor in zip(_FACTORS, factors, strict=True):
        code *= size
        code += factor
    shape = tuple(size for _, size in _FACTORS)
    counts = grid.count_classes(cells, code, int(np.prod(shape))).reshape((n, grid.n_segments, *shape))
    f = {name: k + 2 for k, (name, _) in enumerate(_FACTORS)}  # axis of each factor

    def total(**fixed: int) -> np.ndarray:
        index: list[int | slice] = [slice(None)] * counts.ndim
        for name, value in fixed.items():
            index[f[name]] = value
        picked = counts[tuple(index)]
        return picked.reshape(n, grid.n_segments, int(np.prod(picked.shape[2:]))).sum(axis=2)

    columns = {
        "tickets": total(),
        "fcr": total(resolved=1, contacts=1, reopened=0),
        "handle_sum": grid.sum(cells * handle_known, handle),  # unknown (NaN) and abandoned: the padding
        "handle_n": total(handle_n=1),
        "wait_sum": grid.sum(cells * wait_known, wait),
        "wait_n": total(wait_n=1),
        "abandoned": total(abandoned=1),
        "resolved": total(resolved=1),
        "reopened": total(resolved=1, reopened=1),
        "sla_met": total(sla=2),
        "sla_due": total(sla=1) + total(sla=2),
        "sla_resolution_met": total(sla_resolution=2),
        "sla_resolution_due": total(sla_resolution=1) + total(sla_resolution=2),
        "one_touch": total(resolved=1, contacts=1),
        "two_touch": total(resolved=1, contacts=2),
    }
    # backlog: open from the creation period up to (not including) the resolution period, as a
    # difference array over the padded grid (created before the spine or after as_of, abandoned:
    # never open; their +1 and -1 cancel in the padding). An open ticket is resolved (if at all) at
    # or after its creation, so its resolution position is -1 only when it is unresolved: open to n.
    open_ = (period >= 0) & ~abandoned
    stop = context.spine.positions(resolved_at)
    stop += (n + 1) * (stop < 0)
    diff = np.bincount(cells * open_, minlength=(n + 2) * grid.n_segments)
    diff -= np.bincount(grid.cells(stop, seg) * open_, minlength=(n + 2) * grid.n_segments)
    columns["backlog"] = np.cumsum(diff.reshape(n + 2, grid.n_segments), axis=0)[1 : n + 1].astype(float)
    columns["customers"] = (
        distinct_customers(tickets["customer_id"], period, seg, grid) if customers else np.zeros((n, grid.n_segments))
    )
    return long_partial(columns, PARTIAL_COLUMNS, seg_table, n, every_segment=True)


def check_schedules(business_hours: Any, schedule_column: str | None, tickets: pd.DataFrame) -> dict | None:
    """{"default": Schedule or None, "column": name or None, "by_value": {value: Schedule}} or None."""
    if business_hours is None:
        if schedule_column is not None:
            raise ConfigError("schedule_column needs business_hours (a mapping of its values to schedules)")
        return None
    if isinstance(business_hours, Schedule):
        return {"default": business_hours, "column": None, "by_value": {}}
    if not isinstance(business_hours, Mapping) or not all(isinstance(s, Schedule) for s in business_hours.values()):
        raise ConfigError("business_hours must be a csmetrics.Schedule or a mapping of values to Schedules")
    if schedule_column is None:
        raise ConfigError("business_hours maps values to schedules: name their ticket column with schedule_column")
    if schedule_column not in tickets.columns:
        raise UnknownNameError(f"schedule_column {schedule_column!r} is not a tickets column")
    by_value = {str(k): v for k, v in business_hours.items() if k != "default"}
    return {"default": business_hours.get("default"), "column": schedule_column, "by_value": by_value}


class Clock:
    """Elapsed time per ticket from its creation: business time under the ticket's schedule where one
    applies (§11: its team's, else "default"), calendar time otherwise."""

    def __init__(self, tickets: pd.DataFrame, context: Context, created: np.ndarray, as_of: int):
        self.created, self.as_of = created, as_of
        self.groups: list[tuple[np.ndarray, Schedule | None]] = []
        schedules = context.options.get("schedules")
        if schedules is None:
            return
        if schedules["column"] is None:
            self.groups.append((np.arange(len(tickets)), schedules["default"]))
            return
        codes, values = pd.factorize(
            tickets[schedules["column"]].astype("str").where(tickets[schedules["column"]].notna())
        )
        chosen = [schedules["by_value"].get(str(v), schedules["default"]) for v in values] + [schedules["default"]]
        for code, schedule in enumerate(chosen):
            rows = np.flatnonzero(codes == (code if code < len(values) else -1))
            if len(rows):
                self.groups.append((rows, schedule))

    @property
    def business(self) -> bool:
        return any(schedule is not None for _, schedule in self.groups)

    def elapsed(self, done: np.ndarray) -> np.ndarray:
        """Nanoseconds from created_at to ``done`` (NaN where done is NaT), business time where a schedule applies."""
        out = np.where(done != NAT, (done - self.created).astype(float), np.nan)
        for rows, schedule in self.groups:
            if schedule is not None and len(rows):
                start = pd.Series(pd.DatetimeIndex(self.created[rows].view("M8[ns]"), tz="UTC"))
                end = pd.Series(pd.DatetimeIndex(done[rows].view("M8[ns]"), tz="UTC"))
                out[rows] = business_minutes(start, end, schedule) * _MINUTE
        return out


def _within(targets: Mapping[str, float] | None, tickets: pd.DataFrame, clock: Clock, done: np.ndarray, unit: int,
            eligible: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:  # fmt: skip
    """(met, decided) per ticket against its priority's target (both False without a target): met when done
    within the target; decided when done by as_of or the target has passed by as_of."""
    if not targets or "priority" not in tickets:
        zeros = np.zeros(len(tickets), dtype=bool)
        return zeros, zeros
    codes, priorities = pd.factorize(tickets["priority"])  # map the few distinct priorities, not every row
    per_priority = np.array([float(targets.get(p, np.nan)) for p in priorities] + [np.nan])
    target = per_priority[codes] * unit
    has_target = ~np.isnan(target) & (True if eligible is None else eligible)
    took = clock.elapsed(done)
    waited = clock.elapsed(np.full(len(done), clock.as_of, dtype=np.int64))
    finished = done != NAT
    met = has_target & finished & (took <= target)
    missed = has_target & ((finished & (took > target)) | (~finished & (waited > target)))
    return met, met | missed


def distinct_customers(customer_id: pd.Series, period: np.ndarray, seg: np.ndarray, grid: Grid) -> np.ndarray:
    """Customers with a ticket per (period, segment) cell, of the rows given: additive across row
    sets that hold each cell's rows whole (customer buckets, or shares of the periods)."""
    inside = (period >= 0) & (period < grid.n_periods)
    cell = period * grid.n_segments + seg
    if not inside.all():
        cell, customer_id = cell[inside], customer_id[inside]
    codes, width = dense_codes(customer_id)
    n_cells = grid.n_periods * grid.n_segments
    if n_cells * width <= _DENSE_PAIRS:  # a (cell, customer) byte grid: one scatter and one sum, no hashing
        seen = np.zeros(n_cells * width, dtype=bool)
        seen[cell * width + codes] = True
        counts = seen.reshape(n_cells, width).sum(axis=1)
    else:
        counts = np.bincount(pd.unique(cell * width + codes) // width, minlength=n_cells)
    return counts.reshape(grid.n_periods, grid.n_segments).astype(float)


def share(
    tickets: pd.DataFrame, context: Context, arrays: tuple, part: tuple[int, int]
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The distinct customers (a partial holding only them) and the exact quantiles of the tickets of
    periods p with p % n == k (``part`` (k, n)): each cell is whole in one share, so n shares count
    every cell once and their results add up."""
    mine = np.flatnonzero(arrays[1] % part[1] == part[0])
    # a schedule's clock reads the frame; otherwise the columns are taken one at a time
    rows = tickets.take(mine) if context.options.get("schedules") is not None else _Columns(tickets, mine)
    created, period, seg, seg_table, as_of = arrays = slice_arrays(arrays, mine)
    n = context.spine.n
    grid = Grid(n, len(seg_table) if seg_table is not None else 1)
    columns = {name: np.zeros((n, grid.n_segments)) for name in PARTIAL_COLUMNS}
    columns["customers"] = distinct_customers(rows["customer_id"], period, seg, grid)
    return long_partial(columns, PARTIAL_COLUMNS, seg_table, n), quantiles(rows, context, arrays)


def durations(
    tickets: Any, context: Context, arrays: tuple | None = None
) -> tuple[dict[str, np.ndarray], pd.DataFrame | None]:
    """The rows the quantiles need: period index, segment code, minutes to first response and
    hours to resolution (NaN where not done by as_of), for tickets in the spine with either."""
    created, period, seg, seg_table, as_of = arrays or ticket_arrays(tickets, context)
    inside = (period >= 0) & (period < context.spine.n)
    clock = Clock(tickets, context, created, as_of)
    took = {}
    for name, column, unit in (
        ("first_response_minutes", "first_response_at", _MINUTE),
        ("resolution_hours", "resolved_at", _HOUR),
    ):
        done = _instant_by(tickets, column, as_of)
        took[name] = np.where(done != NAT, (done - created) / unit, np.nan)
        if clock.business:
            took[name.replace("_minutes", "_business_minutes").replace("_hours", "_business_hours")] = (
                clock.elapsed(done) / unit
            )
    keep = np.flatnonzero(inside & ~(np.isnan(took["first_response_minutes"]) & np.isnan(took["resolution_hours"])))
    rows = {"period_index": period[keep], "segment": seg[keep]}
    return rows | {name: values[keep] for name, values in took.items()}, seg_table


def exact_quantiles(rows, seg_table: pd.DataFrame | None, n: int) -> pd.DataFrame:
    """p50 and p90 per (period index, segment values) of the cells with rows (a frame or a dict
    of arrays: period_index, segment, the two durations), exact."""
    n_seg = len(seg_table) if seg_table is not None else 1
    cell = np.asarray(rows["period_index"], dtype=np.int64) * n_seg + np.asarray(rows["segment"], dtype=np.int64)
    used = np.flatnonzero(np.bincount(cell, minlength=n * n_seg))
    frame = pd.DataFrame({"period_index": used // n_seg})
    if seg_table is not None:
        for column in seg_table.columns:
            frame[column] = seg_table[column].iloc[used % n_seg].reset_index(drop=True)
    names = [c for c in DURATION_COLUMNS if c in rows]
    results = quantiles_by_group_columns([rows[name] for name in names], cell, n * n_seg, (0.5, 0.9))
    for name, q in zip(names, results, strict=True):
        frame[f"{name}_p50"] = q[used, 0]
        frame[f"{name}_p90"] = q[used, 1]
    return frame


def quantiles(tickets: Any, context: Context, arrays: tuple | None = None) -> pd.DataFrame:
    """Response and resolution quantiles per (period index, segment), exact, from the rows."""
    rows, seg_table = durations(tickets, context, arrays)
    return exact_quantiles(rows, seg_table, context.spine.n)


class _Columns:
    """The rows ``rows`` of a frame's columns, read one column at a time (no copy of the frame)."""

    def __init__(self, frame: pd.DataFrame, rows: np.ndarray):
        self.frame, self.rows = frame, rows

    def __contains__(self, column: object) -> bool:
        return column in self.frame

    def __getitem__(self, column: str) -> pd.Series:
        return self.frame[column].take(self.rows)

    def __len__(self) -> int:
        return len(self.rows)


def finalize(summed: pd.DataFrame, exact: pd.DataFrame, context: Context) -> pd.DataFrame:
    """The support metric frame (§6) from summed partials and the exact quantile frame."""
    by = list(context.by)
    joint = pd.concat([summed, exact], ignore_index=True)
    a, seg_table = dense(joint.fillna({c: 0.0 for c in PARTIAL_COLUMNS}), by, PARTIAL_COLUMNS, context.spine.n)
    q = _dense_values(exact, by, seg_table, context.spine.n)
    present = context.options["present"]
    builder = FrameBuilder(context.spine, seg_table)
    builder.add("tickets", a["tickets"])
    if "contacts" in present:
        builder.ratio("fcr_rate", a["fcr"], a["tickets"])
    if "handle_seconds" in present:
        builder.ratio("aht_seconds", a["handle_sum"], a["handle_n"])
    if "wait_seconds" in present:
        builder.ratio("avg_wait_seconds", a["wait_sum"], a["wait_n"])
    if "abandoned" in present:
        builder.ratio("abandonment_rate", a["abandoned"], a["tickets"])
    if "first_response_at" in present:
        builder.add("first_response_minutes_p50", q["first_response_minutes_p50"])
        builder.add("first_response_minutes_p90", q["first_response_minutes_p90"])
    if "resolved_at" in present:
        builder.add("resolution_hours_p50", q["resolution_hours_p50"])
        builder.add("resolution_hours_p90", q["resolution_hours_p90"])
        builder.ratio("reopen_rate", a["reopened"], a["resolved"])
    builder.add("backlog", a["backlog"])
    if context.options.get("schedules") is not None:
        if "first_response_at" in present:
            builder.add("first_response_business_minutes_p50", q["first_response_business_minutes_p50"])
            builder.add("first_response_business_minutes_p90", q["first_response_business_minutes_p90"])
        if "resolved_at" in present:
            builder.add("resolution_business_hours_p50", q["resolution_business_hours_p50"])
            builder.add("resolution_business_hours_p90", q["resolution_business_hours_p90"])
    if context.options.get("sla_targets"):
        builder.ratio("sla_first_response_rate", a["sla_met"], a["sla_due"])
    if context.options.get("resolution_targets") and "resolved_at" in present:
        builder.ratio("sla_resolution_rate", a["sla_resolution_met"], a["sla_resolution_due"])
    if "contacts" in present and "resolved_at" in present:
        builder.ratio("one_touch_rate", a["one_touch"], a["resolved"])
        builder.ratio("two_touch_rate", a["two_touch"], a["resolved"])
    builder.ratio("tickets_per_customer", a["tickets"], a["customers"])
    return builder.build()


def _dense_values(exact: pd.DataFrame, by: list[str], seg_table: pd.DataFrame | None, n: int) -> dict[str, np.ndarray]:
    """Put the per-cell quantiles on the grid of ``seg_table`` (NaN where a cell has none)."""
    n_seg = len(seg_table) if seg_table is not None else 1
    seg = segment_positions(seg_table, exact, by)
    cell = exact["period_index"].to_numpy(dtype=np.int64) * n_seg + seg
    out = {}
    for name in QUANTILE_COLUMNS:
        grid = np.full(n * n_seg, np.nan)
        if name in exact:
            grid[cell[seg >= 0]] = exact[name].to_numpy(dtype=float)[seg >= 0]
        out[name] = grid.reshape(n, n_seg)
    return out

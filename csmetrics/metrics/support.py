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

import numpy as np
import pandas as pd

from csmetrics.frame import FrameBuilder, segment_positions
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
from csmetrics.options import check_sla_targets
from csmetrics.periods import NAT, period_codes
from csmetrics.schemas import AS_OF_COLUMNS
from csmetrics.stats import quantiles_by_group

__all__ = [
    "PARTIAL_COLUMNS",
    "QUANTILE_COLUMNS",
    "combine",
    "durations",
    "exact_quantiles",
    "finalize",
    "partial",
    "prepare",
    "quantiles",
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
    "backlog",
    "customers",
)
QUANTILE_COLUMNS = (
    "first_response_minutes_p50",
    "first_response_minutes_p90",
    "resolution_hours_p50",
    "resolution_hours_p90",
)
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
) -> tuple[pd.DataFrame, Context]:
    """The shared context (spine, as_of, which columns exist) of validated tickets."""
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
    )
    return tickets, context


def _optional(tickets: pd.DataFrame, column: str, fill: float = np.nan) -> np.ndarray:
    if column not in tickets:
        return np.full(len(tickets), fill)
    return tickets[column].to_numpy(dtype=float, na_value=np.nan)


def ticket_arrays(tickets: pd.DataFrame, context: Context):
    spine = context.spine
    as_of = spine.as_of.value
    created = instants(tickets["created_at"])
    keep = created <= as_of
    period = np.where(keep, spine.index(period_codes(created, spine.freq, spine.tz)), -1)
    seg, seg_table = segments_of(tickets, context, "tickets")
    return created, period, seg, seg_table, as_of


def _instant_by(tickets: pd.DataFrame, column: str, as_of: int) -> np.ndarray:
    """The column's instants, NaT where absent, missing or after as_of."""
    if column not in tickets:
        return np.full(len(tickets), NAT)
    values = instants(tickets[column])
    return np.where(values <= as_of, values, NAT)


def partial(tickets: pd.DataFrame, context: Context, arrays: tuple | None = None) -> pd.DataFrame:
    """Additive sums per (period index, segment values) over these tickets.

    ``arrays`` (from ``ticket_arrays``) may be passed when ``quantiles`` runs on the same rows.
    """
    created, period, seg, seg_table, as_of = arrays or ticket_arrays(tickets, context)
    n = context.spine.n
    grid = Grid(n, len(seg_table) if seg_table is not None else 1)
    at_created = grid.points(period, seg)
    resolved_at = _instant_by(tickets, "resolved_at", as_of)
    responded_at = _instant_by(tickets, "first_response_at", as_of)
    resolved = resolved_at != NAT
    abandoned = tickets["abandoned"].to_numpy(dtype=bool) if "abandoned" in tickets else np.zeros(len(tickets), bool)
    contacts = _optional(tickets, "contacts")
    reopens = np.nan_to_num(_optional(tickets, "reopens", 0.0))
    handle = np.where(abandoned, np.nan, _optional(tickets, "handle_seconds"))
    wait = np.where(abandoned, np.nan, _optional(tickets, "wait_seconds"))

    columns = {
        "tickets": grid.add(at_created, np.ones(len(tickets))),
        "fcr": grid.add(at_created, resolved & (contacts == 1) & (reopens == 0)),
        "handle_sum": grid.add(at_created, np.nan_to_num(handle)),
        "handle_n": grid.add(at_created, ~np.isnan(handle)),
        "wait_sum": grid.add(at_created, np.nan_to_num(wait)),
        "wait_n": grid.add(at_created, ~np.isnan(wait)),
        "abandoned": grid.add(at_created, abandoned),
        "resolved": grid.add(at_created, resolved),
        "reopened": grid.add(at_created, resolved & (reopens > 0)),
    }
    met, due = _sla(tickets, context, created, responded_at, as_of)
    columns["sla_met"] = grid.add(at_created, met)
    columns["sla_due"] = grid.add(at_created, due)
    # backlog: open from the creation period up to (not including) the resolution period
    stop = np.where(resolved, context.spine.index(period_codes(resolved_at, context.spine.freq, context.spine.tz)), n)
    open_ = (period >= 0) & ~abandoned
    columns["backlog"] = grid.add_range(grid.ranges(period[open_], stop[open_], seg[open_]), np.ones(int(open_.sum())))
    columns["customers"] = _distinct_customers(tickets["customer_id"], at_created, grid)
    return long_partial(columns, PARTIAL_COLUMNS, seg_table, n, every_segment=True)


def _sla(tickets, context, created, responded_at, as_of):
    """Met / decided first-response SLA per ticket (both False without a target)."""
    targets = context.options.get("sla_targets")
    if not targets or "priority" not in tickets:
        zeros = np.zeros(len(tickets), dtype=bool)
        return zeros, zeros
    codes, priorities = pd.factorize(tickets["priority"])  # map the few distinct priorities, not every row
    per_priority = np.array([float(targets.get(p, np.nan)) for p in priorities] + [np.nan])
    target_minutes = per_priority[codes]
    has_target = ~np.isnan(target_minutes)
    deadline = created + np.nan_to_num(target_minutes * _MINUTE).astype(np.int64)
    answered = responded_at != NAT
    met = has_target & answered & (responded_at <= deadline)
    missed = has_target & ((answered & (responded_at > deadline)) | (~answered & (deadline < as_of)))
    return met, met | missed


def _distinct_customers(customer_id: pd.Series, at_created, grid: Grid) -> np.ndarray:
    """Customers with a ticket, per cell (additive across partitions split by customer)."""
    index, keep = at_created
    codes, uniques = pd.factorize(customer_id.to_numpy()[keep] if not keep.all() else customer_id)
    width, n_cells = max(len(uniques), 1), grid.n_periods * grid.n_segments
    if n_cells * width <= _DENSE_PAIRS:  # a (cell, customer) byte grid: one scatter and one sum, no hashing
        seen = np.zeros(n_cells * width, dtype=bool)
        seen[index * width + codes] = True
        counts = seen.reshape(n_cells, width).sum(axis=1)
    else:
        counts = np.bincount(pd.unique(index * width + codes) // width, minlength=n_cells)
    return counts.reshape(grid.n_periods, grid.n_segments).astype(float)


def durations(
    tickets: pd.DataFrame, context: Context, arrays: tuple | None = None
) -> tuple[dict[str, np.ndarray], pd.DataFrame | None]:
    """The rows the quantiles need: period index, segment code, minutes to first response and
    hours to resolution (NaN where not done by as_of), for tickets in the spine with either."""
    created, period, seg, seg_table, as_of = arrays or ticket_arrays(tickets, context)
    inside = (period >= 0) & (period < context.spine.n)
    took = {}
    for name, column, unit in (
        ("first_response_minutes", "first_response_at", _MINUTE),
        ("resolution_hours", "resolved_at", _HOUR),
    ):
        done = _instant_by(tickets, column, as_of)
        took[name] = np.where(done != NAT, (done - created) / unit, np.nan)
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
    for name in ("first_response_minutes", "resolution_hours"):
        q = quantiles_by_group(np.asarray(rows[name], dtype=float), cell, n * n_seg, (0.5, 0.9))[used]
        frame[f"{name}_p50"] = q[:, 0]
        frame[f"{name}_p90"] = q[:, 1]
    return frame


def quantiles(tickets: pd.DataFrame, context: Context, arrays: tuple | None = None) -> pd.DataFrame:
    """Response and resolution quantiles per (period index, segment), exact, from the rows."""
    rows, seg_table = durations(tickets, context, arrays)
    return exact_quantiles(rows, seg_table, context.spine.n)


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
    if context.options.get("sla_targets"):
        builder.ratio("sla_first_response_rate", a["sla_met"], a["sla_due"])
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
        grid[cell[seg >= 0]] = exact[name].to_numpy(dtype=float)[seg >= 0]
        out[name] = grid.reshape(n, n_seg)
    return out

"""Engagement metrics from product events (METRICS.md §8), plus purchase patterns from billing.

A user is (customer_id, user_id), or the customer itself where user_id is
missing. Everything is counted exactly from distinct integer keys:

- active users/customers: distinct (cell, user) keys per (period, segment) cell;
- dau: distinct (user, local day) pairs per period / days of the period up to as_of;
- wau: distinct (user, Monday week) pairs of the weeks that start in the period
  (and by as_of) / number of such weeks;
- mau: users active in the 30 local days ending at the period end (the day
  after as_of in the partial period). Each active (user, day) is active for a
  contiguous range of periods; a user's ranges are merged and added to a
  difference array, so a million users cost a sort, not a loop;
- sessions: a session_id (per customer), else a user's run of events with gaps
  under ``session_gap_minutes`` (30); length = last - first event plus the
  last event's duration_seconds; a session counts in the period it starts.

All partial sums are additive over disjoint customer sets (a user belongs to one
customer), which is how a partitioned engine splits the work.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

from csmetrics.frame import (
    FrameBuilder,
    attach_segments,
    dense_codes,
    encode_segments,
    factorize_sorted,
    segment_positions,
)
from csmetrics.metrics._billing import BillingArrays, invoices, sort_order
from csmetrics.metrics._billing import prepare as prepare_billing
from csmetrics.metrics._common import (
    Context,
    Grid,
    UserOrder,
    combine,
    dense,
    distinct_per_cell,
    long_partial,
    make_context,
    run_starts,
    users_of,
)
from csmetrics.options import check_number
from csmetrics.periods import code_ends_ns, instants, local_ns, period_codes
from csmetrics.schemas import AS_OF_COLUMNS
from csmetrics.sorting import order_by

__all__ = ["PARTIAL_COLUMNS", "calendar", "combine", "finalize", "partial", "prepare"]

PARTIAL_COLUMNS = (
    "events",
    "active_users",
    "active_customers",
    "user_days",
    "user_weeks",
    "mau",
    "sessions",
    "session_minutes",
    "invoices",
    "invoice_revenue",
    "paying_customers",
)
_DAY = 86_400 * 10**9
_MINUTE = 60 * 10**9


def prepare(
    events: pd.DataFrame,
    *,
    billing: pd.DataFrame | None = None,
    fx: pd.DataFrame | None = None,
    freq: str = "M",
    by: Sequence[str] | str | None = None,
    customers: pd.DataFrame | None = None,
    tz: str = "UTC",
    as_of: object = None,
    start: object = None,
    end: object = None,
    session_gap_minutes: float = 30.0,
) -> tuple[pd.DataFrame, pd.DataFrame | None, Context]:
    """The context (spine, as_of, segments, session gap, billing's context) of validated events."""
    context = make_context(
        events,
        period_columns=["timestamp"],
        as_of_columns=AS_OF_COLUMNS["events"],
        freq=freq,
        by=by,
        customers=customers,
        tz=tz,
        as_of=as_of,
        start=start,
        end=end,
        table_name="events",
        reserved=("event",),
        session_gap_minutes=check_number("session_gap_minutes", session_gap_minutes, low=0, low_open=True),
        with_billing=billing is not None,
    )
    if billing is not None:
        billing, billing_context = prepare_billing(billing, fx=fx, as_of=context.spine.as_of)
        context.options["billing_context"] = billing_context
    return events, billing, context


def calendar(context: Context) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per period: days up to as_of, Monday weeks starting in it by as_of, and the MAU window end day."""
    spine = context.spine
    starts_day = np.floor_divide(local_ns(spine.starts.tz_convert("UTC"), spine.tz), _DAY)
    ends_local = np.floor_divide(local_ns(code_ends_ns(spine.codes, spine.freq, spine.tz), spine.tz), _DAY)
    as_of_day = int(np.floor_divide(local_ns(np.array([spine.as_of.value]), spine.tz), _DAY)[0])
    end_day = np.minimum(ends_local, as_of_day + 1)  # exclusive
    days = np.maximum(end_day - starts_day, 0).astype(float)
    first_monday = starts_day + (-(starts_day + 3)) % 7  # day 0 (1970-01-01) is a Thursday
    weeks = np.where(end_day > first_monday, (end_day - first_monday + 6) // 7, 0).astype(float)
    return days, weeks, end_day


def partial(
    events: pd.DataFrame, billing: pd.DataFrame | None, context: Context, users: UserOrder | None = None
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Additive sums per (period, segment), and customers per (period, segment, event) (``users``: the
    events' :func:`~csmetrics.metrics._common.user_order`, when the report found it once for several families)."""
    spine = context.spine
    n = spine.n
    as_of = spine.as_of.value
    keep = instants(events["timestamp"]) <= as_of
    if not keep.all():  # (no copy of the rows when every event is by as_of, the usual case)
        events = events[keep]
    t = instants(events["timestamp"])
    day = np.floor_divide(local_ns(t, spine.tz), _DAY)
    period = spine.index(period_codes(t, spine.freq, spine.tz))
    seg, bill_seg, seg_table = _segments(events, billing, context)
    n_seg = len(seg_table) if seg_table is not None else 1
    grid = Grid(n, n_seg)
    found = users_of(events, users, keep)
    customer = found.customer
    at_event = grid.points(period, seg)
    cell, inside = at_event
    n_cells = n * n_seg
    # the temporaries of each step are freed when it returns (24M events: 0.2 GB per int64 array)
    columns = {"events": grid.add(at_event, np.ones(len(events)))}
    columns.update(_user_runs(found, seg, period, day, context, grid))
    del day
    columns["active_customers"] = distinct_per_cell(cell, customer[inside], n_cells).reshape(n, n_seg)
    first, minutes = _sessions(events, found, t, context.options["session_gap_minutes"])
    del t, found
    session_cells = grid.points(period[first], seg[first])
    columns["sessions"] = grid.add(session_cells, np.ones(len(first)))
    columns["session_minutes"] = grid.add(session_cells, minutes)
    del period, seg, first, minutes, session_cells

    columns["invoices"], columns["invoice_revenue"], columns["paying_customers"] = _purchases(
        billing, context, bill_seg, grid
    )
    main = long_partial(columns, PARTIAL_COLUMNS, seg_table, n)

    # feature adoption: distinct customers per (period, segment, event name)
    name, names = factorize_sorted(events["event"])  # a categorical's codes: no text hashed per event
    name = name[inside]
    adoption_cell = cell * max(len(names), 1) + name
    counts = distinct_per_cell(adoption_cell, customer[inside], n_cells * max(len(names), 1))
    used = np.flatnonzero(counts)
    adoption = pd.DataFrame({"period_index": used // max(len(names), 1) // n_seg})
    if seg_table is not None:
        for column in seg_table.columns:
            adoption[column] = seg_table[column].iloc[(used // max(len(names), 1)) % n_seg].reset_index(drop=True)
    adoption["event"] = (
        pd.Series(np.asarray(names, dtype=object)[used % max(len(names), 1)], dtype="str")
        if len(names)
        else pd.Series([], dtype="str")
    )
    adoption["customers"] = counts[used]
    return main, adoption


def _user_runs(
    users: UserOrder, seg: np.ndarray, period: np.ndarray, day: np.ndarray, context: Context, grid: Grid
) -> dict[str, np.ndarray]:
    """Active users, user-days, user-weeks and the MAU windows per (period, segment): the runs of one
    order by (segment, user, instant) give each owner's distinct days (a pass over the events); a
    local day lies in one period and one week, so the distinct periods and weeks are runs of those
    days (passes over the days only)."""
    user = users.user
    order = users.order  # by (user, instant); by segment first where the events have several (a stable sort)
    if len(seg) and seg.min() != seg.max():
        order = order[order_by(seg[order])]
        width = int(user.max()) + 1
        owner = seg[order].astype(np.int64) * width + user[order]
    else:
        owner = user[order]  # one segment: the user is the owner
    new_day = run_starts(owner, day[order])
    first = order[new_day]  # each owner's first event of each of its days, in the order
    del order
    owner = owner[new_day]
    del new_day
    d, p, s = day[first], period[first], seg[first]
    del first
    ones = np.ones(len(owner))
    new_period = run_starts(owner, p)
    week = np.floor_divide(d + 3, 7)  # Monday weeks (day 0, 1970-01-01, is a Thursday)
    new_week = run_starts(owner, week)
    return {
        "active_users": grid.add(grid.points(p[new_period], s[new_period]), ones[new_period]),
        "user_days": grid.add(grid.points(p, s), ones),
        "user_weeks": grid.add(
            grid.points(_local_day_periods(week[new_week] * 7 - 3, context), s[new_week]), ones[new_week]
        ),
        "mau": _mau(owner, d, s, context, grid),
    }


def _local_day_periods(days: np.ndarray, context: Context) -> np.ndarray:
    """Spine index of local days (given as day numbers of the report time zone)."""
    spine = context.spine
    # a local midnight is in the period whose local code covers that day
    return spine.index(period_codes(days * _DAY, spine.freq, "UTC"))


def _mau(owner: np.ndarray, active_day: np.ndarray, seg: np.ndarray, context: Context, grid: Grid) -> np.ndarray:
    """Users active in the 30 local days ending at each period end, per segment, from the distinct
    (owner, day) pairs by owner then day (an owner: a user in a segment ``seg``)."""
    _, _, end_day = calendar(context)
    if len(owner) == 0:
        return np.zeros((grid.n_periods, grid.n_segments))
    # periods whose window [end_day - 30, end_day) holds the day: end_day in (day, day + 30]
    lo = np.searchsorted(end_day, active_day, side="right")
    hi = np.searchsorted(end_day, active_day + 30, side="right")
    # merge each owner's consecutive ranges (lo and hi grow with the day)
    new_run = np.ones(len(owner), dtype=bool)
    new_run[1:] = (owner[1:] != owner[:-1]) | (lo[1:] > hi[:-1])
    run_start = np.flatnonzero(new_run)
    run_end = np.append(run_start[1:] - 1, len(owner) - 1)
    ranges = grid.ranges(lo[run_start], hi[run_end], seg[run_start])
    return grid.add_range(ranges, np.ones(len(run_start)))


def _sessions(
    events: pd.DataFrame, users: UserOrder, t: np.ndarray, gap_minutes: float
) -> tuple[np.ndarray, np.ndarray]:
    """Sessions: index of each session's first event (into ``events``) and its length in minutes."""
    n = len(events)
    if n == 0:
        return np.array([], dtype=np.int64), np.array([])
    # owner: the session id where given (gaps never split it), else the user (gaps split)
    user = users.user
    width = int(max(user.max(initial=0), 0)) + 1
    if "session_id" in events:
        has_id = events["session_id"].notna().to_numpy()
        session, width_s = dense_codes(events["session_id"])
        session_code = pd.factorize(users.customer.astype(np.int64) * (width_s + 1) + session + 1)[0].astype(np.int64)
        del session
        owner = np.where(has_id, session_code + width, user)
        del session_code
        order = sort_order(owner, t)
    else:  # the users' order is the owners'
        has_id = np.zeros(n, dtype=bool)
        owner, order = user, users.order
    owner_s = owner[order]
    del owner
    t_s, has_id_s = t[order], has_id[order]
    new = np.ones(n, dtype=bool)
    new[1:] = (owner_s[1:] != owner_s[:-1]) | (~has_id_s[1:] & (t_s[1:] - t_s[:-1] >= gap_minutes * _MINUTE))
    del has_id_s
    first = np.flatnonzero(new)
    del new
    last = np.append(first[1:] - 1, n - 1)
    tail = np.zeros(len(first))
    if "duration_seconds" in events:
        tail = _last_instant_longest(events["duration_seconds"], order, run_starts(owner_s, t_s), last) * 1e9
    del owner_s
    minutes = (t_s[last] - t_s[first] + tail) / _MINUTE
    return order[first], minutes


def _last_instant_longest(
    duration: pd.Series, order: np.ndarray, same_instant: np.ndarray, last: np.ndarray
) -> np.ndarray:
    """The longest duration (seconds, none: 0) among the events at each session's last instant: the
    run of equal (owner, instant) in ``order`` that ends at the session's ``last`` row (a session never
    splits such a run). Runs of several rows are rare, so only their rows are read."""
    start = last.copy()  # the run's first row: the last row itself where it starts a run
    cont = np.flatnonzero(~same_instant)  # rows continuing a run
    if len(cont):
        block = np.ones(len(cont), dtype=bool)
        block[1:] = np.diff(cont) != 1
        run_first = cont[block][np.cumsum(block) - 1] - 1  # each continuation row's run start
        inside = ~same_instant[last]
        start[inside] = run_first[np.searchsorted(cont, last[inside])]
    length = last - start + 1
    offsets = np.cumsum(length) - length
    rows = np.repeat(start - offsets, length) + np.arange(int(length.sum()))
    values = duration.to_numpy(dtype=float, na_value=np.nan)[order[rows]]
    return np.maximum.reduceat(np.nan_to_num(values, nan=0.0, copy=False), offsets) if len(values) else np.zeros(0)


def _segments(
    events: pd.DataFrame, billing: pd.DataFrame | None, context: Context
) -> tuple[np.ndarray, np.ndarray, pd.DataFrame | None]:
    """Segment codes of the events and of the billing lines in one table: a segment that only purchases
    reach in this set of customers is kept (whatever other customers' events another bucket holds)."""
    n_lines = len(billing) if billing is not None else 0
    if not context.by:
        return np.zeros(len(events), dtype=np.int64), np.zeros(n_lines, dtype=np.int64), None
    values = attach_segments(events, context.by, context.customers, "events")
    if billing is not None:
        lines = attach_segments(billing, context.by, context.customers, "billing")
        values = pd.concat([values.reset_index(drop=True), lines.reset_index(drop=True)], ignore_index=True)
    codes, seg_table = encode_segments(values)
    return codes[: len(events)], codes[len(events) :], seg_table


def _purchases(billing: pd.DataFrame | None, context: Context, bill_seg: np.ndarray, grid: Grid):
    """Invoices (distinct customer and instant of one-time/recurring lines), their revenue, payers."""
    zeros = np.zeros((grid.n_periods, grid.n_segments))
    if billing is None:
        return zeros, zeros, zeros

    spine = context.spine
    arrays = BillingArrays.of(billing, context.options["billing_context"])
    keep, at, invoice, amount = invoices(arrays, spine.as_of.value)
    seg = bill_seg[arrays.source][keep]  # an open-ended line is one array row per interval
    known = seg >= 0
    period = spine.index(period_codes(at[known], spine.freq, spine.tz))
    cells = grid.points(period, seg[known])
    n_cells = grid.n_periods * grid.n_segments
    shape = (grid.n_periods, grid.n_segments)
    count = distinct_per_cell(cells[0], invoice[known][cells[1]], n_cells).reshape(shape)
    revenue = grid.add(cells, amount[known])
    payers = distinct_per_cell(cells[0], arrays.customer[keep][known][cells[1]], n_cells).reshape(shape)
    return count, revenue, payers


def finalize(main: pd.DataFrame, adoption: pd.DataFrame, context: Context) -> pd.DataFrame:
    """The engagement metric frame (§8): base metrics, then feature_adoption rows with an ``event`` column."""
    by = list(context.by)
    a, seg_table = dense(main, by, PARTIAL_COLUMNS, context.spine.n)
    days, weeks, _ = calendar(context)
    builder = FrameBuilder(context.spine, seg_table)
    builder.add("active_users", a["active_users"])
    builder.add("active_customers", a["active_customers"])
    dau = a["user_days"] / np.where(days > 0, days, np.nan)[:, None]
    wau = a["user_weeks"] / np.where(weeks > 0, weeks, np.nan)[:, None]
    builder.add("dau", dau)
    builder.add("wau", wau)
    builder.add("mau", a["mau"])
    with np.errstate(invalid="ignore", divide="ignore"):
        builder.add("stickiness", np.where(a["mau"] > 0, dau / a["mau"], np.nan))
    builder.ratio("avg_session_minutes", a["session_minutes"], a["sessions"])
    builder.ratio("events_per_active_user", a["events"], a["active_users"])
    if context.options.get("with_billing"):
        builder.ratio("purchase_frequency", a["invoices"], a["paying_customers"])
        builder.ratio("avg_purchase_value", a["invoice_revenue"], a["invoices"])
    base = builder.build()
    return pd.concat([base, _adoption_frame(adoption, a, seg_table, context)], ignore_index=True)


def _adoption_frame(adoption: pd.DataFrame, a: dict, seg_table: pd.DataFrame | None, context: Context) -> pd.DataFrame:
    by = list(context.by)
    if adoption.empty:
        return pd.DataFrame()
    summed = (
        adoption.groupby(["period_index", *by, "event"], dropna=False, sort=True, observed=True)["customers"]
        .sum()
        .reset_index()
    )
    n_seg = len(seg_table) if seg_table is not None else 1
    seg = segment_positions(seg_table, summed, by)
    # every event name appears in every period and segment (0 customers where nobody used it)
    names = sorted(summed["event"].unique())
    name_index = pd.Index(names).get_indexer(summed["event"])
    n = context.spine.n
    users = np.zeros((n, n_seg, len(names)))
    users[summed["period_index"].to_numpy(dtype=np.int64), seg, name_index] = summed["customers"].to_numpy(dtype=float)
    active = np.broadcast_to(a["active_customers"][:, :, None], users.shape)
    rows = []
    for k, name in enumerate(names):
        builder = FrameBuilder(context.spine, seg_table)
        builder.ratio("feature_adoption", users[:, :, k], active[:, :, k])
        frame = builder.build()
        frame.insert(len(frame.columns) - 6, "event", name)
        rows.append(frame)
    out = pd.concat(rows, ignore_index=True)
    out["event"] = out["event"].astype("str")
    return out

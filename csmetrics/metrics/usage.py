"""Usage retention from events (METRICS.md §15): N-period and unbounded retention, and the
active-days distribution.

A user is (customer_id, user_id), or the customer itself where user_id is missing (as in
§8). A user's cohort is the period of its first event by as_of, and its segment that of its
first event (an events column, else a customer attribute). Every partial is a long frame of
counts keyed by values, so the partials of disjoint customers add up (a user belongs to one
customer).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

from csmetrics.frame import attach_segments, encode_segments
from csmetrics.metrics._common import Context, UserOrder, make_context, run_starts, users_of
from csmetrics.options import check_int
from csmetrics.periods import instants, period_codes
from csmetrics.schemas import AS_OF_COLUMNS

__all__ = [
    "DISTRIBUTION_COLUMNS",
    "EVENT_COLUMNS",
    "RETENTION_COLUMNS",
    "distribution_finalize",
    "distribution_partial",
    "prepare",
    "retention_finalize",
    "retention_partial",
]

RETENTION_COLUMNS = (
    "cohort",
    "offset",
    "cohort_users",
    "active_users",
    "retention",
    "retention_unbounded",
    "partial",
)
DISTRIBUTION_COLUMNS = ("period", "active_days", "users")
#: The events columns both partials read (retention also its segment columns)
EVENT_COLUMNS = ("customer_id", "user_id", "timestamp")
_SUMS = ("cohort_users", "active_users", "active_unbounded")


def prepare(
    events: pd.DataFrame,
    *,
    freq: str = "W",
    periods: int = 12,
    by: Sequence[str] | str | None = None,
    customers: pd.DataFrame | None = None,
    tz: str = "UTC",
    as_of: object = None,
) -> Context:
    """The context (spine through as_of's period, segments, the number of offsets) of validated events."""
    return make_context(
        events,
        period_columns=["timestamp"],
        as_of_columns=AS_OF_COLUMNS["events"],
        freq=freq,
        by=by,
        customers=customers,
        tz=tz,
        as_of=as_of,
        start=None,
        end=None,
        table_name="events",
        reserved=(*RETENTION_COLUMNS, "active_unbounded"),
        periods=check_int("periods", periods, low=0),
    )


def retention_partial(events: pd.DataFrame, context: Context, users: UserOrder | None = None) -> pd.DataFrame:
    """(cohort, segment, offset) counts: the cohort's users, those active in the offset's period and
    those active in it or any later period up to as_of; every offset 0..periods up to as_of's period
    (``users``: the events' :func:`user_order`, when the report found it once for several families)."""
    spine = context.spine
    k_max = int(context.options["periods"])
    t = instants(events["timestamp"])
    keep = t <= spine.as_of.value
    if not keep.all():  # (no copy of the rows when every event is by as_of, the usual case)
        events, t = events[keep], t[keep]
    found = users_of(events, users, keep)
    user = found.user
    period = spine.index(period_codes(t, spine.freq, spine.tz)).astype(np.int64)
    n_users = int(user.max()) + 1 if len(user) else 0
    # one order by (user, instant): periods ascend within each user, so a user's first and last
    # periods and its distinct (user, period) pairs are run boundaries (no per-pair sort or hash)
    order = found.order
    u, p, ts = user[order], period[order], t[order]
    starts = run_starts(u)
    ends = np.append(np.flatnonzero(starts)[1:] - 1, len(u) - 1) if len(u) else np.zeros(0, np.int64)
    first_period = np.full(n_users, np.iinfo(np.int64).max)
    first_period[u[starts]] = p[starts]
    last_period = np.full(n_users, -1, dtype=np.int64)
    last_period[u[ends]] = p[ends]
    # the segment of a user's first event (the earliest instant; ties: the first row)
    same_instant = run_starts(u, ts)
    first_row = np.minimum.reduceat(order, np.flatnonzero(same_instant))[starts[same_instant]] if len(u) else order
    values = attach_segments(events.iloc[first_row], list(context.by), context.customers, "events")
    segment, seg_table = encode_segments(values)
    n_seg = len(seg_table) if seg_table is not None else 1
    width = k_max + 2
    counts = np.zeros((3, spine.n, n_seg, width))
    cohort = first_period[user[first_row]] if len(user) else np.zeros(0, np.int64)
    np.add.at(counts[0], (cohort, segment, np.zeros(len(cohort), dtype=np.int64)), 1.0)
    # active users per offset: distinct (user, period) pairs
    pair = run_starts(u, p)
    pair_user, pair_period = u[pair], p[pair]
    seg_of_user = np.zeros(n_users, dtype=np.int64)
    seg_of_user[user[first_row]] = segment
    offset = pair_period - first_period[pair_user]
    inside = offset <= k_max
    np.add.at(counts[1], (first_period[pair_user][inside], seg_of_user[pair_user][inside], offset[inside]), 1.0)
    # unbounded: active at k or later, i.e. offsets 0 .. min(last - first, periods): a difference array
    cohort_users = user[first_row]
    reach = np.minimum(last_period[cohort_users] - first_period[cohort_users], k_max)
    np.add.at(counts[2], (cohort, segment, np.zeros(len(cohort), dtype=np.int64)), 1.0)
    np.add.at(counts[2], (cohort, segment, reach + 1), -1.0)
    counts[2] = np.cumsum(counts[2], axis=2)
    counts[0] = np.repeat(counts[0][:, :, :1], width, axis=2)
    # offsets whose period starts after as_of are left out
    last = context.spine.as_of_index
    cohort_i, seg_i = np.nonzero(counts[0][:, :, 0])
    span = np.clip(np.minimum(k_max, last - cohort_i) + 1, 0, None)
    rows_c = np.repeat(cohort_i, span)
    rows_s = np.repeat(seg_i, span)
    rows_k = np.arange(len(rows_c)) - np.repeat(np.cumsum(span) - span, span)
    frame = pd.DataFrame({"cohort_index": rows_c, "offset": rows_k})
    for i, name in enumerate(_SUMS):
        frame[name] = counts[i][rows_c, rows_s, rows_k]
    if seg_table is not None:
        for column in context.by:
            frame[column] = seg_table[column].to_numpy()[rows_s] if len(rows_s) else pd.Series([], dtype=object)
    return frame


def retention_finalize(partials: Sequence[pd.DataFrame], context: Context) -> pd.DataFrame:
    """The retention table from the partials of disjoint customer sets."""
    spine = context.spine
    by = list(context.by)
    stacked = pd.concat(partials, ignore_index=True)
    summed = stacked.groupby(["cohort_index", *by, "offset"], dropna=False, sort=True, observed=True)[list(_SUMS)].sum()
    summed = summed.reset_index()
    size = summed["cohort_users"].to_numpy()
    out = pd.DataFrame({"cohort": spine.starts[summed["cohort_index"].to_numpy()]})
    for column in by:
        out[column] = summed[column].to_numpy()
    out["offset"] = summed["offset"].to_numpy().astype(np.int64)
    out["cohort_users"] = size.astype(np.int64)
    out["active_users"] = summed["active_users"].to_numpy().astype(np.int64)
    with np.errstate(invalid="ignore", divide="ignore"):
        out["retention"] = summed["active_users"].to_numpy() / size
        out["retention_unbounded"] = summed["active_unbounded"].to_numpy() / size
    out["partial"] = summed["cohort_index"].to_numpy() + out["offset"].to_numpy() == spine.as_of_index
    return out.sort_values(["cohort", *by, "offset"], kind="stable").reset_index(drop=True)


def distribution_partial(events: pd.DataFrame, context: Context, users: UserOrder | None = None) -> pd.DataFrame:
    """(period, active days) counts of users: distinct local days of each user in each period
    (``users``: as for :func:`retention_partial`)."""
    spine = context.spine
    t = instants(events["timestamp"])
    keep = t <= spine.as_of.value
    if not keep.all():  # (no copy of the rows when every event is by as_of, the usual case)
        events, t = events[keep], t[keep]
    found = users_of(events, users, keep)
    user = found.user
    day = period_codes(t, "D", spine.tz)
    period = spine.index(period_codes(t, spine.freq, spine.tz)).astype(np.int64)
    if not len(user):
        return pd.DataFrame({"period_index": [], "active_days": [], "users": []})
    # by (user, instant): a user's distinct days, then its days per period, are runs
    order = found.order
    u, p, d = user[order], period[order], day[order]
    new_day = run_starts(u, p, d)
    du, dp = u[new_day], p[new_day]
    first = np.flatnonzero(run_starts(du, dp))
    days = np.diff(np.append(first, len(du)))
    width = int(days.max()) + 1
    counts = np.bincount(dp[first] * width + days)
    cell = np.flatnonzero(counts)
    return pd.DataFrame({"period_index": cell // width, "active_days": cell % width, "users": counts[cell]})


def distribution_finalize(partials: Sequence[pd.DataFrame], context: Context) -> pd.DataFrame:
    summed = pd.concat(partials, ignore_index=True).groupby(["period_index", "active_days"], sort=True)["users"].sum()
    summed = summed.reset_index()
    return pd.DataFrame(
        {
            "period": context.spine.starts[summed["period_index"].to_numpy().astype(np.int64)],
            "active_days": summed["active_days"].to_numpy().astype(np.int64),
            "users": summed["users"].to_numpy().astype(np.int64),
        }
    )

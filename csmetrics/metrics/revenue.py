"""Revenue metrics from billing (METRICS.md §4): MRR, its movements, NRR/GRR.

``partial(billing, context)`` returns additive sums per (period, segment) for one
set of customers; sums over disjoint customer sets add up. ``finalize`` turns
the summed partials into the metric frame. The customer family
(:mod:`csmetrics.metrics.customers`) finalizes the same partials.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

from csmetrics.frame import FrameBuilder, encode_segments
from csmetrics.metrics._billing import (
    CHURN,
    CONTRACTION,
    EXPANSION,
    KINDS,
    MONEY_SCALE,
    NEW,
    NONE,
    REACTIVATION,
    BillingContext,
    CustomerCodes,
    build_groups,
    build_ledger,
    local_ns,
    period_codes,
    point_add,
    prepare,
    range_add,
    segment_frame,
    to_base_currency,
)

#: the additive columns of a billing partial, in order
PARTIAL_COLUMNS = (
    "mrr_end", "mrr_start",
    "new", "reactivation", "expansion", "contraction", "churn",
    "n_new", "n_reactivation", "n_expansion", "n_contraction", "n_churn", "n_churn_of_start",
    "customers_start", "customers_end", "retained",
    "nrr_num", "grr_num", "revenue_churn_num",
    "one_time", "refunds",
    "renewals_due", "renewals_renewed",
    "purchases_closed", "purchases_repeated",
)  # fmt: skip


def partial(billing: pd.DataFrame, context: BillingContext) -> pd.DataFrame:
    """Additive sums per (period index, segment values) over the customers in ``billing``.

    Money columns are in currency units (exact multiples of 1e-4), counts are
    counts. Rows are every (period, segment) cell the customers touch.
    """
    spine = context.spine
    n = spine.n
    codes = CustomerCodes.of(billing)
    ledger = build_ledger(billing, context, codes)
    groups = build_groups(ledger, n)

    # rows that need the customer's segment at a period: one-time lines, renewals, purchases
    kind = billing["kind"].to_numpy()
    invoiced = local_ns(billing["invoiced_at"]) if "invoiced_at" in billing else np.full(len(billing), np.iinfo(np.int64).min)
    as_of = spine.as_of.value
    flows = np.flatnonzero(((kind == "one_time") | (kind == "refund")) & (invoiced <= as_of) & (invoiced != np.iinfo(np.int64).min))
    flow_period = spine.index(period_codes(invoiced[flows], spine.freq, spine.tz))
    renewal_customer, renewal_period, renewed = _renewals(billing, codes, ledger, context)
    purchase_customer, purchase_period, repeated = _purchases(billing, codes, invoiced, context)

    extra_customer = np.concatenate([codes.customer[flows], renewal_customer, purchase_customer])
    extra_period = np.concatenate([flow_period, renewal_period, purchase_period])
    extra_plan = _plan_at(groups, extra_customer, extra_period)

    seg_values = segment_frame(
        codes.customer_ids, codes.plans,
        np.concatenate([groups.customer, extra_customer]),
        np.concatenate([groups.plan, extra_plan]),
        context,
    )  # fmt: skip
    seg_codes, seg_table = encode_segments(seg_values)
    n_seg = len(seg_table) if seg_table is not None else 1
    n_groups = len(groups.customer)
    group_seg = seg_codes[:n_groups]
    k1 = len(flows)
    k2 = k1 + len(renewal_customer)
    flow_seg, renewal_seg, purchase_seg = seg_codes[n_groups:n_groups + k1], seg_codes[n_groups + k1:n_groups + k2], seg_codes[n_groups + k2:]

    p, nxt = groups.period, groups.next_period
    start_mrr = groups.start_mrr.astype(float)
    end_mrr = groups.end_mrr.astype(float)
    churned = groups.count[:, CHURN] > 0
    retained_end = np.where(churned, 0.0, end_mrr)  # a start customer's revenue stops at its first churn
    is_start = start_mrr > 0

    def rng(values):  # constant between groups: periods after the group until the next one
        return range_add(p + 1, nxt, group_seg, values, n, n_seg)

    def pnt(values, period=p, segment=group_seg):
        return point_add(period, segment, values, n, n_seg)

    money = 1.0 / MONEY_SCALE
    columns = {
        "mrr_end": (rng(end_mrr) + pnt(end_mrr)) * money,
        "mrr_start": (rng(end_mrr) + pnt(start_mrr)) * money,
    }
    for name, code in (("new", NEW), ("reactivation", REACTIVATION), ("expansion", EXPANSION),
                       ("contraction", CONTRACTION), ("churn", CHURN)):  # fmt: skip
        columns[name] = pnt(groups.movement[:, code].astype(float)) * money
        columns[f"n_{name}"] = pnt(groups.count[:, code].astype(float))
    columns["n_churn_of_start"] = pnt((is_start & churned).astype(float))
    active_end = (end_mrr > 0).astype(float)
    columns["customers_start"] = rng(active_end) + pnt(is_start.astype(float))
    columns["customers_end"] = rng(active_end) + pnt(active_end)
    columns["retained"] = rng(active_end) + pnt((is_start & (end_mrr > 0)).astype(float))
    columns["nrr_num"] = (rng(end_mrr) + pnt(np.where(is_start, retained_end, 0.0))) * money
    columns["grr_num"] = (rng(end_mrr) + pnt(np.where(is_start, np.minimum(retained_end, start_mrr), 0.0))) * money
    columns["revenue_churn_num"] = pnt(np.where(is_start & churned, start_mrr, 0.0)) * money

    flow_amount = _flow_amounts(billing, flows, context)
    flow_kind = kind[flows]
    columns["one_time"] = pnt(np.where(flow_kind == "one_time", flow_amount, 0.0), flow_period, flow_seg)
    columns["refunds"] = pnt(np.where(flow_kind == "refund", np.abs(flow_amount), 0.0), flow_period, flow_seg)
    columns["renewals_due"] = pnt(np.ones(len(renewal_customer)), renewal_period, renewal_seg)
    columns["renewals_renewed"] = pnt(renewed.astype(float), renewal_period, renewal_seg)
    closed = ~np.isnan(repeated)
    columns["purchases_closed"] = pnt(closed.astype(float), purchase_period, purchase_seg)
    columns["purchases_repeated"] = pnt(np.nan_to_num(repeated), purchase_period, purchase_seg)

    return _long_partial(columns, seg_table, context)


def _long_partial(columns: dict[str, np.ndarray], seg_table: pd.DataFrame | None, context: BillingContext) -> pd.DataFrame:
    n_periods = context.spine.n
    n_seg = next(iter(columns.values())).shape[1]
    frame = pd.DataFrame({"period_index": np.repeat(np.arange(n_periods), n_seg)})
    if seg_table is not None:
        for column in seg_table.columns:
            frame[column] = np.tile(seg_table[column].to_numpy(dtype=object), n_periods)
    for name in PARTIAL_COLUMNS:
        frame[name] = columns[name].ravel()
    touched = frame[list(PARTIAL_COLUMNS)].to_numpy().any(axis=1)
    return frame[touched].reset_index(drop=True)


def combine(partials: Sequence[pd.DataFrame], context: BillingContext) -> pd.DataFrame:
    """Sum partials of disjoint customer sets."""
    keys = ["period_index", *context.by]
    stacked = pd.concat(partials, ignore_index=True)
    return stacked.groupby(keys, dropna=False, sort=True, observed=True)[list(PARTIAL_COLUMNS)].sum().reset_index()


def dense(summed: pd.DataFrame, context: BillingContext) -> tuple[dict[str, np.ndarray], pd.DataFrame | None]:
    """The summed partial as (period, segment) arrays over every period of the spine."""
    by = list(context.by)
    n = context.spine.n
    if by:
        seg_codes, seg_table = encode_segments(summed[by])
        n_seg = len(seg_table)
    else:
        seg_codes, seg_table, n_seg = np.zeros(len(summed), dtype=np.int64), None, 1
    cell = summed["period_index"].to_numpy(dtype=np.int64) * n_seg + seg_codes
    arrays = {}
    for name in PARTIAL_COLUMNS:
        grid = np.zeros(n * n_seg)
        np.add.at(grid, cell, summed[name].to_numpy(dtype=float))
        arrays[name] = grid.reshape(n, n_seg)
    return arrays, seg_table


def finalize(summed: pd.DataFrame, context: BillingContext) -> pd.DataFrame:
    """The revenue metric frame (§4) from summed partials."""
    a, seg_table = dense(summed, context)
    builder = FrameBuilder(context.spine, seg_table)
    builder.add("mrr", a["mrr_end"])
    builder.add("arr", a["mrr_end"] * 12)
    builder.add("mrr_start", a["mrr_start"])
    builder.add("new_mrr", a["new"])
    builder.add("reactivation_mrr", a["reactivation"])
    builder.add("expansion_mrr", a["expansion"])
    builder.add("contraction_mrr", a["contraction"])
    builder.add("churned_mrr", a["churn"])
    builder.add("net_new_mrr", a["new"] + a["reactivation"] + a["expansion"] - a["contraction"] - a["churn"])
    builder.ratio("nrr", a["nrr_num"], a["mrr_start"])
    builder.ratio("grr", a["grr_num"], a["mrr_start"])
    builder.ratio("revenue_churn_rate", a["revenue_churn_num"], a["mrr_start"])
    builder.ratio("quick_ratio", a["new"] + a["reactivation"] + a["expansion"], a["churn"] + a["contraction"])
    builder.ratio("arpu", a["mrr_end"], a["customers_end"])
    builder.add("one_time_revenue", a["one_time"])
    builder.add("refunds", a["refunds"])
    return builder.build()


# --------------------------------------------------------------------------
# Rows that need a customer's segment at a period
# --------------------------------------------------------------------------
def _plan_at(groups, customer: np.ndarray, period: np.ndarray) -> np.ndarray:
    """Plan code of the customer's latest group at or before ``period`` (-1 if none)."""
    if len(customer) == 0 or len(groups.customer) == 0:
        return np.full(len(customer), -1, dtype=np.int64)
    low = min(groups.period.min(), period.min())
    width = max(groups.period.max(), period.max()) - low + 1
    group_key = groups.customer * width + (groups.period - low)
    query_key = customer * width + (period - low)
    pos = np.searchsorted(group_key, query_key, side="right") - 1
    ok = (pos >= 0) & (groups.customer[np.maximum(pos, 0)] == customer)
    return np.where(ok, groups.plan[np.maximum(pos, 0)], -1)


def _flow_amounts(billing: pd.DataFrame, rows: np.ndarray, context: BillingContext) -> np.ndarray:
    part = billing.iloc[rows]
    amount = part["amount"].to_numpy(dtype=float)
    return to_base_currency(amount, part.get("currency"), part["invoiced_at"], context.fx, context.base_currency)


def _renewals(billing, codes, ledger, context):
    """Renewals due: one per (customer, end instant) of positive recurring lines ended by as_of.

    Renewed when the customer's MRR is > 0 at end + renewal_grace_days (capped at
    as_of: nothing later is known).
    """
    spine = context.spine
    as_of = spine.as_of.value
    if "service_end" not in billing:
        empty = np.array([], dtype=np.int64)
        return empty, empty, np.array([], dtype=bool)
    recurring = (billing["kind"].to_numpy() == "recurring") & (billing["amount"].to_numpy(dtype=float) > 0)
    end = local_ns(billing["service_end"])
    start = local_ns(billing["service_start"])
    due = recurring & (end <= as_of) & (start <= as_of)
    pairs = pd.DataFrame({"customer": codes.customer[due], "end": end[due]}).drop_duplicates()
    grace = int(round(context.policies.renewal_grace_days * 86_400 * 10**9))
    pairs["at"] = np.minimum(pairs["end"].to_numpy() + grace, as_of)
    mrr = _mrr_at(ledger, pairs["customer"].to_numpy(), pairs["at"].to_numpy())
    period = spine.index(period_codes(pairs["end"].to_numpy(), spine.freq, spine.tz))
    return pairs["customer"].to_numpy(), period, mrr > 0


def _mrr_at(ledger, customer: np.ndarray, instant: np.ndarray) -> np.ndarray:
    """A customer's MRR (money units) at an instant: the latest ledger row at or before it."""
    if len(customer) == 0:
        return np.array([], dtype=np.int64)
    query = pd.DataFrame({"customer": customer, "instant": instant, "pos": np.arange(len(customer))}).sort_values("instant", kind="stable")
    table = pd.DataFrame({"customer": ledger.customer, "instant": ledger.instant, "after": ledger.after}).sort_values("instant", kind="stable")
    joined = pd.merge_asof(query, table, on="instant", by="customer", direction="backward")
    out = np.zeros(len(customer), dtype=np.int64)
    out[joined["pos"].to_numpy()] = joined["after"].fillna(0).to_numpy(dtype=np.int64)
    return out


def _purchases(billing, codes, invoiced, context):
    """One-time purchases (one per customer and instant) and whether another followed in the window.

    ``repeated`` is 1/0 where the window closed by as_of, NaN where it is still open.
    """
    spine = context.spine
    as_of = spine.as_of.value
    one_time = (billing["kind"].to_numpy() == "one_time") & (invoiced <= as_of) & (invoiced != np.iinfo(np.int64).min)
    buys = pd.DataFrame({"customer": codes.customer[one_time], "at": invoiced[one_time]}).drop_duplicates()
    buys = buys.sort_values(["customer", "at"], kind="stable")
    customer = buys["customer"].to_numpy()
    at = buys["at"].to_numpy()
    window = int(round(context.policies.repeat_window_days * 86_400 * 10**9))
    same_next = np.zeros(len(at), dtype=bool)
    same_next[:-1] = customer[1:] == customer[:-1]
    next_at = np.where(same_next, np.roll(at, -1), np.iinfo(np.int64).max)
    closed = at + window <= as_of
    repeated = np.where(closed, (next_at - at <= window).astype(float), np.nan)
    period = spine.index(period_codes(at, spine.freq, spine.tz))
    return customer, period, repeated


# --------------------------------------------------------------------------
# Public functions
# --------------------------------------------------------------------------
def revenue_metrics(
    billing: pd.DataFrame,
    *,
    freq: str = "M",
    by: Sequence[str] | str | None = None,
    customers: pd.DataFrame | None = None,
    fx: pd.DataFrame | None = None,
    tz: str = "UTC",
    as_of: object = None,
    start: object = None,
    end: object = None,
    **policies,
) -> pd.DataFrame:
    """MRR, ARR and the MRR bridge, NRR, GRR, revenue churn, quick ratio, ARPU,
    one-time revenue and refunds per period and segment (METRICS.md §4).

    ``by`` takes customer attributes (joined from ``customers``) and ``plan``
    (the plan of the customer's MRR at the period end). Policies:
    ``count_new_churn`` (True), ``renewal_grace_days`` (0),
    ``repeat_window_days`` (35), ``base_currency``, ``validated`` (skip validation
    of input that :func:`csmetrics.validate` already checked).

    Examples
    --------
    >>> import pandas as pd, csmetrics
    >>> billing = pd.DataFrame({"customer_id": [1, 1], "kind": "recurring", "amount": [100.0, 150.0],
    ...     "service_start": ["2024-01-01", "2024-02-01"], "service_end": ["2024-02-01", "2024-03-01"]})
    >>> frame = csmetrics.revenue_metrics(billing)
    >>> frame.pivot(index="period", columns="metric", values="value")[["mrr", "new_mrr", "expansion_mrr"]].to_numpy().tolist()
    [[100.0, 100.0, 0.0], [150.0, 0.0, 50.0]]
    """
    billing, context = prepare(billing, freq=freq, by=by, customers=customers, fx=fx, tz=tz, as_of=as_of,
                               start=start, end=end, **policies)  # fmt: skip
    return finalize(combine([partial(billing, context)], context), context)


def mrr_movements(
    billing: pd.DataFrame,
    *,
    freq: str = "M",
    by: Sequence[str] | str | None = None,
    customers: pd.DataFrame | None = None,
    fx: pd.DataFrame | None = None,
    tz: str = "UTC",
    as_of: object = None,
    start: object = None,
    end: object = None,
    **policies,
) -> pd.DataFrame:
    """The per-customer movement ledger the revenue metrics are built from.

    One row per customer and instant where its MRR changes: customer_id,
    instant (UTC), period (label in ``tz``), kind (new, reactivation, expansion,
    contraction, churn), amount (the signed change: its sum is net new MRR),
    mrr_before, mrr_after, and the ``by`` segment of the customer in that period.
    """
    billing, context = prepare(billing, freq=freq, by=by, customers=customers, fx=fx, tz=tz, as_of=as_of,
                               start=start, end=end, **policies)  # fmt: skip
    spine = context.spine
    codes = CustomerCodes.of(billing)
    ledger = build_ledger(billing, context, codes)
    moving = (ledger.kind != NONE) & (ledger.period >= 0) & (ledger.period < spine.n)
    groups = build_groups(ledger, spine.n)
    money = 1.0 / MONEY_SCALE
    frame = pd.DataFrame(
        {
            "customer_id": codes.customer_ids[ledger.customer[moving]],
            "instant": pd.DatetimeIndex(ledger.instant[moving].view("M8[ns]")).tz_localize("UTC"),
            "period": spine.starts[ledger.period[moving]],
            "kind": pd.Series(np.array(KINDS, dtype=object)[ledger.kind[moving]], dtype="str"),
            "amount": (ledger.after[moving] - ledger.before[moving]) * money,
            "mrr_before": ledger.before[moving] * money,
            "mrr_after": ledger.after[moving] * money,
        }
    )
    if context.by:
        plan = _plan_at(groups, ledger.customer[moving], ledger.period[moving])
        segments = segment_frame(codes.customer_ids, codes.plans, ledger.customer[moving], plan, context)
        for column in context.by:
            frame[column] = segments[column].to_numpy()
    return frame


def cohort_table(
    billing: pd.DataFrame,
    *,
    freq: str = "M",
    customers: pd.DataFrame | None = None,
    fx: pd.DataFrame | None = None,
    tz: str = "UTC",
    as_of: object = None,
    start: object = None,
    end: object = None,
    **policies,
) -> pd.DataFrame:
    """Per cohort (period of a customer's first MRR > 0) and periods since start.

    Columns: cohort, period, periods_since_start, cohort_customers,
    customers_active (MRR > 0 at the period end), logo_retention
    (active / cohort_customers), mrr, revenue_retention (MRR / the cohort's MRR
    at the end of its first period; NaN where that is 0).
    """
    billing, context = prepare(billing, freq=freq, customers=customers, fx=fx, tz=tz, as_of=as_of,
                               start=start, end=end, **policies)  # fmt: skip
    spine = context.spine
    n = spine.n
    codes = CustomerCodes.of(billing)
    ledger = build_ledger(billing, context, codes)
    groups = build_groups(ledger, n)
    first_new = np.full(len(codes.customer_ids), -1, dtype=np.int64)
    is_new = ledger.kind == NEW
    first_new[ledger.customer[is_new]] = ledger.period[is_new]  # one new movement per customer
    cohort = first_new[groups.customer]
    keep = (cohort >= 0) & (cohort < n)
    p, nxt, c = groups.period[keep], groups.next_period[keep], cohort[keep]
    end_mrr = groups.end_mrr[keep].astype(float)
    active = (end_mrr > 0).astype(float)
    mrr = range_add(p, nxt, c, end_mrr, n, n) / MONEY_SCALE  # (period, cohort)
    customers_active = range_add(p, nxt, c, active, n, n)
    starting = first_new[(first_new >= 0) & (first_new < n)]
    size = np.bincount(starting, minlength=n).astype(float)
    period_idx, cohort_idx = np.nonzero(np.ones((n, n), dtype=bool))
    later = period_idx >= cohort_idx
    period_idx, cohort_idx = period_idx[later], cohort_idx[later]
    first_mrr = mrr[cohort_idx, cohort_idx]
    with np.errstate(divide="ignore", invalid="ignore"):
        logo = np.where(size[cohort_idx] > 0, customers_active[period_idx, cohort_idx] / size[cohort_idx], np.nan)
        revenue = np.where(first_mrr > 0, mrr[period_idx, cohort_idx] / first_mrr, np.nan)
    starts = spine.starts
    table = pd.DataFrame(
        {
            "cohort": starts[cohort_idx],
            "period": starts[period_idx],
            "periods_since_start": period_idx - cohort_idx,
            "cohort_customers": size[cohort_idx],
            "customers_active": customers_active[period_idx, cohort_idx],
            "logo_retention": logo,
            "mrr": mrr[period_idx, cohort_idx],
            "revenue_retention": revenue,
        }
    )
    return table[table["cohort_customers"] > 0].sort_values(["cohort", "period"]).reset_index(drop=True)

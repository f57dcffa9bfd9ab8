"""Revenue metrics from billing (METRICS.md §4): MRR, its movements, NRR/GRR.

``partial(billing, context)`` returns additive sums per (period, segment) for one
set of customers; sums over disjoint customer sets add up. ``finalize`` turns
the summed partials into the metric frame. The customer family
(:mod:`csmetrics.metrics.customers`) finalizes the same partials.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd

from csmetrics.frame import FrameBuilder
from csmetrics.metrics._billing import (
    CHURN,
    CONTRACTION,
    EXPANSION,
    KINDS,
    MONEY_SCALE,
    NAT,
    NEW,
    NONE,
    ONE_TIME,
    REACTIVATION,
    RECURRING,
    REFUND,
    BillingArrays,
    BillingContext,
    Ledger,
    SegmentCoder,
    arrays_and_ledger,
    build_groups,
    first_mrr,
    known_lines,
    line_monthly,
    money_units,
    mrr_at,
    plan_at,
    scheduled_mrr,
    sort_order,
    step_value_at,
    unique_pairs,
)
from csmetrics.metrics._common import Grid, long_partial, run_starts
from csmetrics.metrics._common import combine as combine_partials
from csmetrics.metrics._common import dense as dense_partial
from csmetrics.periods import period_codes

__all__ = [
    "COHORT_COLUMNS",
    "MOVEMENT_COLUMNS",
    "PARTIAL_COLUMNS",
    "RENEWAL_COLUMNS",
    "cohort_finalize",
    "cohort_partial",
    "combine",
    "current_mrr_of",
    "dense",
    "finalize",
    "movements",
    "partial",
    "renewal_rows",
    "sort_movements",
]

#: the additive columns of a billing partial, in order
PARTIAL_COLUMNS = (
    "mrr_end",
    "mrr_start",
    "new",
    "reactivation",
    "expansion",
    "contraction",
    "churn",
    "fx_effect",
    "n_new",
    "n_reactivation",
    "n_expansion",
    "n_contraction",
    "n_churn",
    "n_churn_of_start",
    "customers_start",
    "customers_end",
    "retained",
    "nrr_num",
    "grr_num",
    "revenue_churn_num",
    "one_time",
    "refunds",
    "renewals_due",
    "renewals_renewed",
    "purchases_closed",
    "purchases_repeated",
)


def partial(billing: pd.DataFrame, context: BillingContext, memo: Any = None) -> pd.DataFrame:
    """Additive sums per (period index, segment values) over the customers in ``billing``.

    Money columns are in currency units (exact multiples of 1e-4), counts are
    counts. Rows are every (period, segment) cell the customers touch. With ``memo``, computed once
    per frame and context (a report's value family asks for the monthly one, the revenue family's
    when the report is monthly); nobody changes a partial.
    """
    if memo is None:
        return _partial(billing, context, memo)
    key = (
        "revenue partial",
        len(billing),
        context.spine,
        context.by,
        context.policies,
        context.fx_key,
        context.customers_key,
        context.base_currency,
    )
    return memo.get(billing, key, lambda: _partial(billing, context, memo))


def _partial(billing: pd.DataFrame, context: BillingContext, memo: Any) -> pd.DataFrame:
    spine = context.spine
    n = spine.n
    arrays, ledger = arrays_and_ledger(billing, context, memo)
    groups = build_groups(ledger, n)
    coder = SegmentCoder(context, arrays)

    # rows that need the customer's segment at a period: one-time lines, renewals, purchases
    as_of = spine.as_of.value
    flows = np.flatnonzero((arrays.kind != RECURRING) & (arrays.invoiced <= as_of) & (arrays.invoiced != NAT))
    flow_period = spine.index(period_codes(arrays.invoiced[flows], spine.freq, spine.tz))
    renewal_customer, renewal_period, renewed = _renewals(arrays, ledger, context)
    purchase_customer, purchase_period, repeated = _purchases(arrays, context)
    extra_customer = np.concatenate([arrays.customer[flows], renewal_customer, purchase_customer])
    extra_period = np.concatenate([flow_period, renewal_period, purchase_period])
    extra_plan = (
        plan_at(groups, extra_customer, extra_period) if "plan" in context.by else np.full(len(extra_customer), -1)
    )

    raw_codes = coder.codes(
        np.concatenate([groups.customer, extra_customer]), np.concatenate([groups.plan, extra_plan])
    )
    seg_codes, used = pd.factorize(raw_codes, sort=True)
    grid = Grid(n, max(len(used), 1))
    n_groups, k1, k2 = len(groups.customer), len(flows), len(flows) + len(renewal_customer)
    group_seg = seg_codes[:n_groups]
    flow_cells = grid.points(flow_period, seg_codes[n_groups : n_groups + k1])
    renewal_cells = grid.points(renewal_period, seg_codes[n_groups + k1 : n_groups + k2])
    purchase_cells = grid.points(purchase_period, seg_codes[n_groups + k2 :])

    # between two groups a customer's MRR is constant: periods after a group up to the next one
    between = grid.ranges(groups.period + 1, groups.next_period, group_seg)
    at_group = grid.points(groups.period, group_seg)
    start_mrr = groups.start_mrr.astype(float)
    end_mrr = groups.end_mrr.astype(float)
    churned = groups.count[:, CHURN] > 0
    fx_effect = groups.fx.astype(float)
    # a start customer's revenue stops at its first churn; NRR and GRR leave the fx effect out (§12)
    retained_end = np.where(churned, 0.0, end_mrr - fx_effect)
    is_start = start_mrr > 0
    active_end = (end_mrr > 0).astype(float)

    money = 1.0 / MONEY_SCALE
    carried = grid.add_range(between, end_mrr)
    carried_active = grid.add_range(between, active_end)
    columns = {
        "mrr_end": (carried + grid.add(at_group, end_mrr)) * money,
        "mrr_start": (carried + grid.add(at_group, start_mrr)) * money,
    }
    for name, code in (
        ("new", NEW),
        ("reactivation", REACTIVATION),
        ("expansion", EXPANSION),
        ("contraction", CONTRACTION),
        ("churn", CHURN),
    ):
        columns[name] = grid.add(at_group, groups.movement[:, code]) * money
        columns[f"n_{name}"] = grid.add(at_group, groups.count[:, code])
    columns["fx_effect"] = grid.add(at_group, fx_effect) * money
    columns["n_churn_of_start"] = grid.add(at_group, is_start & churned)
    columns["customers_start"] = carried_active + grid.add(at_group, is_start)
    columns["customers_end"] = carried_active + grid.add(at_group, active_end)
    columns["retained"] = carried_active + grid.add(at_group, is_start & (end_mrr > 0))
    columns["nrr_num"] = (carried + grid.add(at_group, np.where(is_start, retained_end, 0.0))) * money
    columns["grr_num"] = (
        carried + grid.add(at_group, np.where(is_start, np.minimum(retained_end, start_mrr), 0.0))
    ) * money
    columns["revenue_churn_num"] = grid.add(at_group, np.where(is_start & churned, start_mrr, 0.0)) * money

    flow_kind, flow_amount = arrays.kind[flows], arrays.amount[flows]
    columns["one_time"] = grid.add(flow_cells, np.where(flow_kind == ONE_TIME, flow_amount, 0.0))
    columns["refunds"] = grid.add(flow_cells, np.where(flow_kind == REFUND, np.abs(flow_amount), 0.0))
    columns["renewals_due"] = grid.add(renewal_cells, np.ones(len(renewed)))
    columns["renewals_renewed"] = grid.add(renewal_cells, renewed)
    columns["purchases_closed"] = grid.add(purchase_cells, ~np.isnan(repeated))
    columns["purchases_repeated"] = grid.add(purchase_cells, np.nan_to_num(repeated))
    return long_partial(columns, PARTIAL_COLUMNS, coder.table(used), n)


def combine(partials: Sequence[pd.DataFrame], context: BillingContext) -> pd.DataFrame:
    """Sum partials of disjoint customer sets."""
    return combine_partials(partials, context.by, PARTIAL_COLUMNS)


def dense(summed: pd.DataFrame, context: BillingContext) -> tuple[dict[str, np.ndarray], pd.DataFrame | None]:
    """The summed partial as (period, segment) arrays over every period of the spine."""
    return dense_partial(summed, context.by, PARTIAL_COLUMNS, context.spine.n)


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
    if context.policies.fx_mode == "spot":
        builder.add("fx_effect_mrr", a["fx_effect"])
    builder.ratio("nrr", a["nrr_num"], a["mrr_start"])
    builder.ratio("grr", a["grr_num"], a["mrr_start"])
    builder.ratio("revenue_churn_rate", a["revenue_churn_num"], a["mrr_start"])
    builder.ratio("quick_ratio", a["new"] + a["reactivation"] + a["expansion"], a["churn"] + a["contraction"])
    builder.ratio("arpu", a["mrr_end"], a["customers_end"])
    # the conventions of other tools (§12), over the same movements
    builder.ratio("gross_mrr_churn_rate", a["churn"] + a["contraction"], a["mrr_start"])
    builder.ratio(
        "net_mrr_churn_rate", a["churn"] + a["contraction"] - a["expansion"] - a["reactivation"], a["mrr_start"]
    )
    builder.ratio("net_revenue_churn_rate", a["churn"] + a["contraction"] - a["expansion"], a["mrr_start"])
    builder.ratio("asp", a["new"], a["n_new"])
    builder.add("one_time_revenue", a["one_time"])
    builder.add("refunds", a["refunds"])
    return builder.build()


# --------------------------------------------------------------------------
# Renewals and repeat purchases
# --------------------------------------------------------------------------
def _renewals(arrays: BillingArrays, ledger: Ledger, context: BillingContext):
    """Renewals due: one per (customer, end instant) of positive recurring lines ended by as_of.

    Renewed when the customer's MRR is > 0 at end + renewal_grace_days (capped at
    as_of: nothing later is known).
    """
    spine = context.spine
    as_of = spine.as_of.value
    due = (
        (arrays.kind == RECURRING)
        & (arrays.amount > 0)
        & (arrays.end <= as_of)
        & (arrays.start <= as_of)
        & (arrays.end != NAT)
    )
    customer, end = unique_pairs(arrays.customer[due], arrays.end[due])
    grace = int(round(context.policies.renewal_grace_days * 86_400 * 10**9))
    renewed = mrr_at(ledger, customer, np.minimum(end + grace, as_of)) > 0
    return customer, spine.index(period_codes(end, spine.freq, spine.tz)), renewed


def _purchases(arrays: BillingArrays, context: BillingContext):
    """One-time purchases (one per customer and instant) and whether another followed in the window.

    ``repeated`` is 1/0 where the window closed by as_of, NaN where it is still open.
    """
    spine = context.spine
    as_of = spine.as_of.value
    bought = (arrays.kind == ONE_TIME) & (arrays.invoiced <= as_of) & (arrays.invoiced != NAT)
    customer, at = unique_pairs(arrays.customer[bought], arrays.invoiced[bought])
    window = int(round(context.policies.repeat_window_days * 86_400 * 10**9))
    next_at = np.full(len(at), np.iinfo(np.int64).max)
    if len(at) > 1:
        same = customer[1:] == customer[:-1]
        next_at[:-1] = np.where(same, at[1:], np.iinfo(np.int64).max)
    closed = at + window <= as_of
    repeated = np.where(closed, (next_at - at <= window).astype(float), np.nan)
    return customer, spine.index(period_codes(at, spine.freq, spine.tz)), repeated


# --------------------------------------------------------------------------
# Public functions
# --------------------------------------------------------------------------


#: The columns of the movement ledger (none of them may be a segment column).
MOVEMENT_COLUMNS = ("customer_id", "instant", "kind", "amount", "mrr_before", "mrr_after")


def sort_movements(frame: pd.DataFrame) -> pd.DataFrame:
    """The ledger in one order whatever engine or bucket made its rows: by customer, then instant."""
    return frame.sort_values(["customer_id", "instant"], kind="stable").reset_index(drop=True)


def movements(billing: pd.DataFrame, context: BillingContext, memo: Any = None) -> pd.DataFrame:
    """:func:`mrr_movements` of these (validated) customers in a given context."""
    spine = context.spine
    arrays, ledger = arrays_and_ledger(billing, context, memo)
    inside = (ledger.period >= 0) & (ledger.period < spine.n)
    # an instant gives its fx_effect row (spot mode, §12), then its native movement valued at its rates
    rows = np.concatenate([np.flatnonzero(inside & (ledger.fx != 0)), np.flatnonzero(inside & (ledger.kind != NONE))])
    is_fx = np.arange(len(rows)) < int((inside & (ledger.fx != 0)).sum())
    order = np.lexsort((~is_fx, rows))
    rows, is_fx = rows[order], is_fx[order]
    groups = build_groups(ledger, spine.n)
    money = 1.0 / MONEY_SCALE
    before = np.where(is_fx, ledger.before[rows], ledger.revalued[rows])
    after = np.where(is_fx, ledger.revalued[rows], ledger.after[rows])
    names = np.array([*KINDS, "fx_effect"], dtype=object)
    frame = pd.DataFrame(
        {
            "customer_id": arrays.customer_ids[ledger.customer[rows]],
            "instant": pd.DatetimeIndex(ledger.instant[rows].view("M8[ns]")).tz_localize("UTC"),
            "period": spine.starts[ledger.period[rows]],
            "kind": pd.Series(names[np.where(is_fx, len(KINDS), ledger.kind[rows])], dtype="str"),
            "amount": (after - before) * money,
            "mrr_before": before * money,
            "mrr_after": after * money,
        }
    )
    if context.by:
        coder = SegmentCoder(context, arrays)
        plan = plan_at(groups, ledger.customer[rows], ledger.period[rows])
        segments = coder.table(coder.codes(ledger.customer[rows], plan))
        assert segments is not None  # a table whenever there are segments
        for column in context.by:
            frame[column] = segments[column].to_numpy()
    return frame


def movement_cells(
    billing: pd.DataFrame, context: BillingContext, memo: Any = None
) -> tuple[np.ndarray, np.ndarray, dict[str, np.ndarray]]:
    """The (customer, period) cells with a movement (:func:`movements`' rows, without building
    them): (customer ids, spine indexes, {kind: summed amount per cell}) with every kind of
    KINDS (and fx_effect in spot mode), cells by customer then period; amounts are summed in exact
    money units."""
    spine = context.spine
    arrays, ledger = arrays_and_ledger(billing, context, memo)
    rows = np.flatnonzero((ledger.period >= 0) & (ledger.period < spine.n) & ((ledger.kind != NONE) | (ledger.fx != 0)))
    key = ledger.customer[rows].astype(np.int64) * spine.n + ledger.period[rows]
    if len(key) > 1 and not (key[1:] >= key[:-1]).all():  # the ledger runs by customer then instant
        order = np.argsort(key, kind="stable")
        rows, key = rows[order], key[order]
    first = run_starts(key)
    cell = np.cumsum(first) - 1
    n_cells = int(first.sum())
    kind = ledger.kind[rows]
    native = ledger.after[rows] - ledger.revalued[rows]  # the native change, at the instant's rates
    sums = {
        name: np.bincount(cell, weights=np.where(kind == code, native, 0), minlength=n_cells) / MONEY_SCALE
        for code, name in enumerate(KINDS)
    }
    if context.policies.fx_mode == "spot":
        sums["fx_effect"] = np.bincount(cell, weights=ledger.fx[rows], minlength=n_cells) / MONEY_SCALE
    customer = ledger.customer[rows[first]]
    return arrays.customer_ids[customer], ledger.period[rows[first]], sums


#: The columns of the cohort table (none of them may be a segment column).
COHORT_COLUMNS = (
    "cohort",
    "periods_since_start",
    "cohort_customers",
    "customers_active",
    "logo_retention",
    "mrr",
    "revenue_retention",
)
_COHORT_SUMS = ("mrr", "customers_active", "size")


def cohort_partial(billing: pd.DataFrame, context: BillingContext, memo: Any = None) -> pd.DataFrame:
    """(period, cohort, segment) sums of MRR (money units) and active customers, and cohort sizes,
    over these customers: a long frame keyed by values, so partials of disjoint customers add up."""
    n = context.spine.n
    arrays, ledger = arrays_and_ledger(billing, context, memo)
    groups = build_groups(ledger, n)
    n_customers = len(arrays.customer_ids)
    first_new, first_plan = first_mrr(ledger, n_customers)
    coder = SegmentCoder(context, arrays)
    segment, used = pd.factorize(coder.codes(np.arange(n_customers, dtype=np.int64), first_plan), sort=True)
    n_seg = max(len(used), 1)
    cohort = first_new[groups.customer]
    keep = (cohort >= 0) & (cohort < n)
    p, nxt = groups.period[keep], groups.next_period[keep]
    column = cohort[keep] * n_seg + segment[groups.customer[keep]]
    end_mrr = groups.end_mrr[keep].astype(float)
    grid = Grid(n, n * n_seg)  # (period, cohort x segment)
    alive = grid.ranges(p, nxt, column)
    starting = (first_new >= 0) & (first_new < n)
    size = np.zeros((n, n * n_seg))
    first_column = first_new[starting] * n_seg + segment[starting]
    np.add.at(size, (first_new[starting], first_column), 1.0)
    sums = {
        "mrr": grid.add_range(alive, end_mrr),
        "customers_active": grid.add_range(alive, (end_mrr > 0).astype(float)),
        "size": size,
    }
    cells = np.flatnonzero((sums["mrr"] != 0) | (sums["customers_active"] != 0) | (size != 0))
    period_index, rest = np.divmod(cells, n * n_seg)
    cohort_index, seg = np.divmod(rest, n_seg)
    frame = pd.DataFrame({"period_index": period_index, "cohort_index": cohort_index})
    seg_table = coder.table(np.asarray(used)[seg] if len(used) else np.zeros(0, dtype=np.int64))
    for name in context.by:
        assert seg_table is not None
        frame[name] = seg_table[name].to_numpy() if len(cells) else pd.Series([], dtype=object)
    for name in _COHORT_SUMS:
        frame[name] = sums[name].ravel()[cells]
    return frame


def cohort_finalize(partials: Sequence[pd.DataFrame], context: BillingContext) -> pd.DataFrame:
    """The cohort table from the partials of disjoint customer sets."""
    spine = context.spine
    n, by = spine.n, list(context.by)
    stacked = pd.concat(partials, ignore_index=True)
    summed = stacked.groupby(["cohort_index", *by, "period_index"], dropna=False, sort=True, observed=True)[
        list(_COHORT_SUMS)
    ].sum()
    summed = summed.reset_index()
    # every (cohort, segment) with customers, over every period from the cohort's on
    keys = summed.groupby(["cohort_index", *by], dropna=False, sort=True, observed=True)["size"].sum().reset_index()
    keys = keys[keys["size"] > 0].drop(columns="size").reset_index(drop=True)
    spans = n - keys["cohort_index"].to_numpy()
    table = keys.loc[np.repeat(np.arange(len(keys)), spans)].reset_index(drop=True)
    offset = np.arange(len(table)) - np.repeat(np.cumsum(spans) - spans, spans)
    table["period_index"] = table["cohort_index"].to_numpy() + offset
    table = table.merge(summed, on=["cohort_index", *by, "period_index"], how="left")
    for name in _COHORT_SUMS:
        table[name] = table[name].fillna(0.0)
    size = (
        table.groupby(["cohort_index", *by], dropna=False, sort=False, observed=True)["size"]
        .transform("sum")
        .to_numpy()
    )
    first = table["period_index"] == table["cohort_index"]
    first_mrr = (
        table["mrr"]
        .where(first)
        .groupby([table[c] for c in ["cohort_index", *by]], dropna=False, sort=False, observed=True)
        .transform("max")
        .to_numpy()
        / MONEY_SCALE
    )
    mrr = table["mrr"].to_numpy() / MONEY_SCALE
    active = table["customers_active"].to_numpy()
    with np.errstate(divide="ignore", invalid="ignore"):
        logo = np.where(size > 0, active / size, np.nan)
        revenue = np.where(first_mrr > 0, mrr / first_mrr, np.nan)
    starts = spine.starts
    out = pd.DataFrame({"cohort": starts[table["cohort_index"].to_numpy()]})
    for name in by:
        out[name] = table[name].to_numpy()
    out["period"] = starts[table["period_index"].to_numpy()]
    out["periods_since_start"] = offset
    out["cohort_customers"] = size
    out["customers_active"] = active
    out["logo_retention"] = logo
    out["mrr"] = mrr
    out["revenue_retention"] = revenue
    return out.sort_values(["cohort", *by, "period"], kind="stable").reset_index(drop=True)


def current_mrr_of(billing: pd.DataFrame, context: BillingContext, memo: Any = None) -> pd.Series:
    """:func:`current_mrr` of these (validated) customers in a given context (unsorted)."""
    arrays, ledger = arrays_and_ledger(billing, context, memo)
    last = np.append(ledger.customer[1:] != ledger.customer[:-1], True) if len(ledger.customer) else np.array([], bool)
    return pd.Series(
        ledger.after[last] / MONEY_SCALE,
        index=pd.Index(arrays.customer_ids[ledger.customer[last]], name="customer_id"),
        name="mrr",
    )


#: The columns of the renewal calendar (§12), before the report's joins.
RENEWAL_COLUMNS = ("customer_id", "end", "mrr_up_for_renewal")


def renewal_rows(billing: pd.DataFrame, context: BillingContext, horizon_days: float, memo: Any = None) -> pd.DataFrame:
    """Renewals ahead (§12) of these customers: per customer and end instant in (as_of, as_of +
    horizon_days] at which positive recurring lines known at as_of end, unless the lines known at
    as_of give the customer MRR > 0 at end + renewal_grace_days; with the MRR of the ending lines
    (line mode: at each line's start rate; spot mode: at the latest rate on or before as_of).
    With ``plan`` among the context's segments, the plan of the largest ending line."""
    as_of = context.spine.as_of.value
    arrays, _ = arrays_and_ledger(billing, context, memo)
    lines = np.flatnonzero(known_lines(arrays, as_of))
    horizon = as_of + int(round(horizon_days * 86_400 * 10**9))
    end = arrays.end[lines]
    # only the customers with a line ending in the horizon: their known lines are all that their
    # renewals and MRR steps read (each line's monthly amount is its own), a few of the lines
    ending = np.zeros(len(arrays.customer_ids), dtype=bool)
    ending[arrays.customer[lines[(end > as_of) & (end <= horizon)]]] = True
    lines = lines[ending[arrays.customer[lines]]]
    amount = arrays.amount
    if context.policies.fx_mode == "spot" and len(arrays.rates.names):
        amount = np.zeros(len(arrays.native))
        amount[lines] = arrays.native[lines] * arrays.rates.at(arrays.currency[lines], np.full(len(lines), as_of))
    monthly = money_units(line_monthly(arrays, lines, amount))
    end = arrays.end[lines]
    due = (monthly > 0) & (end > as_of) & (end <= horizon)
    due_customer, due_end, due_monthly = arrays.customer[lines][due], end[due], monthly[due]
    due_plan = arrays.plan[lines][due]
    order = sort_order(due_customer, due_end)
    due_customer, due_end, due_monthly, due_plan = (a[order] for a in (due_customer, due_end, due_monthly, due_plan))
    starts = np.ones(len(order), dtype=bool)
    starts[1:] = (due_customer[1:] != due_customer[:-1]) | (due_end[1:] != due_end[:-1])
    code = np.cumsum(starts) - 1
    customer, end_at = due_customer[starts], due_end[starts]
    up = np.bincount(code, weights=due_monthly.astype(float), minlength=len(customer))
    scheduled = scheduled_mrr(arrays, lines, monthly)
    grace = int(round(context.policies.renewal_grace_days * 86_400 * 10**9))
    renewed = step_value_at(*scheduled, customer, end_at + grace) > 0
    keep = ~renewed
    frame = pd.DataFrame(
        {
            "customer_id": arrays.customer_ids[customer[keep]],
            "end": pd.DatetimeIndex(end_at[keep].view("M8[ns]")).tz_localize("UTC"),
            "mrr_up_for_renewal": up[keep] / MONEY_SCALE,
        }
    )
    if "plan" in context.by:
        # the plan of the largest ending line (ties: the last plan name)
        weight = np.where(due_plan >= 0, due_monthly, -1)
        order = np.lexsort((due_plan, weight, code))
        last = np.append(code[order][1:] != code[order][:-1], True) if len(order) else np.zeros(0, bool)
        plan_code = np.full(len(customer), -1)
        plan_code[code[order][last]] = due_plan[order][last]
        plans = np.concatenate([arrays.plans, [None]]).astype(object)
        frame["plan"] = pd.Series(plans[plan_code[keep]], dtype="str").where(plan_code[keep] >= 0, None).to_numpy()
    return frame

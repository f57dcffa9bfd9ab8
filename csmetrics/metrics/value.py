"""Customer value and cost metrics (METRICS.md §9): CLV, purchase CLV, CRC, CAC, LTV:CAC.

Built on the revenue and customer families. CLV uses monthly quantities
whatever ``freq`` is: a period takes the ARPU and the trailing 12-month mean
logo churn rate of the month holding its end (as_of in the partial period).
The mean skips months where the churn rate is undefined; a mean of 0 gives NaN.
The average lifespan in months is 1 / that mean unless ``lifespan_months`` is
given. Costs have no customer, so the cost metrics (crc, cac, ltv_cac,
clv_per_capex) are reported only without ``by``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd

from csmetrics.frame import FrameBuilder, attach_segments, encode_segments, to_wide
from csmetrics.metrics import customers as customers_family
from csmetrics.metrics import revenue as revenue_family
from csmetrics.metrics._billing import arrays_and_ledger, invoices, prepare
from csmetrics.metrics._common import distinct_per_cell
from csmetrics.options import check_cost_roles, check_number
from csmetrics.periods import instants, period_codes
from csmetrics.stats import safe_ratio

__all__ = [
    "DEFAULT_COST_ROLES",
    "check_value_options",
    "combine",
    "cost_roles_of",
    "finalize",
    "monthly_context",
    "partial",
]

DEFAULT_COST_ROLES: dict[str, tuple[str, ...]] = {
    "retention": ("customer_success", "support", "retention_marketing", "training", "loyalty"),
    "acquisition": ("sales", "marketing"),
    "capex": ("capex",),
}


def cost_roles_of(cost_roles: Mapping[str, Sequence[str]] | None) -> dict[str, tuple[str, ...]]:
    """The default roles with any given ones replaced; unknown roles are an error."""
    return {**DEFAULT_COST_ROLES, **(check_cost_roles(cost_roles) or {})}


def check_value_options(gross_margin: object, cost_roles: object, lifespan_months: object) -> None:
    """gross_margin in (0, 1], cost_roles lists of categories, lifespan_months > 0 or None."""
    check_number("gross_margin", gross_margin, low=0, high=1, low_open=True)
    check_cost_roles(cost_roles)
    if lifespan_months is not None:
        check_number("lifespan_months", lifespan_months, low=0, low_open=True)


def monthly_context(billing: pd.DataFrame, context):
    """The calendar-month context CLV needs, whatever the report's freq (``billing`` may be a
    partitioned engine's summary of the table: only its timestamps' range matters)."""
    _, monthly = prepare(
        billing,
        freq="M",
        by=context.by,
        customers=context.customers,
        fx=context.fx,
        tz=context.spine.tz,
        as_of=context.spine.as_of,
        base_currency=context.base_currency,
        **context.policies.__dict__,
    )
    return monthly


def partial(
    billing: pd.DataFrame, context, monthly, memo: Any = None
) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame | None]:
    """Additive pieces over a set of customers: the monthly billing partial, purchases per
    (month, segment) and, when the report's periods are not months, the billing partial on them."""
    summed = revenue_family.partial(billing, monthly, memo)
    segments = list(context.by)
    arrays, _ = arrays_and_ledger(billing, monthly, memo)  # the revenue partial's, through the memo
    keep, at, invoice, amount = invoices(arrays, monthly.spine.as_of.value)
    month = monthly.spine.index(period_codes(at, "M", monthly.spine.tz))
    seg, seg_table = np.zeros(len(at), dtype=np.int64), None
    if segments:
        static = [c for c in segments if c != "plan"]
        values = attach_segments(billing[keep], static, context.customers, "billing")
        if "plan" in segments:
            values["plan"] = billing.loc[keep, "plan"].to_numpy()
        seg, seg_table = encode_segments(values[segments])
    # an invoice and a payer belong to one customer: these counts add up across customer sets
    n_seg = len(seg_table) if seg_table is not None else 1
    first_month = int(month.min()) if len(month) else 0  # spine positions: a narrow integer range
    cell = (month - first_month) * n_seg + seg
    n_cells = (int(month.max()) - first_month + 1 if len(month) else 1) * n_seg
    present = np.flatnonzero(np.bincount(cell, minlength=n_cells))
    per_month = pd.DataFrame({"month": first_month + present // n_seg})
    if seg_table is not None:
        for column in segments:
            per_month[column] = seg_table[column].to_numpy()[present % n_seg]
    per_month["invoices"] = distinct_per_cell(cell, invoice, n_cells)[present].astype(np.int64)
    per_month["payers"] = distinct_per_cell(cell, arrays.customer[keep], n_cells)[present].astype(np.int64)
    per_month["revenue"] = np.bincount(cell, weights=amount, minlength=n_cells)[present]
    own = None if monthly.spine == context.spine else revenue_family.partial(billing, context, memo)
    return summed, per_month, own


def combine(partials: Sequence[tuple], context, monthly) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame | None]:
    """Sum the pieces of disjoint customer sets."""
    segments = list(context.by)
    summed = revenue_family.combine([p[0] for p in partials], monthly)
    per_month = pd.concat([p[1] for p in partials], ignore_index=True)
    per_month = (
        per_month.groupby(["month", *segments], dropna=False, sort=True, observed=True)[
            ["invoices", "payers", "revenue"]
        ]
        .sum()
        .reset_index()
    )
    own = None if partials[0][2] is None else revenue_family.combine([p[2] for p in partials], context)
    return summed, per_month, own


def _monthly(summed: pd.DataFrame, per_month: pd.DataFrame, monthly, segments: list[str]) -> pd.DataFrame:
    """Monthly ARPU, logo churn, purchases and trailing-12 mean churn per segment."""
    frame = pd.concat([revenue_family.finalize(summed, monthly), customers_family.finalize(summed, monthly)])
    wide = to_wide(frame)
    wide = wide.sort_values([*segments, "period"], kind="stable")
    grouped = (
        wide.groupby(segments, dropna=False, sort=False)["logo_churn_rate"] if segments else wide["logo_churn_rate"]
    )
    wide["mean_churn"] = (
        grouped.transform(lambda s: s.rolling(12, min_periods=1).mean())
        if segments
        else grouped.rolling(12, min_periods=1).mean()
    )
    # ChartMogul's LTV (§12): the 6 calendar months before the month, all defined
    wide["trailing6_churn"] = (
        grouped.transform(lambda s: s.shift(1).rolling(6, min_periods=6).mean())
        if segments
        else grouped.shift(1).rolling(6, min_periods=6).mean()
    )
    per_month = per_month.assign(period=monthly.spine.starts[per_month["month"].to_numpy()])
    return wide.merge(per_month.drop(columns="month"), on=["period", *segments], how="left")


def finalize(
    pieces: tuple,
    context,
    monthly,
    *,
    costs: pd.DataFrame | None = None,
    gross_margin: float = 1.0,
    cost_roles: Mapping[str, Sequence[str]] | None = None,
    lifespan_months: float | None = None,
) -> pd.DataFrame:
    """The value metric frame (§9) from combined pieces (and the validated costs table)."""
    monthly_summed, per_month, own = pieces
    segments = list(context.by)
    wide = _monthly(monthly_summed, per_month, monthly, segments)
    spine = context.spine
    # the month that holds each period's end (as_of in the partial period)
    end_instants = np.minimum(spine.ends_ns - 1, spine.as_of.value)
    end_month = pd.DatetimeIndex(pd.to_datetime(end_instants, utc=True)).tz_convert(spine.tz)
    month_start = pd.DatetimeIndex(end_month.tz_localize(None).to_period("M").start_time).tz_localize(spine.tz)
    summed = monthly_summed if own is None else own  # the monthly pass already holds the month grid
    arrays, seg_table = revenue_family.dense(summed, context)
    n_seg = len(seg_table) if seg_table is not None else 1

    lookup = wide.set_index(["period", *segments]) if segments else wide.set_index("period")
    # the month that holds each period's start (ltv_trailing6 looks at the 6 months before it)
    start_month = pd.DatetimeIndex(spine.starts.tz_localize(None).to_period("M").start_time).tz_localize(spine.tz)
    columns = {}
    for name in ("arpu", "mean_churn", "invoices", "payers", "revenue", "trailing6_churn"):
        months = start_month if name == "trailing6_churn" else month_start
        grid = np.full((spine.n, n_seg), np.nan)
        for s in range(n_seg):
            if segments and seg_table is not None:
                key_values = tuple(seg_table.iloc[s][c] for c in segments)
                index = [(m, *key_values) for m in months]
            else:
                index = list(months)
            grid[:, s] = (
                lookup[name]
                .reindex(pd.MultiIndex.from_tuples(index) if segments else pd.Index(index))
                .to_numpy(dtype=float)
            )
        columns[name] = grid
    mean_churn = np.where(columns["mean_churn"] > 0, columns["mean_churn"], np.nan)
    clv = columns["arpu"] * gross_margin / mean_churn
    lifespan = np.full_like(clv, float(lifespan_months)) if lifespan_months is not None else 1.0 / mean_churn
    purchase_value = safe_ratio(columns["revenue"], columns["invoices"])
    purchases_per_month = safe_ratio(columns["invoices"], columns["payers"])

    builder = FrameBuilder(spine, seg_table)
    builder.add("clv", clv)
    trailing = np.where(columns["trailing6_churn"] > 0, columns["trailing6_churn"], np.nan)
    builder.add("ltv_trailing6", columns["arpu"] / trailing)
    builder.add("clv_purchase", purchase_value * purchases_per_month * lifespan)
    if costs is not None and not segments:
        roles = cost_roles_of(cost_roles)
        period = spine.index(period_codes(instants(costs["incurred_at"]), spine.freq, spine.tz))
        inside = (period >= 0) & (period < spine.n)
        amount = costs["amount"].to_numpy(dtype=float)
        by_role = {}
        for role, categories in roles.items():
            mine = inside & costs["category"].isin(categories).to_numpy(dtype=bool)
            by_role[role] = np.bincount(period[mine], weights=amount[mine], minlength=spine.n)[:, None]
        customers_end, customers_new = arrays["customers_end"], arrays["n_new"]
        builder.ratio("crc", by_role["retention"], customers_end)
        builder.ratio("cac", by_role["acquisition"], customers_new)
        cac = safe_ratio(by_role["acquisition"], customers_new)
        builder.add("ltv_cac", safe_ratio(clv, cac))
        builder.add("clv_per_capex", safe_ratio(clv * customers_end, by_role["capex"]))
    return builder.build()

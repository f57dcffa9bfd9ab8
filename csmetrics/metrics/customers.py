"""Customer (logo) metrics from billing (METRICS.md §5), finalized from the billing partials.

The partial sums are those of :mod:`csmetrics.metrics.revenue`: one pass over
billing serves both families.
"""

from __future__ import annotations

from collections.abc import Sequence

import pandas as pd

from csmetrics.dask_engine import any_dask
from csmetrics.dask_engine import run as dask_run
from csmetrics.frame import FrameBuilder
from csmetrics.metrics._billing import BillingContext, prepare
from csmetrics.metrics.revenue import combine, dense, partial


def finalize(summed: pd.DataFrame, context: BillingContext) -> pd.DataFrame:
    """The customer metric frame (§5) from summed billing partials."""
    a, seg_table = dense(summed, context)
    churned = a["n_churn"] if context.policies.count_new_churn else a["n_churn_of_start"]
    builder = FrameBuilder(context.spine, seg_table)
    builder.add("customers_start", a["customers_start"])
    builder.add("customers_new", a["n_new"])
    builder.add("customers_reactivated", a["n_reactivation"])
    builder.add("customers_churned", churned)
    builder.add("customers_end", a["customers_end"])
    builder.ratio("logo_churn_rate", churned, a["customers_start"])
    builder.ratio("retention_rate", a["retained"], a["customers_start"])
    builder.ratio("renewal_rate", a["renewals_renewed"], a["renewals_due"])
    builder.ratio("repeat_purchase_rate", a["purchases_repeated"], a["purchases_closed"])
    return builder.build()


def customer_metrics(
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
    """Customers at start and end, new, reactivated and churned logos, logo churn,
    retention, renewal and repeat-purchase rates per period and segment (METRICS.md §5).

    Parameters and policies as :func:`csmetrics.revenue_metrics`. With
    ``count_new_churn=False`` customers_churned counts only customers who were
    active at the period start (each once).
    """
    if any_dask(billing, customers, fx):
        return dask_run("customers", {"billing": billing, "customers": customers, "fx": fx}, by=by, freq=freq, tz=tz, as_of=as_of, start=start, end=end, **policies)
    billing, context = prepare(billing, freq=freq, by=by, customers=customers, fx=fx, tz=tz, as_of=as_of,
                               start=start, end=end, **policies)  # fmt: skip
    return finalize(combine([partial(billing, context)], context), context)

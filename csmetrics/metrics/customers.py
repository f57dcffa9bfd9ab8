"""Customer (logo) metrics from billing (METRICS.md §5), finalized from the billing partials.

The partial sums are those of :mod:`csmetrics.metrics.revenue`: one pass over
billing serves both families.
"""

from __future__ import annotations

import pandas as pd

from csmetrics.frame import FrameBuilder
from csmetrics.metrics._billing import BillingContext
from csmetrics.metrics.revenue import dense

__all__ = ["finalize"]


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

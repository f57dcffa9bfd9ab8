"""The inputs of the fitted value models (METRICS.md §13), from billing, per customer bucket.

- :func:`rfm_rows`: one row per customer with one-time purchases by as_of: frequency (repeat
  purchase days), recency and T (in ``unit``), monetary_value (mean repeat day total). A
  customer's purchases on one local day (in the context's tz) are one transaction, amounts
  summed; every one_time line counts (amount 0 included), refunds do not.
- :func:`survivor_partial` / :func:`survivor_finalize`: per cohort (period of the first
  MRR > 0) and segment, the customers whose MRR stayed > 0 from their first MRR through the
  end of each later period (a first churn ends the lifetime; a reactivation starts nothing),
  up to the last complete period (the one holding as_of is left out). Partials of disjoint
  customers add up.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd

from csmetrics.metrics._billing import (
    CHURN,
    ONE_TIME,
    BillingContext,
    SegmentCoder,
    arrays_and_ledger,
    first_mrr,
    sort_order,
)
from csmetrics.models import UNIT_DAYS
from csmetrics.periods import NAT, period_codes

__all__ = ["RFM_COLUMNS", "rfm_rows", "survivor_finalize", "survivor_partial"]

RFM_COLUMNS = ("customer_id", "frequency", "recency", "T", "monetary_value")


def rfm_rows(billing: pd.DataFrame, context: BillingContext, unit: str, memo: Any = None) -> pd.DataFrame:
    """The RFM summary rows of these (validated) customers, unsorted."""
    spine = context.spine
    as_of = spine.as_of.value
    arrays, _ = arrays_and_ledger(billing, context, memo)
    bought = (arrays.kind == ONE_TIME) & (arrays.invoiced != NAT) & (arrays.invoiced <= as_of)
    customer = arrays.customer[bought]
    day = period_codes(arrays.invoiced[bought], "D", spine.tz)
    amount = arrays.amount[bought]
    order = sort_order(customer, day)
    customer, day, amount = customer[order], day[order], amount[order]
    if not len(customer):
        return pd.DataFrame({c: pd.Series([], dtype=float if c != "customer_id" else object) for c in RFM_COLUMNS})
    new_day = np.ones(len(day), dtype=bool)
    new_day[1:] = (customer[1:] != customer[:-1]) | (day[1:] != day[:-1])
    starts = np.flatnonzero(new_day)
    day_customer, day_value, day_total = customer[starts], day[starts], np.add.reduceat(amount, starts)
    first = np.ones(len(day_customer), dtype=bool)
    first[1:] = day_customer[1:] != day_customer[:-1]
    block = np.flatnonzero(first)
    days_per_customer = np.diff(np.append(block, len(day_customer)))
    last = block + days_per_customer - 1
    frequency = days_per_customer - 1
    repeat_total = np.add.reduceat(day_total, block) - day_total[block]
    size = UNIT_DAYS[unit]
    as_of_day = int(period_codes(np.array([as_of], dtype=np.int64), "D", spine.tz)[0])
    with np.errstate(invalid="ignore", divide="ignore"):
        monetary = np.where(frequency > 0, repeat_total / np.maximum(frequency, 1), 0.0)
    return pd.DataFrame(
        {
            "customer_id": arrays.customer_ids[day_customer[block]],
            "frequency": frequency.astype(np.int64),
            "recency": (day_value[last] - day_value[block]) / size,
            "T": (as_of_day - day_value[block]) / size,
            "monetary_value": monetary,
        }
    )


def survivor_partial(billing: pd.DataFrame, context: BillingContext, memo: Any = None) -> pd.DataFrame:
    """(cohort, segment, offset) counts of surviving customers over these customers (a long
    frame keyed by values: partials of disjoint customers add up)."""
    spine = context.spine
    arrays, ledger = arrays_and_ledger(billing, context, memo)
    n_customers = len(arrays.customer_ids)
    first_new, first_plan = first_mrr(ledger, n_customers)
    # the first churn after the first MRR (ledger rows are sorted by customer, then instant)
    churns = np.flatnonzero(ledger.kind == CHURN)
    first_churn = np.full(n_customers, spine.n + 1, dtype=np.int64)
    np.minimum.at(first_churn, ledger.customer[churns], ledger.period[churns])
    # the last complete period: the one before as_of's
    last_complete = min(spine.as_of_index, spine.n) - 1
    in_cohort = (first_new >= 0) & (first_new <= last_complete)
    cohort = first_new[in_cohort]
    churn = first_churn[in_cohort]
    coder = SegmentCoder(context, arrays)
    codes = coder.codes(np.flatnonzero(in_cohort).astype(np.int64), first_plan[in_cohort])
    segment, used = pd.factorize(codes, sort=True)
    # a customer survives offsets 1 .. (first churn period - cohort - 1), capped at the last complete offset
    horizon = last_complete - cohort
    survived = np.minimum(churn - cohort - 1, horizon)
    n_seg = max(len(used), 1)
    width = int(horizon.max()) + 2 if len(horizon) else 1
    counts = np.zeros((spine.n, n_seg, width))
    np.add.at(counts, (cohort, segment, np.zeros(len(cohort), dtype=np.int64)), 1.0)
    # survived offsets 1..s: a difference array along the offset axis
    alive = survived >= 1
    np.add.at(counts, (cohort[alive], segment[alive], np.ones(int(alive.sum()), dtype=np.int64)), 1.0)
    np.add.at(counts, (cohort[alive], segment[alive], survived[alive] + 1), -1.0)
    counts[:, :, 1:] = np.cumsum(counts[:, :, 1:], axis=2)
    cohort_i, seg_i, offset = np.nonzero(counts)
    frame = pd.DataFrame({"cohort_index": cohort_i, "offset": offset, "survivors": counts[cohort_i, seg_i, offset]})
    table = coder.table(np.asarray(used)[seg_i] if len(used) else np.zeros(0, dtype=np.int64))
    for name in context.by:
        assert table is not None
        frame[name] = table[name].to_numpy() if len(frame) else pd.Series([], dtype=object)
    return frame


def survivor_finalize(partials: Sequence[pd.DataFrame], context: BillingContext) -> pd.DataFrame:
    """Per (cohort, segment): survivors at offsets 0 .. the cohort's last complete offset (a list,
    zeros included), the cohort's start and size."""
    spine = context.spine
    by = list(context.by)
    stacked = pd.concat(partials, ignore_index=True)
    if not len(stacked):
        return pd.DataFrame(columns=["cohort", *by, "cohort_customers", "survivors"])
    summed = stacked.groupby(["cohort_index", *by, "offset"], dropna=False, sort=True, observed=True)["survivors"].sum()
    last_complete = min(spine.as_of_index, spine.n) - 1
    rows = []
    for key, group in summed.groupby(level=["cohort_index", *by], dropna=False, sort=True, observed=True):
        key = key if isinstance(key, tuple) else (key,)
        cohort_index = int(key[0])
        counts = np.zeros(last_complete - cohort_index + 1)
        offsets = group.index.get_level_values("offset").to_numpy()
        counts[offsets] = group.to_numpy()
        rows.append((spine.starts[cohort_index], *key[1:], int(counts[0]), counts.astype(np.int64).tolist()))
    return pd.DataFrame(rows, columns=["cohort", *by, "cohort_customers", "survivors"])

"""Property tests of the revenue and customer families (hypothesis)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import csmetrics
from csmetrics.metrics import customers as customers_family
from csmetrics.metrics import revenue as revenue_family
from csmetrics.metrics._billing import prepare

BASE = pd.Timestamp("2024-01-01", tz="UTC")


@st.composite
def billing_tables(draw):
    rows = []
    for customer in range(1, draw(st.integers(1, 6)) + 1):
        for _ in range(draw(st.integers(0, 5))):
            start = BASE + pd.Timedelta(days=draw(st.integers(0, 150)))
            if draw(st.booleans()):
                end = start + pd.DateOffset(months=draw(st.sampled_from([1, 1, 2, 3, 12])))
            else:
                end = start + pd.Timedelta(days=draw(st.integers(1, 90)))
            rows.append({
                "customer_id": customer, "kind": "recurring",
                "amount": float(draw(st.sampled_from([-30, 10, 25, 50, 99.99, 1200]))),
                "service_start": start, "service_end": end, "invoiced_at": start,
                "plan": draw(st.sampled_from(["a", "b", None])),
            })  # fmt: skip
        for _ in range(draw(st.integers(0, 2))):
            rows.append({
                "customer_id": customer, "kind": draw(st.sampled_from(["one_time", "refund"])),
                "amount": float(draw(st.integers(1, 300))), "service_start": pd.NaT, "service_end": pd.NaT,
                "invoiced_at": BASE + pd.Timedelta(days=draw(st.integers(0, 200))), "plan": None,
            })  # fmt: skip
    if not rows:
        rows.append({"customer_id": 1, "kind": "recurring", "amount": 10.0, "service_start": BASE,
                     "service_end": BASE + pd.DateOffset(months=1), "invoiced_at": BASE, "plan": "a"})  # fmt: skip
    frame = pd.DataFrame(rows)
    as_of = BASE + pd.Timedelta(days=draw(st.integers(20, 260)), hours=draw(st.integers(0, 23)))
    return frame, as_of


def bridge_gap(wide: pd.DataFrame) -> float:
    if wide.empty:  # a segmented frame with no segment touched (e.g. only a discount line)
        return 0.0
    bridge = wide["mrr_start"] + wide["new_mrr"] + wide["reactivation_mrr"] + wide["expansion_mrr"] - wide["contraction_mrr"] - wide["churned_mrr"]
    return float((wide["mrr"] - bridge).abs().max())


def naive_mrr(billing: pd.DataFrame, as_of: pd.Timestamp, period_ends: list[pd.Timestamp]) -> list[float]:
    """MRR at each snapshot instant, line by line: an independent oracle."""
    recurring = billing[billing["kind"] == "recurring"]
    out = []
    for snapshot in period_ends:
        t = min(snapshot - pd.Timedelta(1, "ns"), as_of)
        per_customer: dict[int, float] = {}
        for line in recurring.itertuples():
            start, end = line.service_start, line.service_end
            if start > as_of:
                continue
            if not (start <= t and (end > as_of or t < end)):
                continue
            months = (end.year - start.year) * 12 + end.month - start.month
            if months >= 1 and start + pd.DateOffset(months=months) == end:
                monthly = line.amount / months
            else:
                monthly = line.amount * 30.4375 / ((end - start) / pd.Timedelta(days=1))
            per_customer[line.customer_id] = per_customer.get(line.customer_id, 0.0) + monthly
        out.append(sum(max(v, 0.0) for v in per_customer.values()))
    return out


SETTINGS = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@SETTINGS
@given(billing_tables(), st.sampled_from(["M", "W", "Q"]))
def test_property_bridge_and_continuity(table, freq):
    billing, as_of = table
    for by in (None, "plan"):
        wide = csmetrics.to_wide(csmetrics.revenue_metrics(billing, freq=freq, as_of=as_of, by=by))
        assert bridge_gap(wide) < 1e-6
    whole = csmetrics.to_wide(csmetrics.revenue_metrics(billing, freq=freq, as_of=as_of))
    np.testing.assert_allclose(whole["mrr_start"].iloc[1:], whole["mrr"].iloc[:-1], atol=1e-6)
    # segments add up to the whole for every additive metric
    by_plan = csmetrics.revenue_metrics(billing, freq=freq, as_of=as_of, by="plan")
    if by_plan.empty:
        return
    summed = csmetrics.reaggregate(by_plan).set_index(["period", "metric"])["value"]
    expect = csmetrics.revenue_metrics(billing, freq=freq, as_of=as_of).set_index(["period", "metric"])["value"]
    for metric in ("mrr", "mrr_start", "new_mrr", "churned_mrr", "one_time_revenue", "refunds"):
        np.testing.assert_allclose(summed.xs(metric, level="metric"), expect.xs(metric, level="metric"), atol=1e-6)


@SETTINGS
@given(billing_tables())
def test_property_mrr_matches_a_naive_oracle(table):
    billing, as_of = table
    frame = csmetrics.revenue_metrics(billing, as_of=as_of)
    mrr = frame[frame["metric"] == "mrr"]
    ends = [p + pd.DateOffset(months=1) for p in mrr["period"]]
    np.testing.assert_allclose(mrr["value"].to_numpy(), naive_mrr(billing, as_of, ends), atol=1e-3)


@SETTINGS
@given(billing_tables(), st.booleans())
def test_property_rates_in_range(table, count_new_churn):
    billing, as_of = table
    revenue = csmetrics.to_wide(csmetrics.revenue_metrics(billing, as_of=as_of))
    customers = csmetrics.customer_metrics(billing, as_of=as_of, count_new_churn=count_new_churn)
    wide = csmetrics.to_wide(customers)
    eps = 1e-12
    for column in ("grr", "revenue_churn_rate"):
        assert revenue[column].dropna().between(-eps, 1 + eps).all(), column
    assert (revenue["nrr"].dropna() >= -eps).all()
    rates = ["retention_rate", "renewal_rate", "repeat_purchase_rate"] + ([] if count_new_churn else ["logo_churn_rate"])
    for column in rates:
        assert wide[column].dropna().between(0, 1).all(), column
    assert not np.isinf(customers[["value", "numerator", "denominator"]].to_numpy()).any()
    wilson = customers[customers["metric"].isin(["retention_rate", "renewal_rate"]) & customers["value"].notna()]
    assert (wilson["ci_low"] <= wilson["value"] + eps).all() and (wilson["value"] <= wilson["ci_high"] + eps).all()


@SETTINGS
@given(billing_tables(), st.sampled_from([None, "plan"]), st.integers(0, 2**16))
def test_property_split_by_customer_recombines_exactly(table, by, seed):
    billing, as_of = table
    billing, context = prepare(csmetrics.validate(billing, "billing"), as_of=as_of, by=by)
    ids = billing["customer_id"].unique()
    half = set(np.random.default_rng(seed).permutation(ids)[: len(ids) // 2])
    left = billing[billing["customer_id"].isin(half)]
    right = billing[~billing["customer_id"].isin(half)]
    parts = [revenue_family.partial(part, context) for part in (left, right)]
    whole = revenue_family.combine([revenue_family.partial(billing, context)], context)
    split = revenue_family.combine(parts, context)
    for family in (revenue_family, customers_family):
        a, b = family.finalize(split, context), family.finalize(whole, context)
        pd.testing.assert_frame_equal(a, b, check_exact=False, rtol=1e-9, atol=1e-9)


def test_split_recombination_on_sample_data(sample_tables):
    valid = csmetrics.validate_tables({k: sample_tables[k] for k in ("billing", "fx", "customers")})[0]
    billing, context = prepare(valid["billing"], fx=valid["fx"], by=["plan", "region"], customers=valid["customers"])
    odd = billing["customer_id"] % 2 == 1
    split = revenue_family.combine([revenue_family.partial(billing[odd], context), revenue_family.partial(billing[~odd], context)], context)
    whole = revenue_family.combine([revenue_family.partial(billing, context)], context)
    pd.testing.assert_frame_equal(revenue_family.finalize(split, context), revenue_family.finalize(whole, context), rtol=1e-9)
    wide = csmetrics.to_wide(revenue_family.finalize(whole, context))
    assert bridge_gap(wide) < 1e-6
    assert wide["mrr"].sum() > 0
    pytest.importorskip("pyarrow")

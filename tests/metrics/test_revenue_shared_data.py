"""Revenue metrics on the external data sets, against numbers worked out by hand from the CSVs."""

from __future__ import annotations

import pytest

import csmetrics

from ..shared_data import flipstartup_billing, mrr_playbook_billing
from .helpers import values


def test_mrr_playbook_first_months_by_hand(shared_data):
    # 2017-09: customers 2 (25) and 3 (50) start. 2017-10: 3 ends (churn 50), 4 starts (25).
    # 2017-11: 2 and 4 end. 2017-12: nothing. 2018-01: 7 starts at 55. 2018-02: 7 goes to 70.
    billing = mrr_playbook_billing(shared_data)
    revenue = csmetrics.revenue_metrics(billing)
    mrr = values(revenue, "mrr")
    assert [mrr[m] for m in ("2017-09-01", "2017-10-01", "2017-11-01", "2017-12-01", "2018-01-01", "2018-02-01")] == [75, 50, 0, 0, 55, 70]
    assert values(revenue, "new_mrr")["2017-09-01"] == 75
    assert values(revenue, "new_mrr")["2017-10-01"] == 25
    assert values(revenue, "churned_mrr")["2017-10-01"] == 50
    assert values(revenue, "churned_mrr")["2017-11-01"] == 50
    assert values(revenue, "expansion_mrr")["2018-02-01"] == 15
    assert values(revenue, "nrr")["2017-10-01"] == pytest.approx(25 / 75)
    customers = csmetrics.customer_metrics(billing)
    assert values(customers, "customers_new")["2017-09-01"] == 2
    assert values(customers, "logo_churn_rate")["2017-10-01"] == 0.5
    assert values(customers, "customers_end")["2017-12-01"] == 0


def test_mrr_playbook_mrr_equals_sum_of_active_monthly_amounts(shared_data):
    """Every month: MRR = sum of monthly_amount over periods with start <= month < end."""
    import pandas as pd

    raw = pd.read_csv(shared_data / "mrr_playbook_subscription_periods.csv", parse_dates=["start_date", "end_date"])
    mrr = values(csmetrics.revenue_metrics(mrr_playbook_billing(shared_data)), "mrr")
    for month, value in mrr.items():
        m = pd.Timestamp(month)
        active = raw[(raw["start_date"] <= m) & (raw["end_date"] > m)]
        assert value == pytest.approx(active["monthly_amount"].sum()), month


def test_flipstartup_customers_by_hand(shared_data):
    billing, fx = flipstartup_billing(shared_data)
    valid, _ = csmetrics.validate(billing, "billing", quarantine=True, fx=csmetrics.validate(fx, "fx"))
    ledger = csmetrics.mrr_movements(valid, fx=fx)
    org = lambda name: ledger[ledger["customer_id"] == name]  # noqa: E731
    usd, gbp = 1 / 0.74, 1 / 0.52  # AUD per unit (flipStartup's own rates)

    # Organization 155: 1499 USD a year, renewed once on the same day, then gone
    o155 = org("Organization 155")
    assert o155["kind"].tolist() == ["new", "churn"]
    assert o155["amount"].tolist() == pytest.approx([1499 / 12 * usd, -1499 / 12 * usd], abs=1e-3)
    assert o155["instant"].dt.strftime("%Y-%m-%d").tolist() == ["2010-10-25", "2012-10-25"]

    # Organization 228: first year runs 367 days (day-based), the second exactly 12 months
    o228 = org("Organization 228")
    first = 999 * 30.4375 / 367 * gbp
    second = 999 / 12 * gbp
    assert o228["kind"].tolist() == ["new", "expansion", "churn"]
    assert o228["amount"].tolist() == pytest.approx([first, second - first, -second], abs=1e-3)

    # Organization 376: a second, larger contract ten days later; the first ends, the second
    # renews on the day (no movement) and ends 2015-01-03
    o376 = org("Organization 376")
    assert o376["kind"].tolist() == ["new", "expansion", "contraction", "churn"]
    assert o376["amount"].tolist() == pytest.approx(
        [2998 / 12 * usd, 8994 / 12 * usd, -2998 / 12 * usd, -8994 / 12 * usd], abs=1e-3
    )
    assert o376["instant"].dt.strftime("%Y-%m-%d").tolist() == ["2012-12-24", "2013-01-03", "2013-12-24", "2015-01-03"]


def test_flipstartup_bridge_holds_every_month(shared_data):
    billing, fx = flipstartup_billing(shared_data)
    valid, _ = csmetrics.validate(billing, "billing", quarantine=True, fx=csmetrics.validate(fx, "fx"))
    wide = csmetrics.to_wide(csmetrics.revenue_metrics(valid, fx=fx))
    bridge = wide["mrr_start"] + wide["new_mrr"] + wide["reactivation_mrr"] + wide["expansion_mrr"] - wide["contraction_mrr"] - wide["churned_mrr"]
    assert (wide["mrr"] - bridge).abs().max() < 1e-6
    assert (wide["mrr_start"].iloc[1:].to_numpy() - wide["mrr"].iloc[:-1].to_numpy()).max() < 1e-6

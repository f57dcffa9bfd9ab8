"""Revenue and customer metrics (METRICS.md §4-5): hand-worked scenarios."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

import csmetrics
from csmetrics.frame import to_wide

from .helpers import billing, line, purchase, values

JAN, FEB, MAR, APR = "2024-01-01", "2024-02-01", "2024-03-01", "2024-04-01"


def wide(frame):
    return to_wide(frame).set_index(to_wide(frame)["period"].dt.strftime("%Y-%m-%d"))


def test_new_then_same_instant_renewal_is_no_movement():
    b = billing(line(1, JAN, FEB, 100), line(1, FEB, MAR, 100))
    w = wide(csmetrics.revenue_metrics(b, as_of="2024-02-15"))
    assert w.loc[JAN, ["mrr", "new_mrr", "mrr_start"]].tolist() == [100, 100, 0]
    assert w.loc[FEB, ["mrr", "mrr_start", "new_mrr", "churned_mrr", "net_new_mrr", "nrr", "grr"]].tolist() == [100, 100, 0, 0, 0, 1, 1]
    assert w.loc[FEB, "arr"] == 1200
    assert len(csmetrics.mrr_movements(b, as_of="2024-02-15")) == 1  # only the new movement


def test_expansion_contraction_churn_reactivation():
    b = billing(
        line(1, JAN, FEB, 100), line(1, FEB, MAR, 150),  # expansion in Feb
        line(2, JAN, FEB, 100), line(2, FEB, MAR, 60),  # contraction in Feb
        line(3, JAN, FEB, 80),  # churn at Feb 1
        line(4, JAN, FEB, 30), line(4, MAR, APR, 45),  # churn Feb, reactivation Mar
    )
    w = wide(csmetrics.revenue_metrics(b, as_of="2024-03-20"))
    feb, mar = w.loc[FEB], w.loc[MAR]
    assert feb["mrr_start"] == 310 and feb["mrr"] == 210
    assert (feb["expansion_mrr"], feb["contraction_mrr"], feb["churned_mrr"]) == (50, 40, 110)
    assert feb["net_new_mrr"] == -100
    assert feb["nrr"] == pytest.approx(210 / 310)  # (310 + 50 - 40 - 110) / 310
    assert feb["grr"] == pytest.approx(160 / 310)  # (310 - 40 - 110) / 310
    assert feb["revenue_churn_rate"] == pytest.approx(110 / 310)
    assert feb["quick_ratio"] == pytest.approx(50 / 150)
    assert feb["arpu"] == pytest.approx(210 / 2)
    assert mar["reactivation_mrr"] == 45 and mar["new_mrr"] == 0
    # Mar: customers 1 and 2 end Mar 1 without renewal data... they churn at Mar 1
    assert mar["churned_mrr"] == 210 and mar["mrr"] == 45
    c = wide(csmetrics.customer_metrics(b, as_of="2024-03-20"))
    assert c.loc[FEB, ["customers_start", "customers_churned", "customers_end", "logo_churn_rate", "retention_rate"]].tolist() == [4, 2, 2, 0.5, 0.5]
    assert c.loc[MAR, ["customers_reactivated", "customers_churned", "customers_end"]].tolist() == [1, 2, 1]
    assert c.loc[JAN, "customers_new"] == 4


def test_annual_plan_discount_and_day_based_normalisation():
    b = billing(
        line(1, JAN, "2025-01-01", 1200),  # 12 calendar months -> 100
        line(2, JAN, APR, 300), line(2, JAN, APR, -60),  # 100 less a 20 discount
        line(3, JAN, "2024-01-31", 100),  # 30 days -> 100 * 30.4375 / 30
        line(4, "2024-01-31", "2024-02-29", 50),  # Jan 31 + 1 month is Feb 29 (clamped): 50
    )
    w = wide(csmetrics.revenue_metrics(b, as_of="2024-02-10"))
    assert w.loc[JAN, "new_mrr"] == pytest.approx(100 + 80 + 100 * 30.4375 / 30 + 50, abs=1e-4)
    assert w.loc[FEB, "mrr"] == pytest.approx(100 + 80 + 50)  # customer 3 churned at Jan 31
    assert w.loc[JAN, "churned_mrr"] == pytest.approx(100 * 30.4375 / 30, abs=1e-4)


def test_new_and_churned_in_one_period_under_both_policies():
    b = billing(
        line(1, "2023-12-01", JAN, 100), line(1, JAN, FEB, 100), line(1, FEB, MAR, 100),  # a steady customer
        line(2, "2024-01-05", "2024-01-20", 50),  # new and churned in January
    )
    default = wide(csmetrics.customer_metrics(b, as_of="2024-02-10"))
    assert default.loc[JAN, ["customers_start", "customers_new", "customers_churned", "customers_end"]].tolist() == [1, 1, 1, 1]
    assert default.loc[JAN, "logo_churn_rate"] == 1.0
    assert default.loc[JAN, "retention_rate"] == 1.0  # the start customer is still there
    strict = wide(csmetrics.customer_metrics(b, as_of="2024-02-10", count_new_churn=False))
    assert strict.loc[JAN, ["customers_churned", "logo_churn_rate"]].tolist() == [0, 0.0]
    r = wide(csmetrics.revenue_metrics(b, as_of="2024-02-10"))
    monthly = 50 * 30.4375 / 15
    assert r.loc[JAN, "new_mrr"] == pytest.approx(monthly, abs=1e-4)
    assert r.loc[JAN, "churned_mrr"] == pytest.approx(monthly, abs=1e-4)
    assert r.loc[JAN, "nrr"] == 1.0  # start customers only


def test_future_invoice_end_beyond_as_of_is_not_churn():
    b = billing(line(1, JAN, "2024-07-01", 600), line(2, JAN, "2024-07-01", 300))
    w = wide(csmetrics.revenue_metrics(b, as_of="2024-03-15"))
    assert list(w.index) == [JAN, FEB, MAR]  # no period after as_of
    assert w["mrr"].tolist() == [150, 150, 150]
    assert w["churned_mrr"].sum() == 0
    # with a later as_of the end at Jul 1 is known: churn in July
    later = wide(csmetrics.revenue_metrics(b, as_of="2024-07-15"))
    assert later.loc["2024-07-01", "churned_mrr"] == 150


def test_mixed_currency_converted_at_service_start():
    fx = pd.DataFrame({"currency": ["EUR", "EUR"], "date": ["2023-12-01", FEB], "rate": [1.1, 1.2]})
    b = billing(
        line(1, JAN, FEB, 100, currency="EUR"), line(1, FEB, MAR, 100, currency="EUR"),
        line(2, JAN, MAR, 200, currency="USD"),
        purchase(2, "2024-01-10", 50, currency="EUR"),
    )
    w = wide(csmetrics.revenue_metrics(b, fx=fx, as_of="2024-02-10"))
    assert w.loc[JAN, "mrr"] == pytest.approx(110 + 100)
    # the renewal at a new rate moves MRR (fx drift shows as expansion)
    assert w.loc[FEB, "expansion_mrr"] == pytest.approx(10)
    assert w.loc[JAN, "one_time_revenue"] == pytest.approx(55)
    with pytest.raises(csmetrics.ValidationError, match="mixed currencies need an fx table"):
        csmetrics.revenue_metrics(b)


def test_plan_change_moves_customer_across_segments_and_bridge_holds_in_each():
    b = billing(
        line(1, JAN, FEB, 50, plan="basic"), line(1, FEB, MAR, 200, plan="pro"),
        line(2, JAN, FEB, 50, plan="basic"), line(2, FEB, MAR, 50, plan="basic"),
    )
    frame = csmetrics.revenue_metrics(b, by="plan", as_of="2024-02-10")
    assert values(frame, "mrr", plan="basic") == {JAN: 100, FEB: 50}
    assert values(frame, "mrr", plan="pro") == {JAN: 0, FEB: 200}
    # customer 1 belongs to pro in February, so its start MRR is counted there
    assert values(frame, "mrr_start", plan="pro")[FEB] == 50
    assert values(frame, "expansion_mrr", plan="pro")[FEB] == 150
    assert values(frame, "mrr_start", plan="basic")[FEB] == 50
    w = to_wide(frame)
    bridge = w["mrr_start"] + w["new_mrr"] + w["reactivation_mrr"] + w["expansion_mrr"] - w["contraction_mrr"] - w["churned_mrr"]
    np.testing.assert_allclose(w["mrr"], bridge)


def test_static_segments_from_customers_and_null_segment():
    customers = pd.DataFrame({"customer_id": [1, 2], "region": ["EU", None]})
    b = billing(line(1, JAN, FEB, 10), line(2, JAN, FEB, 20), line(3, JAN, FEB, 40))
    frame = csmetrics.revenue_metrics(b, by=["region"], customers=customers, as_of="2024-01-15")
    assert values(frame, "mrr", region="EU") == {JAN: 10}
    assert values(frame, "mrr", region=None) == {JAN: 60}  # customer 2 (null) and 3 (unknown) together


def test_renewal_rate_with_grace_days():
    b = billing(
        line(1, JAN, FEB, 100), line(1, "2024-02-05", MAR, 100),  # renewed four days late
        line(2, JAN, FEB, 100), line(2, FEB, MAR, 100),  # renewed on time
        line(3, JAN, FEB, 100),  # not renewed
        line(4, JAN, FEB, -10),  # a discount line never makes a renewal
    )
    strict = wide(csmetrics.customer_metrics(b, as_of="2024-02-20"))
    assert strict.loc[FEB, ["renewal_rate"]].tolist() == [pytest.approx(1 / 3)]
    graced = wide(csmetrics.customer_metrics(b, as_of="2024-02-20", renewal_grace_days=7))
    assert graced.loc[FEB, "renewal_rate"] == pytest.approx(2 / 3)
    frame = csmetrics.customer_metrics(b, as_of="2024-02-20")
    assert values(frame, "renewal_rate", "denominator")[FEB] == 3
    assert np.isnan(values(frame, "renewal_rate")[JAN])  # nothing due in January


def test_repeat_purchase_rate_and_one_time_refunds():
    b = billing(
        line(9, JAN, "2025-01-01", 1200),
        purchase(1, "2024-01-01", 100), purchase(1, "2024-01-20", 40), purchase(1, "2024-03-30", 60),
        purchase(1, "2024-01-01", 10),  # same instant: the same purchase
        purchase(2, "2024-01-25", 80, kind="refund"), purchase(2, "2024-02-02", -30, kind="refund"),
    )
    c = csmetrics.customer_metrics(b, as_of="2024-04-10")
    assert values(c, "repeat_purchase_rate")[JAN] == 0.5  # Jan 1 repeated, Jan 20 not
    assert values(c, "repeat_purchase_rate", "denominator")[JAN] == 2
    assert math.isnan(values(c, "repeat_purchase_rate")[MAR])  # Mar 30's window is still open
    r = csmetrics.revenue_metrics(b, as_of="2024-04-10")
    assert values(r, "one_time_revenue")[JAN] == 150
    assert values(r, "refunds") == {JAN: 80, FEB: 30, MAR: 0, APR: 0}


def test_empty_period_in_the_middle_appears_with_zeros():
    b = billing(line(1, JAN, FEB, 100), line(2, APR, "2024-05-01", 50))
    w = wide(csmetrics.revenue_metrics(b, as_of="2024-04-15"))
    assert list(w.index) == [JAN, FEB, MAR, APR]
    assert w.loc[MAR, ["mrr", "new_mrr", "churned_mrr"]].tolist() == [0, 0, 0]
    assert np.isnan(w.loc[MAR, "nrr"]) and np.isnan(w.loc[MAR, "arpu"])


def test_time_zone_moves_a_start_into_the_next_month():
    b = billing(line(1, "2024-01-31 23:30", "2024-03-31 23:30", 200))
    utc = csmetrics.revenue_metrics(b, as_of="2024-02-10")
    assert values(utc, "new_mrr")[JAN] == 100
    berlin = csmetrics.revenue_metrics(b, as_of="2024-02-10", tz="Europe/Berlin")
    assert values(berlin, "new_mrr") == {FEB: 100}


def test_movement_ledger_traces_the_numbers():
    b = billing(line(1, JAN, FEB, 100, plan="a"), line(1, FEB, MAR, 150, plan="b"), line(2, JAN, "2024-01-15", 60, plan="a"))
    ledger = csmetrics.mrr_movements(b, as_of="2024-03-10", by="plan")
    assert ledger["kind"].tolist() == ["new", "expansion", "churn", "new", "churn"]
    assert ledger["amount"].tolist() == pytest.approx([100, 50, -150, 60 * 30.4375 / 14, -60 * 30.4375 / 14])
    assert ledger["plan"].tolist() == ["a", "b", "b", "a", "a"]
    assert list(ledger.columns) == ["customer_id", "instant", "period", "kind", "amount", "mrr_before", "mrr_after", "plan"]
    frame = csmetrics.revenue_metrics(b, as_of="2024-03-10")
    assert ledger["amount"].sum() == pytest.approx(sum(values(frame, "net_new_mrr").values()))


def test_cohort_table_by_hand():
    b = billing(
        line(1, JAN, FEB, 100), line(1, FEB, MAR, 100), line(1, MAR, APR, 120),
        line(2, JAN, FEB, 50),
        line(3, FEB, MAR, 10), line(3, MAR, APR, 10),
    )
    table = csmetrics.cohort_table(b, as_of="2024-03-10")
    jan = table[table["cohort"] == pd.Timestamp(JAN, tz="UTC")].set_index("periods_since_start")
    assert jan["cohort_customers"].tolist() == [2, 2, 2]
    assert jan["customers_active"].tolist() == [2, 1, 1]
    assert jan["logo_retention"].tolist() == [1.0, 0.5, 0.5]
    assert jan["mrr"].tolist() == [150, 100, 120]
    assert jan["revenue_retention"].tolist() == pytest.approx([1.0, 100 / 150, 120 / 150])
    feb = table[table["cohort"] == pd.Timestamp(FEB, tz="UTC")]
    assert feb["customers_active"].tolist() == [1, 1]


def test_accessor_checks_columns():
    b = billing(line(1, JAN, FEB, 100))
    pd.testing.assert_frame_equal(b.cs.revenue_metrics(as_of=JAN), csmetrics.revenue_metrics(b, as_of=JAN))
    with pytest.raises(AttributeError, match="not a billing table"):
        pd.DataFrame({"x": [1]}).cs.revenue_metrics()


def test_unknown_policy_is_an_error():
    with pytest.raises(TypeError, match="unknown policy"):
        csmetrics.revenue_metrics(billing(line(1, JAN, FEB, 100)), count_new_churns=False)


def test_vendor_conventions_worked_by_hand():
    """ChartMogul's gross and net MRR churn, Baremetrics' net revenue churn and the average sale price
    (§12) on a February worked by hand: at the start A 100, B 200, C 50 (E churned in January)."""
    lines = [
        (1, "2024-01-01", "2024-02-01", 100.0), (1, "2024-02-01", "2024-03-01", 150.0),  # A: expansion +50
        (2, "2024-01-01", "2024-02-01", 200.0), (2, "2024-02-01", "2024-03-01", 150.0),  # B: contraction 50
        (3, "2024-01-01", "2024-02-01", 50.0),  # C: churns 50 at February's start
        (4, "2024-02-01", "2024-03-01", 80.0),  # D: new 80
        (5, "2023-12-01", "2024-01-01", 40.0), (5, "2024-02-01", "2024-03-01", 40.0),  # E: reactivation 40
    ]  # fmt: skip
    billing = pd.DataFrame(lines, columns=["customer_id", "service_start", "service_end", "amount"]).assign(kind="recurring")
    frame = csmetrics.revenue_metrics(billing, as_of="2024-02-15")
    feb = frame[frame["period"] == pd.Timestamp("2024-02-01", tz="UTC")].set_index("metric")["value"]
    assert feb["mrr_start"] == 350.0
    assert feb["gross_mrr_churn_rate"] == pytest.approx((50 + 50) / 350)
    assert feb["net_mrr_churn_rate"] == pytest.approx((50 + 50 - 50 - 40) / 350)
    assert feb["net_revenue_churn_rate"] == pytest.approx((50 + 50 - 50) / 350)
    assert feb["asp"] == 80.0
    expanding = csmetrics.revenue_metrics(billing.assign(amount=billing["amount"] * [1, 3, 1, 1, 1, 1, 1, 1]), as_of="2024-02-15")
    march = expanding[expanding["period"] == pd.Timestamp("2024-02-01", tz="UTC")].set_index("metric")["value"]
    assert march["net_mrr_churn_rate"] < 0  # expansion larger than the losses: negative net churn

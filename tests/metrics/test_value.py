"""Value and cost metrics (METRICS.md §9)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

import csmetrics

from .helpers import billing, line, purchase, values


def month(i: int) -> str:
    return str(pd.Timestamp("2024-01-01") + pd.DateOffset(months=i))[:10]


def steady_book():
    """Ten customers at 100 a month; each month one leaves and a new one joins: churn 0.1, ARPU 100."""
    rows = []
    for c in range(10):  # customer c leaves at the start of month c + 1 (month 0 is January)
        rows.append(line(c, month(0), month(c + 1), 100 * (c + 1)))
    for c in range(10, 16):  # replacements join when one leaves and stay
        rows.append(line(c, month(c - 9), month(12), 100 * (12 - (c - 9))))
    return billing(*rows)


def test_seed_worked_example_clv_purchase():
    b = billing(*(purchase(1, f"2024-01-{d:02d}", 50) for d in (5, 15, 25)))
    frame = csmetrics.value_metrics(b, lifespan_months=24)
    assert values(frame, "clv_purchase") == {"2024-01-01": 3600.0}  # $50 x 3 a month x 24 months


def test_clv_from_fixed_arpu_and_churn():
    frame = csmetrics.value_metrics(steady_book(), as_of="2024-06-15")
    customers = csmetrics.customer_metrics(steady_book(), as_of="2024-06-15")
    # months Feb..Jun: 10 at the start, one churns, one joins: churn 0.1 each month, ARPU 100
    assert values(customers, "logo_churn_rate")["2024-03-01"] == pytest.approx(0.1)
    assert values(csmetrics.revenue_metrics(steady_book(), as_of="2024-06-15"), "arpu")["2024-03-01"] == pytest.approx(100)
    # January's churn rate is undefined (no start customers): skipped in the trailing mean
    assert values(frame, "clv")["2024-03-01"] == pytest.approx(100 / 0.1)
    margin = csmetrics.value_metrics(steady_book(), as_of="2024-06-15", gross_margin=0.8)
    assert values(margin, "clv")["2024-03-01"] == pytest.approx(800)
    # lifespan 1 / 0.1 = 10 months. Each line is invoiced once, up front: March's only invoice is
    # customer 11's ten-month contract (1000), one purchase by one paying customer
    assert values(frame, "clv_purchase")["2024-03-01"] == pytest.approx(1000 * 1 * 10)


def costs_table():
    return pd.DataFrame(
        {
            "incurred_at": ["2024-03-05", "2024-03-06", "2024-03-07", "2024-03-08", "2024-03-09"],
            "category": ["support", "customer_success", "marketing", "capex", "sales"],
            "amount": [300.0, 200.0, 400.0, 5000.0, 100.0],
        }
    )


def test_crc_cac_ltv_cac_and_clv_per_capex():
    frame = csmetrics.value_metrics(steady_book(), costs=costs_table(), as_of="2024-06-15")
    march = {m: values(frame, m)["2024-03-01"] for m in ("clv", "crc", "cac", "ltv_cac", "clv_per_capex")}
    assert march["crc"] == pytest.approx((300 + 200) / 10)  # retention costs / customers_end
    assert march["cac"] == pytest.approx((400 + 100) / 1)  # acquisition costs / customers_new
    assert march["ltv_cac"] == pytest.approx(1000 / 500)
    assert march["clv_per_capex"] == pytest.approx(1000 * 10 / 5000)
    assert values(frame, "cac")["2024-04-01"] == 0  # no acquisition cost in April, one new customer
    custom = csmetrics.value_metrics(steady_book(), costs=costs_table(), as_of="2024-06-15",
                                     cost_roles={"acquisition": ["marketing"], "retention": ["support"]})  # fmt: skip
    assert values(custom, "cac")["2024-03-01"] == pytest.approx(400)
    assert values(custom, "crc")["2024-03-01"] == pytest.approx(30)
    with pytest.raises(KeyError, match="unknown cost role"):
        csmetrics.value_metrics(steady_book(), costs=costs_table(), cost_roles={"growth": ["sales"]})


def test_mean_churn_of_zero_gives_nan_not_inf():
    b = billing(line(1, "2024-01-01", "2025-01-01", 1200))
    frame = csmetrics.value_metrics(b, as_of="2024-05-01")
    assert np.isnan(list(values(frame, "clv").values())).all()
    assert not np.isinf(frame["value"].to_numpy()).any()


def test_ltv_trailing6_worked_by_hand():
    """ChartMogul's LTV (§12): ARPU / the mean logo churn of the 6 months before the period's month."""
    months = pd.date_range("2024-01-01", periods=9, freq="MS", tz="UTC")
    # 10 customers; one churns at the end of each of January..June (churn 1/10, 1/9, ..., 1/5), none after
    rows = []
    for customer in range(10):
        last = customer + 1 if customer < 6 else 9  # customers 0..5 stop after month 0..5
        for m in range(last):
            rows.append((customer, months[m], months[m] + pd.offsets.MonthBegin(1), 100.0))
    billing = pd.DataFrame(rows, columns=["customer_id", "service_start", "service_end", "amount"]).assign(kind="recurring")
    frame = csmetrics.value_metrics(billing, as_of="2024-09-15")
    ltv = frame[frame["metric"] == "ltv_trailing6"].set_index("period")["value"]
    churn = csmetrics.customer_metrics(billing, as_of="2024-09-15")
    rates = churn[churn["metric"] == "logo_churn_rate"].set_index("period")["value"]
    # July: the six months January..June; January's churn is undefined (no customers at its start)
    assert np.isnan(ltv[months[6]])
    # August: February..July, all defined
    expected_mean = rates[months[1]:months[6]].mean()
    assert len(rates[months[1]:months[6]]) == 6 and expected_mean > 0
    arpu = 100.0  # every active customer pays 100 a month
    assert ltv[months[7]] == pytest.approx(arpu / expected_mean)

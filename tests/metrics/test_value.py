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

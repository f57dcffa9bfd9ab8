"""Open-ended subscriptions (METRICS.md §17): interval_months lines, by hand and on RavenStack."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

import csmetrics
from csmetrics.validate import ValidationError

from ..shared_data import ravenstack_tables
from .helpers import values


def lines(*rows):
    """(customer, start, end or None, amount, interval_months or None[, currency])"""
    out = []
    for row in rows:
        customer, start, end, amount, interval, *rest = row
        line = {"customer_id": customer, "kind": "recurring", "amount": float(amount), "service_start": start,
                "service_end": end, "interval_months": interval}  # fmt: skip
        if rest:
            line["currency"] = rest[0]
        out.append(line)
    return pd.DataFrame(out)


def test_an_open_ended_line_runs_until_as_of_and_renews_at_each_interval():
    table = lines((1, "2024-01-15", None, 50, 1), (2, "2023-03-01", None, 1200, 12))
    revenue = csmetrics.revenue_metrics(table, as_of="2024-07-20")
    mrr = values(revenue, "mrr")
    assert mrr["2023-03-01"] == 100 and mrr["2024-01-01"] == 150 and mrr["2024-07-01"] == 150
    assert set(values(revenue, "churned_mrr").values()) == {0}  # no end: no churn before as_of
    customers = csmetrics.customer_metrics(table, as_of="2024-07-20")
    # customer 1 renews on the 15th of Feb..Jul (6), customer 2 on 2024-03-01 (1): all renewed
    assert sum(values(customers, "renewal_rate", "denominator").values()) == 7
    assert set(v for v in values(customers, "renewal_rate").values() if not np.isnan(v)) == {1.0}


def test_the_monthly_amount_is_the_interval_price_whatever_the_end():
    # cancelled mid-interval: 1200 a year is 100 a month until the cancellation's effective instant
    table = lines((1, "2024-01-01", "2024-06-15", 1200, 12), (2, "2024-01-15", "2024-03-15", 50, 1))
    revenue = csmetrics.revenue_metrics(table, as_of="2024-07-20")
    assert values(revenue, "mrr")["2024-05-01"] == 100 and values(revenue, "mrr")["2024-06-01"] == 0
    assert values(revenue, "churned_mrr")["2024-06-01"] == 100 and values(revenue, "churned_mrr")["2024-03-01"] == 50
    customers = csmetrics.customer_metrics(table, as_of="2024-07-20")
    due = values(customers, "renewal_rate", "denominator")
    # customer 2: Feb 15 renewed, Mar 15 due and not renewed; customer 1's cancellation on Jun 15 is due too
    assert due["2024-02-01"] == 1 and due["2024-03-01"] == 1 and due["2024-06-01"] == 1
    assert values(customers, "renewal_rate")["2024-02-01"] == 1 and values(customers, "renewal_rate")["2024-03-01"] == 0


def test_line_mode_takes_the_rate_of_each_interval_start_and_spot_mode_books_fx():
    table = lines((1, "2024-01-01", None, 100, 1, "EUR"), (2, "2024-01-01", None, 10, 1, "USD"))
    fx = pd.DataFrame({"currency": "EUR", "date": ["2024-01-01", "2024-02-10"], "rate": [1.10, 1.20]})
    line_mode = csmetrics.revenue_metrics(table, fx=fx, base_currency="USD", as_of="2024-03-20")
    assert values(line_mode, "mrr") == pytest.approx({"2024-01-01": 120, "2024-02-01": 120, "2024-03-01": 130})
    assert values(line_mode, "expansion_mrr")["2024-03-01"] == pytest.approx(10)  # the March interval at 1.20
    spot = csmetrics.revenue_metrics(table, fx=fx, base_currency="USD", as_of="2024-03-20", fx_mode="spot")
    assert values(spot, "fx_effect_mrr")["2024-02-01"] == pytest.approx(10)
    assert set(values(spot, "expansion_mrr").values()) == {0}


def test_renewal_calendar_takes_the_next_interval_boundary():
    table = lines((1, "2024-01-15", None, 50, 1), (2, "2023-09-01", None, 1200, 12), (3, "2024-01-01", "2024-08-10", 600, 6))
    calendar = csmetrics.renewal_calendar(table, as_of="2024-07-20", horizon_days=60)
    got = [(r.customer_id, r.end.strftime("%Y-%m-%d"), r.mrr_up_for_renewal) for r in calendar.itertuples()]
    # 1: next boundary Aug 15; 2: Sep 1 (annual); 3: cancelled Aug 10, before its Jul 1 + 6 months boundary
    assert got == [(3, "2024-08-10", 100.0), (1, "2024-08-15", 50.0), (2, "2024-09-01", 100.0)]


def test_a_null_end_needs_an_interval_and_the_error_says_how_to_fix_it():
    table = lines((1, "2024-01-01", None, 50, None))
    with pytest.raises(ValidationError, match=r"service_end.*required when kind is recurring \(or give interval_months"):
        csmetrics.revenue_metrics(table)
    for bad in (0.0, 1.5, -3.0):
        with pytest.raises(ValidationError, match="interval_months"):
            csmetrics.revenue_metrics(lines((1, "2024-01-01", None, 50, bad)))


def test_open_ended_lines_on_dask_equal_pandas():
    dd = pytest.importorskip("dask.dataframe")
    table = lines(*[(c, f"2024-0{1 + c % 6}-1{c % 9}", None if c % 3 else "2024-09-01", 10 * c, 1 + (c % 2) * 11) for c in range(1, 40)])
    expected = csmetrics.revenue_metrics(table, as_of="2024-10-20")
    got = csmetrics.revenue_metrics(dd.from_pandas(table, npartitions=3), as_of="2024-10-20")
    pd.testing.assert_frame_equal(got.reset_index(drop=True), expected.reset_index(drop=True))
    pd.testing.assert_frame_equal(
        csmetrics.renewal_calendar(dd.from_pandas(table, npartitions=3), as_of="2024-10-20"),
        csmetrics.renewal_calendar(table, as_of="2024-10-20"),
    )


def test_ravenstack_maps_with_open_ended_subscriptions_and_its_mrr_is_the_hand_computation(shared_data):
    tables = ravenstack_tables(shared_data, open_ended=True)
    valid, rejected = csmetrics.validate(tables["billing"], "billing", quarantine=True)
    # only the 13 subscriptions ending before they start are set aside now
    assert set(rejected["reason"]) == {"service_end: after service_start"}
    as_of = pd.Timestamp("2024-12-31", tz="UTC")
    revenue = csmetrics.revenue_metrics(valid, as_of=as_of, validated=True)
    subs = pd.read_csv(shared_data / "ravenstack" / "ravenstack_subscriptions.csv")
    start = pd.to_datetime(subs["start_date"], utc=True)
    end = pd.to_datetime(subs["end_date"], utc=True)
    subs = subs[~(end <= start)]
    for month in ("2023-06-01", "2024-01-01", "2024-06-01", "2024-11-01"):
        t = min(pd.Timestamp(month, tz="UTC") + pd.DateOffset(months=1) - pd.Timedelta(1, "ns"), as_of)
        s, e = pd.to_datetime(subs["start_date"], utc=True), pd.to_datetime(subs["end_date"], utc=True)
        active = (s <= t) & (e.isna() | (e > t) | (e > as_of))
        by_hand = subs[active].groupby("account_id")["mrr_amount"].sum().clip(lower=0).sum()
        assert values(revenue, "mrr")[month] == pytest.approx(by_hand), month


def test_each_interval_is_an_invoice_for_engagement_purchases_and_segments_follow_the_line():
    # found by the RavenStack report: the purchase metrics must map every interval back to its billing row
    table = lines((1, "2024-01-15", None, 50, 1), (2, "2024-02-01", "2024-03-01", 30, None))
    events = pd.DataFrame({"customer_id": [1, 2], "event": "login", "timestamp": ["2024-01-20", "2024-02-03"]})
    customers = pd.DataFrame({"customer_id": [1, 2], "plan": ["a", "b"]})
    frame = csmetrics.engagement_metrics(events, billing=table, as_of="2024-04-20", by="plan", customers=customers)
    invoices = frame[frame["metric"] == "purchase_frequency"].groupby("plan")["numerator"].sum().to_dict()
    assert invoices == {"a": 4, "b": 1}  # Jan 15, Feb 15, Mar 15, Apr 15; one fixed line
    ravenstack_like = csmetrics.report({"billing": table, "events": events}, as_of="2024-04-20", html=False)
    assert len(ravenstack_like.metrics)


def test_ravenstack_open_ended_report_runs(shared_data):
    result = csmetrics.report(ravenstack_tables(shared_data, open_ended=True), quarantine=True, html=False)
    assert result.manifest["inputs"]["billing"]["rows_rejected"] == 13

"""Renewals ahead (METRICS.md §12): renewal_calendar and the report's renewals outputs, by hand."""

from __future__ import annotations

import pandas as pd
import pytest

import csmetrics
from csmetrics.options import ConfigError

AS_OF = "2024-06-15"


def line(customer, start, end, amount, invoiced=None, **extra):
    return {
        "customer_id": customer,
        "kind": "recurring",
        "amount": float(amount),
        "service_start": start,
        "service_end": end,
        "invoiced_at": invoiced or start,
        **extra,
    }


def calendar(rows, **kwargs):
    kwargs.setdefault("as_of", AS_OF)
    frame = csmetrics.renewal_calendar(pd.DataFrame(rows), **kwargs)
    return [(r.customer_id, r.end.strftime("%Y-%m-%d"), round(r.mrr_up_for_renewal, 4)) for r in frame.itertuples()]


def test_what_ends_in_the_horizon_without_a_known_renewal():
    rows = [
        line(1, "2023-08-01", "2024-08-01", 1200),  # annual, ends Aug 1: 100 a month up for renewal
        line(2, "2024-06-01", "2024-07-01", 50),  # monthly, renewal already invoiced (below): not listed
        line(2, "2024-07-01", "2024-08-01", 50, invoiced="2024-06-10"),  # ...but its own end is up
        line(3, "2024-06-01", "2024-07-01", 80),  # renewal invoiced after as_of: not known, listed
        line(3, "2024-07-01", "2024-08-01", 80, invoiced="2024-06-20"),
        line(4, "2024-01-01", "2025-01-01", 2400),  # ends after the horizon (Sep 13)
        line(5, "2024-01-01", "2024-06-01", 500),  # ended before as_of: history, not ahead
    ]
    assert calendar(rows) == [(3, "2024-07-01", 80.0), (1, "2024-08-01", 100.0), (2, "2024-08-01", 50.0)]


def test_horizon_bounds_and_simultaneous_lines():
    rows = [
        line(1, "2024-05-15", "2024-06-15", 10),  # ends at as_of: not ahead
        line(2, "2024-06-13", "2024-07-13", 20),  # ends at exactly as_of + 28 days: inside
        line(3, "2024-06-14", "2024-07-14", 30),  # one day later: outside a 28-day horizon
        line(4, "2024-06-01", "2024-07-01", 40),  # two lines of one customer ending together add up
        line(4, "2024-06-01", "2024-07-01", 5),
        line(5, "2024-06-01", "2024-07-01", 60),  # a line ends while another runs on: MRR stays > 0
        line(5, "2024-01-01", "2025-01-01", 120),
    ]
    assert calendar(rows, horizon_days=28) == [(4, "2024-07-01", 45.0), (2, "2024-07-13", 20.0)]


def test_renewal_grace_days_cover_a_renewal_that_starts_late():
    rows = [line(1, "2024-06-01", "2024-07-01", 90), line(1, "2024-07-04", "2024-08-04", 90, invoiced="2024-06-14")]
    assert calendar(rows, horizon_days=30) == [(1, "2024-07-01", 90.0)]
    assert calendar(rows, horizon_days=30, renewal_grace_days=5) == []
    # a discount that cancels the renewal's MRR is not a renewal
    rows.append(line(1, "2024-07-04", "2024-08-04", -90, invoiced="2024-06-14"))
    assert calendar(rows, horizon_days=30, renewal_grace_days=5) == [(1, "2024-07-01", 90.0)]


def test_fx_modes_value_the_ending_lines():
    rows = [line(1, "2024-01-01", "2024-07-01", 600, currency="EUR"), line(2, "2024-06-01", "2024-07-01", 70, currency="USD")]
    fx = pd.DataFrame({"currency": "EUR", "date": ["2024-01-01", "2024-06-01", "2024-07-01"], "rate": [1.10, 1.20, 1.50]})
    # line mode: the rate of the line's start (1.10); spot: the latest rate by as_of (1.20), never a later one
    assert calendar(rows, fx=fx, base_currency="USD") == [(1, "2024-07-01", 110.0), (2, "2024-07-01", 70.0)]
    assert calendar(rows, fx=fx, base_currency="USD", fx_mode="spot") == [(1, "2024-07-01", 120.0), (2, "2024-07-01", 70.0)]


def test_segments_plan_and_customer_attributes():
    rows = [
        line(1, "2024-06-01", "2024-07-01", 30, plan="basic"),
        line(1, "2024-06-01", "2024-07-01", 70, plan="pro"),
        line(2, "2024-06-01", "2024-07-01", 10, plan="basic"),
    ]
    customers = pd.DataFrame({"customer_id": [1, 2], "region": ["EU", "NA"]})
    frame = csmetrics.renewal_calendar(pd.DataFrame(rows), as_of=AS_OF, by=["plan", "region"], customers=customers)
    assert frame[["customer_id", "plan", "region", "mrr_up_for_renewal"]].to_numpy().tolist() == [
        [1, "pro", "EU", 100.0],
        [2, "basic", "NA", 10.0],
    ]
    assert pd.DataFrame(rows).cs.renewal_calendar(as_of=AS_OF).equals(csmetrics.renewal_calendar(pd.DataFrame(rows), as_of=AS_OF))


@pytest.mark.parametrize("horizon", [0, -5, float("nan"), "90", True])
def test_horizon_is_checked(horizon):
    with pytest.raises(ConfigError, match="horizon_days"):
        csmetrics.renewal_calendar(pd.DataFrame([line(1, "2024-06-01", "2024-07-01", 10)]), horizon_days=horizon)


def test_report_writes_renewals_per_period_and_the_calendar_with_health_and_answers(tmp_path):
    billing = pd.DataFrame(
        [
            line("a", "2023-07-01", "2024-07-01", 1200),
            line("b", "2024-06-01", "2024-07-01", 30),
            line("c", "2024-05-20", "2024-08-20", 300),
            line("d", "2024-01-01", "2024-06-01", 99),  # churned before as_of
        ]
    )
    surveys = pd.DataFrame(
        {
            "response_id": [1, 2, 3],
            "customer_id": ["a", "a", "c"],
            "survey": ["nps", "csat", "nps"],
            "score": [3.0, 5.0, 9.0],
            "responded_at": pd.to_datetime(["2024-05-01", "2024-06-01", "2024-06-02"], utc=True),
            "scale_min": [0.0, 1.0, 0.0],
            "scale_max": [10.0, 5.0, 10.0],
        }
    )
    result = csmetrics.report({"billing": billing, "surveys": surveys}, as_of=AS_OF, html=False)
    periods = result.renewals
    assert periods["period"].dt.strftime("%Y-%m").tolist() == ["2024-06", "2024-07", "2024-08", "2024-09"]
    assert periods["mrr_up_for_renewal"].tolist() == [0.0, 130.0, 100.0, 0.0]
    assert periods["renewals_upcoming"].tolist() == [0, 2, 1, 0]
    cal = result.renewal_calendar
    assert cal["customer_id"].tolist() == ["a", "b", "c"]
    # a's latest answer is its CSAT of June 1 (the later one); b never answered
    assert cal["latest_survey"].tolist()[0] == "csat" and cal["latest_score"].tolist()[0] == 5.0
    assert cal["latest_survey"].isna().tolist() == [False, True, False]
    assert cal["health_band"].notna().all() and cal["health_period"].dt.strftime("%Y-%m").unique().tolist() == ["2024-06"]
    out = result.write(tmp_path / "out")
    written = pd.read_parquet(out / "renewals.parquet")
    assert list(written.columns) == ["period", "freq", "mrr_up_for_renewal", "renewals_upcoming"]
    assert len(pd.read_parquet(out / "renewal_calendar.parquet")) == 3
    assert result.manifest["outputs"]["renewal_calendar"]["rows"] == 3

"""Support metrics (METRICS.md §6): hand-worked cases, edge cases, properties."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import csmetrics
from csmetrics.metrics import support as support_family

from .helpers import values

JAN, FEB, MAR = "2024-01-01", "2024-02-01", "2024-03-01"


def ticket(i, created, *, customer=1, channel="email", priority="normal", responded=None, resolved=None,
           contacts=1, handle=None, wait=None, abandoned=False, reopens=0):  # fmt: skip
    return {"ticket_id": i, "customer_id": customer, "created_at": created, "channel": channel, "priority": priority,
            "first_response_at": responded, "resolved_at": resolved, "contacts": contacts, "handle_seconds": handle,
            "wait_seconds": wait, "abandoned": abandoned, "reopens": reopens}  # fmt: skip


def test_seed_example_fcr():
    tickets = pd.DataFrame([ticket(i, "2024-01-05", resolved="2024-01-06", contacts=1 if i < 78 else 2) for i in range(100)])
    assert values(csmetrics.support_metrics(tickets), "fcr_rate") == {JAN: 0.78}


def hand_tickets():
    return pd.DataFrame(
        [
            # January, email
            ticket(1, "2024-01-02 09:00", responded="2024-01-02 09:10", resolved="2024-01-02 11:00", handle=300, wait=0),
            ticket(2, "2024-01-03 09:00", responded="2024-01-03 09:30", resolved="2024-01-05 09:00", contacts=2, handle=600, wait=0),
            ticket(3, "2024-01-04 09:00", responded="2024-01-04 10:00", resolved="2024-01-04 12:00", reopens=1, handle=900, wait=0),
            ticket(4, "2024-01-20 09:00", customer=2),  # never answered, never resolved
            # January, phone
            ticket(5, "2024-01-10 09:00", channel="phone", abandoned=True, wait=120, handle=None, customer=2),
            ticket(6, "2024-01-11 09:00", channel="phone", responded="2024-01-11 09:02", resolved="2024-02-02 09:00", handle=200, wait=60, customer=3),
            # March, email (February has no tickets)
            ticket(7, "2024-03-01 09:00", responded="2024-03-01 09:05", resolved="2024-03-01 10:00", handle=100, wait=0),
        ]
    )


def test_hand_worked_month():
    frame = csmetrics.support_metrics(hand_tickets(), as_of="2024-03-10")
    jan = {m: values(frame, m)[JAN] for m in frame["metric"].unique()}
    assert jan["tickets"] == 6
    assert jan["fcr_rate"] == pytest.approx(2 / 6)  # tickets 1 and 6 (2 has two contacts, 3 was reopened)
    assert jan["aht_seconds"] == pytest.approx((300 + 600 + 900 + 200) / 4)  # the abandoned call is out
    assert jan["avg_wait_seconds"] == pytest.approx((0 + 0 + 0 + 60) / 4)  # ticket 4 has no wait, 5 is abandoned
    assert jan["abandonment_rate"] == pytest.approx(1 / 6)
    # responses in minutes: 10, 30, 60, 2 (ticket 4 never answered: excluded, not zero)
    assert jan["first_response_minutes_p50"] == pytest.approx(np.quantile([10, 30, 60, 2], 0.5))
    assert jan["first_response_minutes_p90"] == pytest.approx(np.quantile([10, 30, 60, 2], 0.9))
    # resolutions in hours: 2, 48, 3, 528
    assert jan["resolution_hours_p50"] == pytest.approx(np.quantile([2, 48, 3, 528], 0.5))
    assert jan["reopen_rate"] == pytest.approx(1 / 4)
    # backlog at Jan's end: ticket 4 (never resolved) and 6 (resolved Feb 2); 5 abandoned is not backlog
    assert jan["backlog"] == 2
    assert jan["tickets_per_customer"] == pytest.approx(6 / 3)
    assert values(frame, "backlog") == {JAN: 2, FEB: 1, MAR: 1}


def test_empty_period_gives_zero_counts_and_nan_rates():
    frame = csmetrics.support_metrics(hand_tickets(), as_of="2024-03-10")
    feb = frame[frame["period"] == pd.Timestamp(FEB, tz="UTC")].set_index("metric")
    assert feb.loc["tickets", "value"] == 0
    for metric in ("fcr_rate", "aht_seconds", "abandonment_rate", "first_response_minutes_p50", "reopen_rate", "tickets_per_customer"):
        assert np.isnan(feb.loc[metric, "value"]), metric
    assert not np.isinf(frame[["value", "numerator", "denominator", "ci_low", "ci_high"]].to_numpy()).any()


def test_all_abandoned_period():
    tickets = pd.DataFrame([ticket(i, "2024-01-05", channel="phone", abandoned=True, wait=30) for i in range(3)])
    frame = csmetrics.support_metrics(tickets)
    assert values(frame, "abandonment_rate") == {JAN: 1.0}
    assert np.isnan(values(frame, "aht_seconds")[JAN]) and np.isnan(values(frame, "avg_wait_seconds")[JAN])
    assert values(frame, "backlog") == {JAN: 0}


def test_segments_by_channel_and_customer_attribute():
    customers = pd.DataFrame({"customer_id": [1, 2], "region": ["EU", "NA"]})
    frame = csmetrics.support_metrics(hand_tickets(), by=["channel"], as_of="2024-03-10")
    assert values(frame, "tickets", channel="phone") == {JAN: 2, FEB: 0, MAR: 0}
    regional = csmetrics.support_metrics(hand_tickets(), by="region", customers=customers, as_of="2024-03-10")
    assert values(regional, "tickets", region="NA")[JAN] == 2
    assert values(regional, "tickets", region=None)[JAN] == 1  # customer 3 is not in the customers table


def test_sla_by_priority_target():
    tickets = pd.DataFrame(
        [
            ticket(1, "2024-01-02 09:00", priority="urgent", responded="2024-01-02 09:30"),  # met (60)
            ticket(2, "2024-01-02 09:00", priority="urgent", responded="2024-01-02 11:00"),  # missed
            ticket(3, "2024-01-02 09:00", priority="urgent"),  # unanswered, target long passed: missed
            ticket(4, "2024-01-31 23:50", priority="urgent"),  # unanswered, still within target at as_of: out
            ticket(5, "2024-01-02 09:00", priority="low", responded="2024-01-09 09:00"),  # no target: out
        ]
    )
    frame = csmetrics.support_metrics(tickets, sla_targets={"urgent": 60}, as_of="2024-02-01 00:00")
    assert values(frame, "sla_first_response_rate")[JAN] == pytest.approx(1 / 3)
    assert values(frame, "sla_first_response_rate", "denominator")[JAN] == 3
    assert "sla_first_response_rate" not in set(csmetrics.support_metrics(tickets)["metric"])


def test_missing_optional_columns_leave_their_metrics_out():
    tickets = pd.DataFrame({"ticket_id": [1, 2], "customer_id": [1, 2], "created_at": ["2024-01-01", "2024-01-02"]})
    metrics = set(csmetrics.support_metrics(tickets)["metric"])
    assert metrics == {"tickets", "backlog", "tickets_per_customer"}


def test_accessor():
    tickets = hand_tickets()
    pd.testing.assert_frame_equal(tickets.cs.support_metrics(freq="W", as_of=MAR), csmetrics.support_metrics(tickets, freq="W", as_of=MAR))


@st.composite
def ticket_tables(draw):
    n = draw(st.integers(1, 40))
    base = pd.Timestamp("2024-01-01", tz="UTC")
    rows = []
    for i in range(n):
        created = base + pd.Timedelta(hours=draw(st.integers(0, 24 * 90)))
        responded = created + pd.Timedelta(minutes=draw(st.integers(0, 3000))) if draw(st.booleans()) else None
        resolved = created + pd.Timedelta(hours=draw(st.integers(0, 400))) if draw(st.booleans()) else None
        rows.append(ticket(i, created, customer=draw(st.integers(1, 6)), channel=draw(st.sampled_from(["email", "chat", None])),
                           priority=draw(st.sampled_from(["low", "urgent"])), responded=responded, resolved=resolved,
                           contacts=draw(st.integers(1, 3)), handle=draw(st.one_of(st.none(), st.floats(0, 1000))),
                           wait=draw(st.one_of(st.none(), st.floats(0, 100))), abandoned=draw(st.booleans()),
                           reopens=draw(st.integers(0, 2))))  # fmt: skip
    return pd.DataFrame(rows), base + pd.Timedelta(days=draw(st.integers(30, 120)))


SETTINGS = settings(max_examples=50, deadline=None, suppress_health_check=[HealthCheck.too_slow])
RATES = ("fcr_rate", "abandonment_rate", "reopen_rate", "sla_first_response_rate")


@SETTINGS
@given(ticket_tables())
def test_property_rates_in_range_and_segments_reaggregate(table):
    tickets, as_of = table
    targets = {"urgent": 60}
    whole = csmetrics.support_metrics(tickets, as_of=as_of, sla_targets=targets)
    by_channel = csmetrics.support_metrics(tickets, as_of=as_of, sla_targets=targets, by="channel")
    for metric in RATES:
        rates = whole.loc[whole["metric"] == metric]
        assert rates["value"].dropna().between(0, 1).all()
        ok = rates["value"].notna()
        assert (rates.loc[ok, "ci_low"] <= rates.loc[ok, "value"] + 1e-12).all()
        assert (rates.loc[ok, "value"] <= rates.loc[ok, "ci_high"] + 1e-12).all()
    combined = csmetrics.reaggregate(by_channel).set_index(["period", "metric"])
    expected = whole.set_index(["period", "metric"])
    for metric in (*RATES, "tickets", "aht_seconds", "avg_wait_seconds", "backlog"):
        a = combined.xs(metric, level="metric")[["value", "numerator", "denominator"]]
        b = expected.xs(metric, level="metric")[["value", "numerator", "denominator"]]
        pd.testing.assert_frame_equal(a, b, check_exact=False, rtol=1e-9, atol=1e-9)


@SETTINGS
@given(ticket_tables(), st.integers(0, 2**16))
def test_property_split_by_customer_recombines_exactly(table, seed):
    tickets, as_of = table
    tickets, context = support_family.prepare(csmetrics.validate(tickets, "tickets"), as_of=as_of, by="channel", sla_targets={"urgent": 60})
    ids = tickets["customer_id"].unique()
    half = set(np.random.default_rng(seed).permutation(ids)[: len(ids) // 2])
    mask = tickets["customer_id"].isin(half)
    parts = [support_family.partial(tickets[m], context) for m in (mask, ~mask)]
    split = support_family.combine(parts, context.by, support_family.PARTIAL_COLUMNS)
    whole = support_family.combine([support_family.partial(tickets, context)], context.by, support_family.PARTIAL_COLUMNS)
    exact = support_family.quantiles(tickets, context)
    pd.testing.assert_frame_equal(support_family.finalize(split, exact, context), support_family.finalize(whole, exact, context))


def test_distinct_customers_dense_grid_and_hash_agree(monkeypatch):
    from csmetrics.metrics import support
    from csmetrics.metrics._common import Grid

    rng = np.random.default_rng(3)
    grid = Grid(6, 3)
    period, seg = rng.integers(-1, 7, 2_000), rng.integers(0, 3, 2_000)  # -1 and 6: outside the spine
    inside = (period >= 0) & (period < 6)
    for customer in (
        pd.Series(rng.integers(0, 50, 2_000)),  # narrow integer ids: their offsets, no hashing
        pd.Series(rng.integers(0, 50, 2_000) * 10**12),  # wide ones: factorized
        pd.Series([f"c{i}" for i in rng.integers(0, 50, 2_000)]),  # text
    ):
        frame = pd.DataFrame({"cell": period * 3 + seg, "c": customer})[inside]
        by_hand = frame.groupby("cell")["c"].nunique().reindex(range(18), fill_value=0)
        monkeypatch.setattr(support, "_DENSE_PAIRS", 2**28)
        dense = support.distinct_customers(customer, period, seg, grid)
        monkeypatch.setattr(support, "_DENSE_PAIRS", 0)
        hashed = support.distinct_customers(customer, period, seg, grid)
        assert np.array_equal(dense, hashed) and np.array_equal(dense.ravel(), by_hand.to_numpy())

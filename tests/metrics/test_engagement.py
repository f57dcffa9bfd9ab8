"""Engagement metrics (METRICS.md §8): a two-user toy calendar worked by hand."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import csmetrics
from csmetrics.metrics import engagement as engagement_family

from .helpers import billing, line, purchase, values

JAN, FEB = "2024-01-01", "2024-02-01"


def event(at, user, customer=1, name="login", session=None, duration=None):
    return {"customer_id": customer, "user_id": user, "timestamp": at, "event": name, "session_id": session, "duration_seconds": duration}


def toy():
    # January 2024 starts on a Monday. User a: Jan 1, Jan 2, Jan 15. User b: Jan 2, Feb 20.
    return pd.DataFrame(
        [
            event("2024-01-01 09:00", "a"), event("2024-01-01 09:10", "a"), event("2024-01-01 09:50", "a"),
            event("2024-01-02 10:00", "a", name="export"),
            event("2024-01-02 11:00", "b", customer=2),
            event("2024-01-15 08:00", "a"),
            event("2024-02-20 08:00", "b", customer=2, name="export"),
        ]
    )


def test_dau_wau_mau_stickiness_by_hand():
    frame = csmetrics.engagement_metrics(toy(), as_of="2024-02-29 23:00")
    assert values(frame, "active_users") == {JAN: 2, FEB: 1}
    assert values(frame, "active_customers") == {JAN: 2, FEB: 1}
    # user-days in January: a on 1, 2, 15; b on 2 -> 4 over 31 days
    assert values(frame, "dau")[JAN] == pytest.approx(4 / 31)
    assert values(frame, "dau")[FEB] == pytest.approx(1 / 29)
    # Monday weeks starting in January: 1, 8, 15, 22, 29 -> user-weeks: a (1st), b (1st), a (15th) = 3
    assert values(frame, "wau")[JAN] == pytest.approx(3 / 5)
    # MAU: the 30 days ending at Jan 31 are Jan 2..31: a (2, 15) and b (2) -> 2; Feb 1..29 ends -> Jan 31..Feb 29: b
    assert values(frame, "mau") == {JAN: 2, FEB: 1}
    assert values(frame, "stickiness")[JAN] == pytest.approx((4 / 31) / 2)
    assert values(frame, "events_per_active_user")[JAN] == pytest.approx(6 / 2)


def test_partial_period_counts_days_up_to_as_of():
    frame = csmetrics.engagement_metrics(toy(), as_of="2024-02-20 12:00")
    assert values(frame, "dau")[FEB] == pytest.approx(1 / 20)
    # MAU window ends with as_of's day: Jan 22 .. Feb 20 holds only b's Feb 20
    assert values(frame, "mau")[FEB] == 1


def test_sessions_by_gap_and_by_session_id():
    # user a on Jan 1: 09:00, 09:10 (gap 10 < 30: same session), 09:50 (gap 40: new session)
    frame = csmetrics.engagement_metrics(toy(), as_of="2024-02-29")
    # sessions: a 09:00-09:10 (10 min), a 09:50 (0), a Jan 2 (0), b Jan 2 (0), a Jan 15 (0)
    assert values(frame, "avg_session_minutes")[JAN] == pytest.approx(10 / 5)
    assert values(frame, "avg_session_minutes", "denominator")[JAN] == 5
    with_ids = pd.DataFrame(
        [
            event("2024-01-01 09:00", "a", session=7), event("2024-01-01 11:00", "a", session=7, duration=60),  # one id, 2h apart
            event("2024-01-01 12:00", "a"), event("2024-01-01 12:20", "a", duration=30),  # no id: gap-based, 20.5 min
        ]
    )
    frame = csmetrics.engagement_metrics(with_ids)
    assert values(frame, "avg_session_minutes")[JAN] == pytest.approx((121 + 20.5) / 2)
    shorter_gap = csmetrics.engagement_metrics(with_ids, session_gap_minutes=10)
    assert values(shorter_gap, "avg_session_minutes", "denominator")[JAN] == 3


def test_a_session_ends_with_the_longest_duration_at_its_last_instant():
    """Several events at a session's last instant: its length adds the longest of their durations (a
    missing one counts 0); ties at an earlier instant add nothing."""
    rows = pd.DataFrame(
        [
            event("2024-01-01 09:00", "a", duration=10), event("2024-01-01 09:05", "a", duration=50),
            event("2024-01-01 09:05", "a", duration=20),  # a: 5 min + 50 s
            event("2024-01-01 10:00", "b", duration=100), event("2024-01-01 10:00", "b"),  # (not the last instant)
            event("2024-01-01 10:10", "b"), event("2024-01-01 10:10", "b", duration=30),
            event("2024-01-01 10:10", "b", duration=45),  # b: 10 min + 45 s
            event("2024-01-01 11:00", "c", session=3), event("2024-01-01 11:30", "c", session=3),
            event("2024-01-01 11:30", "c", session=3, duration=6),  # c (an id): 30 min + 6 s
        ]
    )  # fmt: skip
    frame = csmetrics.engagement_metrics(rows, as_of="2024-01-31")
    assert values(frame, "avg_session_minutes", "denominator")[JAN] == 3
    assert values(frame, "avg_session_minutes")[JAN] == pytest.approx((5 + 50 / 60 + 10 + 45 / 60 + 30 + 6 / 60) / 3)


def test_feature_adoption_shares():
    frame = csmetrics.engagement_metrics(toy(), as_of="2024-02-29")
    adoption = frame[frame["metric"] == "feature_adoption"]
    jan = adoption[adoption["period"] == pd.Timestamp(JAN, tz="UTC")].set_index("event")
    assert jan.loc["login", "value"] == 1.0  # both customers logged in
    assert jan.loc["export", "value"] == 0.5
    feb = adoption[adoption["period"] == pd.Timestamp(FEB, tz="UTC")].set_index("event")
    assert feb.loc["login", "value"] == 0.0 and feb.loc["export", "value"] == 1.0


def test_user_id_missing_counts_the_customer():
    events = pd.DataFrame([event("2024-01-01", None), event("2024-01-02", None), event("2024-01-02", "x")])
    assert values(csmetrics.engagement_metrics(events), "active_users") == {JAN: 2}


def test_purchase_frequency_and_value_from_billing():
    b = billing(line(1, JAN, FEB, 100), purchase(1, "2024-01-10", 50), purchase(1, "2024-01-10", 30),
                purchase(2, "2024-01-20", 20), purchase(2, "2024-01-21", 40, kind="refund"))  # fmt: skip
    b["invoiced_at"] = b["invoiced_at"].fillna(b["service_start"])
    frame = csmetrics.engagement_metrics(toy(), billing=b, as_of="2024-01-31")
    # invoices: customer 1 on Jan 1 (100) and Jan 10 (50 + 30); customer 2 on Jan 20 (20); refunds are not purchases
    assert values(frame, "purchase_frequency")[JAN] == pytest.approx(3 / 2)
    assert values(frame, "avg_purchase_value")[JAN] == pytest.approx(200 / 3)


@st.composite
def event_tables(draw):
    base = pd.Timestamp("2024-01-01", tz="UTC")
    rows = [
        event(base + pd.Timedelta(minutes=draw(st.integers(0, 60 * 24 * 70))), draw(st.sampled_from(["u1", "u2", "u3", None])),
              customer=draw(st.integers(1, 4)), name=draw(st.sampled_from(["login", "export"])),
              session=draw(st.sampled_from([None, None, 1, 2])))  # fmt: skip
        for _ in range(draw(st.integers(1, 50)))
    ]
    return pd.DataFrame(rows)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(event_tables(), st.integers(0, 2**16))
def test_property_split_by_customer_and_ranges(events, seed):
    prepared, _, context = engagement_family.prepare(csmetrics.validate(events, "events"), as_of="2024-03-15")
    ids = prepared["customer_id"].unique()
    half = set(np.random.default_rng(seed).permutation(ids)[: len(ids) // 2])
    mask = prepared["customer_id"].isin(half)
    parts = [engagement_family.partial(prepared[m], None, context) for m in (mask, ~mask)]
    split = engagement_family.finalize(
        engagement_family.combine([p[0] for p in parts], (), engagement_family.PARTIAL_COLUMNS),
        pd.concat([p[1] for p in parts], ignore_index=True), context,
    )  # fmt: skip
    whole = csmetrics.engagement_metrics(events, as_of="2024-03-15")
    pd.testing.assert_frame_equal(split, whole)
    wide = csmetrics.to_wide(whole[whole["metric"] != "feature_adoption"].drop(columns="event"))
    # MAU is a 30-day window: a user seen only on the 1st of a 31-day month is outside it, so
    # DAU can exceed MAU; what always holds is that the window sees no more than every user
    users = events.assign(user=events["user_id"].fillna("c" + events["customer_id"].astype(str)))
    n_users = users.groupby(["customer_id", "user"]).ngroups
    assert wide["mau"].between(0, n_users).all()
    assert (wide["stickiness"].dropna() >= 0).all() and np.isfinite(wide["stickiness"].dropna()).all()


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(event_tables(), st.sampled_from([(), ("platform",)]), st.integers(0, 70 * 24 * 60))
def test_property_one_user_order_for_the_families_equals_their_own(events, by, as_of_minutes):
    """A report finds each bucket's user order once, on all its events, for engagement, usage
    retention and active days; each family keeps the events up to as_of (the order renumbered
    among them) and gives what it gives finding its own users."""
    from csmetrics.metrics import usage as usage_family
    from csmetrics.metrics._common import user_order

    events = events.assign(platform=np.where(np.arange(len(events)) % 3 == 0, "ios", "web"))
    valid = csmetrics.validate(events, "events")
    as_of = pd.Timestamp("2024-01-01", tz="UTC") + pd.Timedelta(minutes=as_of_minutes)
    prepared, _, context = engagement_family.prepare(valid, by=by, as_of=as_of)
    alone = engagement_family.partial(prepared, None, context)
    shared = engagement_family.partial(prepared, None, context, user_order(prepared))
    for a, s in zip(alone, shared, strict=True):
        pd.testing.assert_frame_equal(s, a)
    retention = usage_family.prepare(valid, freq="W", periods=4, by=by, as_of=as_of)
    pd.testing.assert_frame_equal(
        usage_family.retention_partial(valid, retention, user_order(valid)), usage_family.retention_partial(valid, retention)
    )
    days = usage_family.prepare(valid, freq="M", as_of=as_of)
    pd.testing.assert_frame_equal(
        usage_family.distribution_partial(valid, days, user_order(valid)), usage_family.distribution_partial(valid, days)
    )


@settings(max_examples=60, deadline=None)
@given(
    st.lists(st.tuples(st.integers(0, 3), st.one_of(st.none(), st.integers(0, 5))), min_size=1, max_size=40),
    st.sampled_from(["narrow", "wide", "huge", "text"]),
)
def test_user_codes_tell_the_customer_user_pairs_apart(pairs, kind):
    """One code per (customer, user) pair, the customer alone where user_id is missing, whatever the
    ids: narrow or wide integers (one hash of a combined key) or too wide to combine, or text."""
    from csmetrics.metrics._common import user_codes

    scale = {"narrow": 1, "wide": 10**12, "huge": 2**59, "text": 1}[kind]
    users = [None if u is None else (f"u{u}" if kind == "text" else u * scale) for _, u in pairs]
    frame = pd.DataFrame(
        {
            "customer_id": np.array([c for c, _ in pairs], dtype=np.int64) * (10**9 if kind == "wide" else 1),
            "user_id": pd.array(users, dtype="str" if kind == "text" else "Int64"),
        }
    )
    codes, customer = user_codes(frame)
    keys = [(c, u) for c, u in pairs]
    same_code = codes[:, None] == codes[None, :]
    same_pair = np.array([[a == b for b in keys] for a in keys])
    np.testing.assert_array_equal(same_code, same_pair)
    np.testing.assert_array_equal(customer[:, None] == customer[None, :], np.array([[a[0] == b[0] for b in keys] for a in keys]))

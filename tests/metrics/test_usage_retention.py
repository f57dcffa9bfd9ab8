"""Usage retention and the active-days distribution (METRICS.md §15), worked by hand."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

import csmetrics
from csmetrics.options import ConfigError


def events(rows):
    return pd.DataFrame(rows, columns=["customer_id", "user_id", "timestamp", "platform"]).assign(event="login")


# Weeks start on Monday; 2024-01-01 is a Monday (week 0), Jan 8 week 1, Jan 15 week 2, ...
ROWS = [
    # cohort week 0: u1 (weeks 0, 1), u2 (weeks 0, 3), u3 (week 0 only)
    (1, "u1", "2024-01-01 10:00", "web"), (1, "u1", "2024-01-03", "web"), (1, "u1", "2024-01-09", "web"),
    (1, "u2", "2024-01-02", "ios"), (1, "u2", "2024-01-23", "web"),
    (2, "u3", "2024-01-05", "web"),
    # cohort week 1: u4 (weeks 1, 2); customer 3 without user ids is one user (weeks 1, 3)
    (2, "u4", "2024-01-10", "ios"), (2, "u4", "2024-01-16", "ios"),
    (3, None, "2024-01-11", "web"), (3, None, "2024-01-24", "web"),
]  # fmt: skip


def test_n_period_and_unbounded_retention_by_hand():
    frame = csmetrics.usage_retention(events(ROWS), freq="W", periods=3, as_of="2024-01-24 12:00")
    week0 = frame[frame["cohort"] == pd.Timestamp("2024-01-01", tz="UTC")]
    assert week0["offset"].tolist() == [0, 1, 2, 3]
    assert week0["cohort_users"].tolist() == [3, 3, 3, 3]
    assert week0["active_users"].tolist() == [3, 1, 0, 1]  # u1 in week 1, u2 in week 3
    np.testing.assert_allclose(week0["retention"], [1, 1 / 3, 0, 1 / 3])
    # unbounded: active in week k or later: week 1 -> u1, u2; week 2 -> u2; week 3 -> u2
    np.testing.assert_allclose(week0["retention_unbounded"], [1, 2 / 3, 1 / 3, 1 / 3])
    # the week holding as_of (week 3, Jan 22-28) is partial; later weeks are left out
    assert week0["partial"].tolist() == [False, False, False, True]
    week1 = frame[frame["cohort"] == pd.Timestamp("2024-01-08", tz="UTC")]
    assert week1["offset"].tolist() == [0, 1, 2]  # offset 3 is week 4, after as_of
    assert week1["cohort_users"].tolist() == [2, 2, 2]
    assert week1["active_users"].tolist() == [2, 1, 1]  # u4 in week 2, customer 3 in week 3
    np.testing.assert_allclose(week1["retention_unbounded"], [1, 1, 0.5])


def test_unbounded_ignores_the_offset_limit_and_periods_zero():
    frame = csmetrics.usage_retention(events(ROWS), freq="W", periods=1, as_of="2024-01-24 12:00")
    week0 = frame[frame["cohort"] == pd.Timestamp("2024-01-01", tz="UTC")]
    assert week0["offset"].tolist() == [0, 1]
    # u2 comes back in week 3, beyond periods=1: it still counts at offset 1 in the unbounded variant
    np.testing.assert_allclose(week0["retention_unbounded"], [1, 2 / 3])
    only_first = csmetrics.usage_retention(events(ROWS), freq="W", periods=0, as_of="2024-01-24 12:00")
    assert set(only_first["offset"]) == {0} and set(only_first["retention"]) == {1.0}


def test_segments_from_the_first_event_or_a_customer_attribute():
    frame = csmetrics.usage_retention(events(ROWS), freq="W", periods=3, by="platform", as_of="2024-01-24 12:00")
    week0 = frame[(frame["cohort"] == pd.Timestamp("2024-01-01", tz="UTC")) & (frame["offset"] == 0)]
    # u2's first event was on ios, its later web event does not move it
    assert dict(zip(week0["platform"], week0["cohort_users"])) == {"ios": 1, "web": 2}
    customers = pd.DataFrame({"customer_id": [1, 2, 3], "region": ["EU", "NA", "EU"]})
    by_region = csmetrics.usage_retention(events(ROWS), freq="W", periods=3, by="region", customers=customers, as_of="2024-01-24 12:00")
    first = by_region[by_region["offset"] == 0].groupby("region")["cohort_users"].sum()
    assert first.to_dict() == {"EU": 3, "NA": 2}
    # segments add up to the whole
    whole = csmetrics.usage_retention(events(ROWS), freq="W", periods=3, as_of="2024-01-24 12:00")
    summed = by_region.groupby(["cohort", "offset"])[["cohort_users", "active_users"]].sum().reset_index()
    assert summed[["cohort_users", "active_users"]].to_numpy().tolist() == whole[["cohort_users", "active_users"]].to_numpy().tolist()


def test_options_are_checked():
    with pytest.raises(ConfigError, match="periods"):
        csmetrics.usage_retention(events(ROWS), periods=-1)
    with pytest.raises(ConfigError, match="freq"):
        csmetrics.usage_retention(events(ROWS), freq="fortnight")
    with pytest.raises(ConfigError, match="columns there are"):
        csmetrics.usage_retention(events(ROWS), by="platfrom")


def test_active_days_distribution_by_hand():
    frame = csmetrics.active_days_distribution(events(ROWS), freq="M")
    # January: u1 3 days (1, 3, 9), u2 2 days, u3 1, u4 2, customer 3 2
    assert frame["active_days"].tolist() == [1, 2, 3]
    assert frame["users"].tolist() == [1, 3, 1]
    # local days: in Tokyo (UTC+9) u1's 10:00 UTC Jan 1 event is 19:00 Jan 1 local; late events move days
    late = events([(1, "a", "2024-01-01 20:00", "web"), (1, "a", "2024-01-02 02:00", "web")])
    assert csmetrics.active_days_distribution(late)["active_days"].tolist() == [2]
    assert csmetrics.active_days_distribution(late, tz="Asia/Tokyo")["active_days"].tolist() == [1]


def test_a_tie_at_the_first_instant_takes_the_first_row():
    # two events of u1 at its first instant: the segment is the platform of the first row given
    tie = [(1, "u1", "2024-01-02 09:00", "web"), (1, "u1", "2024-01-02 09:00", "ios"), (2, "u2", "2024-01-01 09:00", "ios"),
           (1, "u1", "2024-01-09 09:00", "ios")]  # fmt: skip
    for rows, platform in ((tie, "web"), ([tie[1], tie[0], *tie[2:]], "ios")):
        frame = csmetrics.usage_retention(events(rows), freq="W", periods=1, by="platform", as_of="2024-01-10")
        week0 = frame[frame["offset"] == 0]
        assert dict(zip(week0["platform"], week0["cohort_users"])) == ({"web": 1, "ios": 1} if platform == "web" else {"ios": 2})
        assert frame.loc[(frame["platform"] == platform) & (frame["offset"] == 1), "active_users"].tolist() == [1]

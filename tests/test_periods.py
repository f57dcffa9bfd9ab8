"""Periods: codes and labels per freq and time zone, spines, as_of, period ends."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from csmetrics.periods import NAT, code_starts, make_spine, period_codes, resolve_as_of, to_utc


def ts(*values: str) -> pd.Series:
    return pd.Series(pd.to_datetime(list(values), utc=True, format="ISO8601"))


@pytest.mark.parametrize(
    "freq, instant, label",
    [
        ("D", "2024-03-10 23:59", "2024-03-10"),
        ("W", "2024-03-10 23:59", "2024-03-04"),  # a Sunday belongs to the week starting Monday 4th
        ("W", "2024-03-11 00:00", "2024-03-11"),
        ("M", "2024-02-29 12:00", "2024-02-01"),
        ("Q", "2024-06-30 23:59", "2024-04-01"),
        ("Y", "2024-12-31 23:59", "2024-01-01"),
        ("W", "1970-01-01", "1969-12-29"),
    ],
)
def test_period_labels_are_period_starts(freq, instant, label):
    codes = period_codes(ts(instant), freq)
    assert code_starts(codes, freq)[0] == pd.Timestamp(label, tz="UTC")


def test_time_zone_moves_instants_across_period_boundaries():
    # 23:30 UTC on Jan 31 is 00:30 on Feb 1 in Berlin
    instants = ts("2024-01-31 23:30")
    assert code_starts(period_codes(instants, "M"), "M")[0] == pd.Timestamp("2024-01-01", tz="UTC")
    berlin = code_starts(period_codes(instants, "M", "Europe/Berlin"), "M", "Europe/Berlin")[0]
    assert berlin == pd.Timestamp("2024-02-01", tz="Europe/Berlin")
    assert berlin.tz_convert("UTC") == pd.Timestamp("2024-01-31 23:00", tz="UTC")


def test_nat_gets_a_sentinel_code():
    codes = period_codes(pd.Series(pd.to_datetime([None, "2024-01-01"], utc=True)), "M")
    assert codes[0] == np.iinfo(np.int64).min


def test_spine_spans_data_and_stops_at_as_of():
    codes = period_codes(ts("2024-01-15", "2024-03-02", "2024-05-20"), "M")
    spine = make_spine(codes, "M", "UTC", as_of=to_utc("2024-04-10"))
    assert list(spine.starts) == list(pd.to_datetime(["2024-01-01", "2024-02-01", "2024-03-01", "2024-04-01"], utc=True))
    assert spine.partial_period == pd.Timestamp("2024-04-01", tz="UTC")
    ends = pd.to_datetime(spine.ends_ns, utc=True)
    assert ends[0] == pd.Timestamp("2024-02-01", tz="UTC")  # snapshot: instants before Feb 1
    assert ends[-1] == pd.Timestamp("2024-04-10", tz="UTC") + pd.Timedelta(1, "ns")  # capped just after as_of


def test_explicit_start_and_end():
    codes = period_codes(ts("2024-01-15", "2024-05-20"), "Q")
    spine = make_spine(codes, "Q", "UTC", as_of=to_utc("2025-01-01"), start="2023-07-01", end="2024-06-30")
    assert list(spine.starts.strftime("%Y-%m-%d")) == ["2023-07-01", "2023-10-01", "2024-01-01", "2024-04-01"]
    assert spine.partial_period is None


def test_as_of_defaults_to_latest_timestamp():
    assert resolve_as_of(None, ts("2024-01-01", "2024-02-03"), None) == pd.Timestamp("2024-02-03", tz="UTC")
    assert resolve_as_of("2024-05-01") == pd.Timestamp("2024-05-01", tz="UTC")
    with pytest.raises(ValueError):
        resolve_as_of(None, ts())


def test_bad_freq():
    with pytest.raises(ValueError, match="freq must be one of"):
        period_codes(ts("2024-01-01"), "H")


@pytest.mark.parametrize("freq", ["D", "W", "M", "Q", "Y"])
@pytest.mark.parametrize("tz", ["UTC", "America/New_York", "Asia/Kolkata", "Australia/Lord_Howe"])
def test_spine_positions_are_the_clipped_period_index(freq, tz):
    """Spine.positions (one division and a table gather) is clip(index(period_codes), -1, n), NaT -1,
    across DST changes and half-hour zones, for instants before, inside and after the spine."""
    from csmetrics.periods import NAT

    rng = np.random.default_rng(7)
    stamps = rng.integers(pd.Timestamp("2019-06-01").value, pd.Timestamp("2025-06-01").value, 5_000)
    stamps[::11] = NAT
    bounds = np.array([pd.Timestamp("2021-03-20").value, pd.Timestamp("2022-11-03").value])
    spine = make_spine(period_codes(bounds, freq, tz), freq, tz, to_utc("2023-01-01"))
    expected = np.clip(spine.index(period_codes(stamps, freq, tz)), -1, spine.n)
    expected[stamps == NAT] = -1
    assert np.array_equal(spine.positions(stamps), expected)


def _add_months_reference(instant: np.ndarray, months: np.ndarray) -> np.ndarray:
    """numpy's own calendar units: the day clamped to the target month's length, time of day kept."""
    day = instant.view("M8[ns]").astype("M8[D]")
    month = day.astype("M8[M]")
    day_of_month = (day - month.astype("M8[D]")).astype(np.int64)
    target = month + months.astype(np.int64)
    length = ((target + 1).astype("M8[D]") - target.astype("M8[D]")).astype(np.int64)
    time_of_day = instant - day.astype("M8[ns]").view(np.int64)
    landed = target.astype("M8[D]") + np.minimum(day_of_month, length - 1)
    return landed.astype("M8[ns]").view(np.int64) + time_of_day


@settings(max_examples=200, deadline=None)
@given(
    st.lists(st.integers(-(2**62), 2**62), min_size=1, max_size=40),
    st.lists(st.integers(-600, 600), min_size=1, max_size=40),
    st.booleans(),
)
def test_month_arithmetic_through_tables_equals_numpys_calendar(stamps, months, month_ends):
    from csmetrics.metrics._billing import add_months, monthly_amount
    from csmetrics.periods import month_index

    n = min(len(stamps), len(months))
    instant = np.array(stamps[:n], dtype=np.int64)
    if month_ends:  # the 28th-31st of months, where the clamp matters
        day = instant.view("M8[ns]").astype("M8[M]").astype("M8[D]") + np.arange(n) % 4 + 27
        instant = day.astype("M8[ns]").view(np.int64) + np.abs(instant) % (86_400 * 10**9)
    step = np.array(months[:n], dtype=np.int64)
    expected = _add_months_reference(instant, step)
    got = add_months(instant, step)
    inside = np.abs(instant.view("M8[ns]").astype("M8[M]").astype(np.int64) + step) <= 3_400
    np.testing.assert_array_equal(got[inside], expected[inside])
    np.testing.assert_array_equal(month_index(instant), instant.view("M8[ns]").astype("M8[M]").astype(np.int64))
    assert (add_months(np.array([NAT]), np.array([1])) == NAT).all()
    # the monthly amount of lines [instant, instant + k months) is amount / k exactly
    k = np.abs(step[inside]) % 24 + 1
    start = instant[inside]
    end = add_months(start, k)
    ok = end != NAT
    np.testing.assert_array_equal(monthly_amount(np.full(int(ok.sum()), 120.0), start[ok], end[ok]), 120.0 / k[ok])


@settings(max_examples=200, deadline=None)
@given(
    st.lists(st.integers(-(2**61), 2**61), min_size=1, max_size=40),
    st.lists(st.integers(0, 30), min_size=1, max_size=40),
    st.lists(st.sampled_from([0, 0, 1, -1, 3_600, -86_400, 86_400 * 3]), min_size=1, max_size=40),
    st.booleans(),
)
def test_monthly_amount_is_whole_months_exactly_where_numpys_calendar_says_so(stamps, months, nudge, month_ends):
    """§4: amount / k where [start, end) is exactly k calendar months (numpy's calendar, day clamped,
    time of day kept), else amount * 30.4375 / days: ends nudged by seconds, hours or days fall to the day rule."""
    from csmetrics.metrics._billing import monthly_amount

    n = min(len(stamps), len(months), len(nudge))
    start = np.array(stamps[:n], dtype=np.int64)
    if month_ends:
        day = start.view("M8[ns]").astype("M8[M]").astype("M8[D]") + np.arange(n) % 4 + 27
        start = day.astype("M8[ns]").view(np.int64) + np.abs(start) % (86_400 * 10**9)
    k = np.array(months[:n], dtype=np.int64)
    end = _add_months_reference(start, k) + np.array(nudge[:n], dtype=np.int64) * 10**9
    later = end > start
    start, end = start[later], end[later]
    if not len(start):
        return
    month_of = lambda t: t.view("M8[ns]").astype("M8[M]").astype(np.int64)  # noqa: E731
    whole_k = month_of(end) - month_of(start)
    whole = (whole_k >= 1) & (_add_months_reference(start, whole_k) == end)
    expected = np.where(whole, 300.0 / np.maximum(whole_k, 1), 300.0 * 30.4375 * 86_400e9 / (end - start))
    np.testing.assert_array_equal(monthly_amount(np.full(len(start), 300.0), start, end), expected)

"""Business hours (METRICS.md §11): Schedule and business_minutes against a brute-force reference."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from csmetrics import Schedule, business_minutes
from csmetrics.options import ConfigError

WEEKDAYS = ("mon", "tue", "wed", "thu", "fri")


def brute_force(start: pd.Timestamp, end: pd.Timestamp, schedule: Schedule) -> float:
    """Every real second from start to end, converted to local wall-clock time, checked against the
    open intervals of its local date (the reference of §11), in minutes."""
    if pd.isna(start) or pd.isna(end) or end < start:
        return float("nan")
    seconds = pd.date_range(start.tz_convert("UTC"), end.tz_convert("UTC"), freq="s", inclusive="left")
    local = seconds.tz_convert(schedule.tz)
    minute_of_day = (local.hour * 60 + local.minute).to_numpy() + local.second.to_numpy() / 60
    weekday = local.day_of_week.to_numpy()
    open_ = np.zeros(len(seconds), dtype=bool)
    for index, day in enumerate(("mon", "tue", "wed", "thu", "fri", "sat", "sun")):
        for lo, hi in schedule.open_minutes(day):
            open_ |= (weekday == index) & (minute_of_day >= lo) & (minute_of_day < hi)
    if schedule.holidays:
        open_ &= ~pd.Index(local.date).isin(schedule.holidays)
    return float(open_.sum()) / 60


def test_hand_worked_friday_to_monday():
    week = Schedule(tz="Europe/Berlin", hours={d: ["09:00-17:00"] for d in WEEKDAYS})
    start, end = pd.Timestamp("2024-03-08 16:30", tz="Europe/Berlin"), pd.Timestamp("2024-03-11 09:15", tz="Europe/Berlin")
    assert business_minutes([start], [end], week).tolist() == [45.0]  # 30 on Friday + 15 on Monday


def test_hand_worked_resolution_across_a_holiday():
    week = Schedule(tz="Europe/Berlin", hours={d: ["09:00-12:00", "13:00-17:00"] for d in WEEKDAYS},
                    holidays=["2024-12-25", "2024-12-26"])  # fmt: skip
    # Tuesday 24 Dec 16:00 -> Friday 27 Dec 10:00: 60 minutes on the 24th, the 25th and 26th closed, 60 on the 27th
    start, end = pd.Timestamp("2024-12-24 16:00", tz="Europe/Berlin"), pd.Timestamp("2024-12-27 10:00", tz="Europe/Berlin")
    assert business_minutes([start], [end], week).tolist() == [120.0]


def test_hand_worked_schedules_per_team():
    support = Schedule(tz="UTC", hours={d: ["09:00-17:00"] for d in WEEKDAYS})
    follow_the_sun = Schedule(tz="UTC", hours={d: ["00:00-24:00"] for d in (*WEEKDAYS, "sat", "sun")})
    start, end = ["2024-03-09 10:00"], ["2024-03-11 10:00"]  # Saturday to Monday
    assert business_minutes(start, end, support).tolist() == [60.0]
    assert business_minutes(start, end, follow_the_sun).tolist() == [2880.0]


@pytest.mark.parametrize(
    "tz,day,expected",
    [
        ("Europe/Berlin", "2024-03-31", 180.0),  # 01:00-05:00 on the spring-forward Sunday: 3 real hours
        ("Europe/Berlin", "2024-10-27", 300.0),  # fall back: the repeated hour counts twice
        ("America/New_York", "2024-03-10", 180.0),
        ("America/New_York", "2024-11-03", 300.0),
        ("Asia/Kolkata", "2024-03-10", 240.0),
    ],
)
def test_daylight_saving_days(tz, day, expected):
    night = Schedule(tz=tz, hours={"sun": ["01:00-05:00"]})
    start = pd.Timestamp(day, tz=tz)
    end = start + pd.Timedelta(days=1)
    got = business_minutes([start], [end], night)[0]
    assert got == expected == brute_force(start, end, night)


def test_missing_and_reversed_give_nan():
    week = Schedule(tz="UTC", hours={"mon": ["09:00-17:00"]})
    got = business_minutes([None, "2024-03-05", "2024-03-04 10:00"], ["2024-03-05", "2024-03-04", None], week)
    assert np.isnan(got).all()


@pytest.mark.parametrize(
    "hours,match",
    [
        ({"mon": ["22:00-06:00"]}, "crosses midnight"),
        ({"mon": ["09:00-12:00", "11:00-13:00"]}, "overlap"),
        ({"mon": ["13:00-17:00", "09:00-12:00"]}, "out of order"),
        ({"monday": ["09:00-17:00"]}, "unknown day key"),
        ({"mon": ["9-17"]}, "HH:MM-HH:MM"),
        ({"mon": ["09:00-25:00"]}, "time of day"),
        ({"mon": ["09:00-09:00"]}, "ends before it starts"),
    ],
)
def test_bad_schedules_are_clear_errors(hours, match):
    with pytest.raises(ConfigError, match=match):
        Schedule(tz="UTC", hours=hours)


def test_from_dict_is_the_toml_form():
    table = {"tz": "Europe/Berlin", "mon": ["09:00-12:00", "13:00-17:00"], "holidays": ["2024-12-25"]}
    schedule = Schedule.from_dict(table)
    assert schedule.open_minutes("mon") == ((540, 720), (780, 1020)) and schedule.open_minutes("tue") == ()
    with pytest.raises(ConfigError, match="tz is required"):
        Schedule.from_dict({"mon": ["09:00-17:00"]})
    with pytest.raises(ConfigError, match="unknown key"):
        Schedule.from_dict({"tz": "UTC", "weekdays": ["09:00-17:00"]})
    with pytest.raises(ConfigError, match="tz"):
        Schedule.from_dict({"tz": "Mars/Olympus"})


ZONES = ["Europe/Berlin", "America/New_York", "Asia/Kolkata", "UTC"]
# instants near both daylight-saving changes of 2024 in Europe and the US, and ordinary days
ANCHORS = ["2024-03-10", "2024-03-31", "2024-10-27", "2024-11-03", "2024-06-14", "2024-12-24"]


@st.composite
def schedules(draw):
    tz = draw(st.sampled_from(ZONES))
    hours = {}
    for day in draw(st.lists(st.sampled_from(("mon", "tue", "wed", "thu", "fri", "sat", "sun")), unique=True, max_size=7)):
        cuts = sorted(draw(st.lists(st.integers(0, 24 * 4), min_size=2, max_size=6, unique=True)))
        spans = [(cuts[i], cuts[i + 1]) for i in range(0, len(cuts) - 1, 2)]
        hours[day] = [f"{a // 4:02d}:{a % 4 * 15:02d}-{b // 4:02d}:{b % 4 * 15:02d}" for a, b in spans]
    holidays = draw(st.lists(st.sampled_from(["2024-03-10", "2024-03-31", "2024-10-27", "2024-12-25"]), unique=True, max_size=2))
    return Schedule(tz=tz, hours=hours, holidays=holidays)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    schedule=schedules(),
    anchor=st.sampled_from(ANCHORS),
    offset=st.integers(-36 * 3600, 36 * 3600),
    length=st.integers(0, 3 * 86400),
)
def test_business_minutes_equal_the_brute_force_to_the_second(schedule, anchor, offset, length):
    start = pd.Timestamp(anchor, tz="UTC") + pd.Timedelta(seconds=offset)
    end = start + pd.Timedelta(seconds=length)
    got = business_minutes([start], [end], schedule)[0]
    assert got == pytest.approx(brute_force(start, end, schedule), abs=1 / 60 / 2)  # within half a second


def test_many_rows_at_once_equal_one_at_a_time():
    schedule = Schedule(tz="America/New_York", hours={d: ["08:30-12:00", "13:00-18:00"] for d in WEEKDAYS}, holidays=["2024-07-04"])
    rng = np.random.default_rng(3)
    start = pd.Timestamp("2024-01-01", tz="UTC") + pd.to_timedelta(rng.integers(0, 360 * 86400, 200), unit="s")
    end = start + pd.to_timedelta(rng.integers(0, 10 * 86400, 200), unit="s")
    whole = business_minutes(start, end, schedule)
    one = [business_minutes([s], [e], schedule)[0] for s, e in zip(start, end)]
    np.testing.assert_array_equal(whole, np.array(one))


# --------------------------------------------------------------------------
# Support metrics in business time (§11)
# --------------------------------------------------------------------------
import csmetrics  # noqa: E402
from csmetrics.config import check_config  # noqa: E402


def _tickets() -> pd.DataFrame:
    berlin = "Europe/Berlin"
    created = [pd.Timestamp(t, tz=berlin) for t in ("2024-03-08 16:30", "2024-03-11 10:00", "2024-03-11 18:00", "2024-03-12 09:00")]
    return pd.DataFrame(
        {
            "ticket_id": [1, 2, 3, 4],
            "customer_id": [1, 2, 3, 4],
            "created_at": created,
            "first_response_at": [created[0] + pd.Timedelta(hours=64, minutes=45),  # Monday 09:15: 45 business minutes
                                  created[1] + pd.Timedelta(minutes=30), created[2] + pd.Timedelta(hours=15, minutes=30),
                                  created[3] + pd.Timedelta(minutes=90)],  # fmt: skip
            "resolved_at": [created[0] + pd.Timedelta(days=4), created[1] + pd.Timedelta(hours=2), pd.NaT,
                            created[3] + pd.Timedelta(hours=30)],  # fmt: skip
            "priority": ["urgent", "urgent", "high", "high"],
            "contacts": [1, 2, 1, 2],
            "team": ["emea", "emea", "us", "emea"],
        }
    )


WEEK = Schedule(tz="Europe/Berlin", hours={d: ["09:00-17:00"] for d in WEEKDAYS})


def _metric(frame: pd.DataFrame, name: str) -> float:
    return float(frame.loc[frame["metric"] == name, "value"].iloc[0])


def test_support_quantiles_in_business_minutes_by_hand():
    frame = csmetrics.support_metrics(_tickets(), business_hours=WEEK, as_of="2024-03-20")
    # business minutes to first response: 45, 30, 30 (Mon 18:00 -> Tue 09:30), 90
    assert _metric(frame, "first_response_business_minutes_p50") == np.median([45, 30, 30, 90])
    assert _metric(frame, "first_response_business_minutes_p90") == np.quantile([45, 30, 30, 90], 0.9)
    # calendar minutes stay as they were
    assert _metric(frame, "first_response_minutes_p50") == np.median([64 * 60 + 45, 30, 15 * 60 + 30, 90])


def test_sla_resolution_rate_and_touches_by_hand():
    frame = csmetrics.support_metrics(_tickets(), business_hours=WEEK, resolution_targets={"urgent": 8, "high": 16},
                                      as_of="2024-03-20")  # fmt: skip
    # ticket 1: Fri 16:30 -> Tue 16:30 = 30 + 8h + 8h + ... = 30 min + Mon 8h + Tue 7.5h = 16 h > 8: missed
    # ticket 2: 2 business hours <= 8: met; ticket 3: unresolved, waited Mon 18:00 -> as_of 20 Mar > 16 h: missed
    # ticket 4: Tue 09:00 -> Wed 15:00 = 8 h + 6 h = 14 h <= 16: met
    assert _metric(frame, "sla_resolution_rate") == 0.5
    # resolved by as_of: tickets 1, 2 and 4, with contacts 1, 2 and 2
    assert _metric(frame, "one_touch_rate") == pytest.approx(1 / 3)
    assert _metric(frame, "two_touch_rate") == pytest.approx(2 / 3)


def test_schedules_per_team_and_calendar_time_without_a_default():
    us = Schedule(tz="America/New_York", hours={d: ["09:00-17:00"] for d in WEEKDAYS})
    frame = csmetrics.support_metrics(_tickets(), business_hours={"emea": WEEK, "us": us}, schedule_column="team",
                                      by="team", as_of="2024-03-20")  # fmt: skip
    us_row = frame[(frame["metric"] == "first_response_business_minutes_p50") & (frame["team"] == "us")]
    # Mon 18:00 Berlin (13:00 New York) -> Tue 09:30 Berlin (04:30 New York): 4 hours of New York's Monday
    assert float(us_row["value"].iloc[0]) == 240.0
    calendar = csmetrics.support_metrics(_tickets(), business_hours={"emea": WEEK}, schedule_column="team", by="team",
                                         as_of="2024-03-20")  # fmt: skip
    no_default = calendar[(calendar["metric"] == "first_response_business_minutes_p50") & (calendar["team"] == "us")]
    assert float(no_default["value"].iloc[0]) == 15 * 60 + 30  # calendar time


def test_business_support_on_dask_equals_pandas():
    import dask
    import dask.dataframe as dd

    kwargs = {"business_hours": WEEK, "resolution_targets": {"urgent": 8, "high": 16}, "sla_targets": {"urgent": 60},
              "as_of": "2024-03-20", "by": "team"}  # fmt: skip
    expected = csmetrics.support_metrics(_tickets(), **kwargs)
    with dask.config.set(scheduler="synchronous"):
        got = csmetrics.support_metrics(dd.from_pandas(_tickets(), npartitions=2), **kwargs)
    pd.testing.assert_frame_equal(got.reset_index(drop=True), expected.reset_index(drop=True), rtol=1e-12)


def test_business_hours_in_the_config():
    config = check_config({"business_hours": {"tz": "Europe/Berlin", "mon": ["09:00-17:00"]}, "resolution_targets": {"urgent": 8}})
    assert isinstance(config["business_hours"], Schedule)
    teams = check_config({"schedule_column": "team", "business_hours": {"emea": {"tz": "Europe/Berlin", "mon": ["09:00-17:00"]},
                                                                          "us": {"tz": "America/New_York"}}})  # fmt: skip
    assert set(teams["business_hours"]) == {"emea", "us"}
    with pytest.raises(ConfigError, match="crosses midnight"):
        check_config({"business_hours": {"tz": "UTC", "mon": ["22:00-02:00"]}})
    with pytest.raises(ConfigError, match="resolution_targets"):
        check_config({"resolution_targets": {"urgent": -1}})


def test_csat_per_agent_from_the_answers_tickets():
    tickets = pd.DataFrame({"ticket_id": [10, 11, 12], "customer_id": [1, 2, 3], "agent_id": [7, 7, 8],
                            "channel": ["chat", "email", "chat"], "created_at": "2024-01-02"})  # fmt: skip
    surveys = pd.DataFrame({"response_id": [1, 2, 3, 4, 5], "customer_id": [1, 2, 3, 1, 4], "survey": "csat",
                            "score": [5, 2, 4, 5, 1], "ticket_id": [10, 11, 12, 10, 99], "responded_at": "2024-01-05"})  # fmt: skip
    frame = csmetrics.survey_metrics(surveys, tickets=tickets, by="agent_id")
    csat = frame[frame["metric"] == "csat"].set_index("agent_id")
    assert csat.loc[7, "value"] == pytest.approx(2 / 3) and csat.loc[7, "denominator"] == 3  # answers 1, 2, 4
    assert csat.loc[8, "value"] == 1.0
    unknown = frame[(frame["metric"] == "csat") & frame["agent_id"].isna()]
    assert unknown["denominator"].tolist() == [1.0] and unknown["value"].tolist() == [0.0]  # ticket 99 is unknown
    by_channel = csmetrics.survey_metrics(surveys, tickets=tickets, by="channel")
    assert set(by_channel.loc[by_channel["metric"] == "csat", "channel"].dropna()) == {"chat", "email"}
    with pytest.raises(ConfigError, match="columns there are"):
        csmetrics.survey_metrics(surveys, by="agent_id")  # without tickets the column is nowhere


def test_country_holidays_from_the_holidays_package():
    germany = Schedule(tz="Europe/Berlin", hours={d: ["09:00-17:00"] for d in WEEKDAYS},
                       holidays={"country": "DE", "years": [2024]})  # fmt: skip
    assert pd.Timestamp("2024-10-03").date() in germany.holidays  # German Unity Day
    # Wednesday 2 Oct 16:00 -> Friday 4 Oct 10:00: 60 minutes, the 3rd is closed, 60 minutes
    start, end = pd.Timestamp("2024-10-02 16:00", tz="Europe/Berlin"), pd.Timestamp("2024-10-04 10:00", tz="Europe/Berlin")
    assert business_minutes([start], [end], germany).tolist() == [120.0]
    with pytest.raises(ConfigError, match="country and years"):
        Schedule(tz="UTC", hours={}, holidays={"country": "DE"})


def test_a_parsed_config_checks_again_and_the_report_uses_business_hours(tmp_path):
    from typer.testing import CliRunner

    from csmetrics.cli import app

    from .conftest import SAMPLE

    config = tmp_path / "csmetrics.toml"
    config.write_text('[business_hours]\ntz = "Europe/Berlin"\nmon = ["09:00-17:00"]\n[resolution_targets]\nurgent = 8\n')
    parsed = check_config({"business_hours": {"tz": "UTC", "mon": ["09:00-17:00"]}})
    assert check_config(parsed) == parsed
    result = CliRunner().invoke(app, ["report", str(SAMPLE), "--out", str(tmp_path / "out"), "--quiet", "--no-html",
                                      "--config", str(config)])  # fmt: skip
    assert result.exit_code == 0, result.output
    metrics = pd.read_parquet(tmp_path / "out" / "metrics.parquet")
    assert {"first_response_business_minutes_p50", "resolution_business_hours_p90", "sla_resolution_rate"} <= set(metrics["metric"])

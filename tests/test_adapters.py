"""csmetrics.adapters.fivetran_stripe: the real Fivetran seed schemas, and coherent Stripe-shaped
tables of our own whose conversion must give the metrics of the same subscriptions written directly."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

import csmetrics
from csmetrics.adapters import AdapterError, fivetran_stripe, minor_unit_exponent, read_source
from csmetrics.cli import app


def test_the_seeds_are_read_with_their_real_columns(shared_data):
    converted = fivetran_stripe(shared_data / "fivetran_stripe")
    assert set(converted.tables) == {"billing", "customers"}
    assert len(converted.tables["customers"]) == 12
    assert converted.tables["customers"]["signup_at"].dt.tz is not None
    assert converted.as_of == pd.Timestamp("2025-08-26 14:30:00", tz="UTC")  # newest _fivetran_synced
    assert {"subscription_history", "subscription_item", "plan", "price"} <= set(converted.used)
    # the one active subscription (sdgfs4536, item zb1: 1,500 USD a month) lived 2021-02-18 14:16:37 to
    # 2021-02-19 14:16:37, all of it inside its trial: a trial at price 0 is no MRR
    assert "1 subscription(s) ended within their trial: no MRR" in converted.notes
    # its invoiced history is the one line that joins an invoice: ad1111, 21 cents for that day (a proration)
    billing = converted.tables["billing"]
    assert billing[["line_id", "customer_id", "kind", "amount", "currency", "plan"]].to_numpy().tolist() == [
        ["ad1111", "sdgfs84854", "recurring", 0.21, "USD", "sg555"]
    ]
    # MRR over time, by hand: 0.21 for one day is 0.21 x 30.4375 = 6.391875 a month, from Feb 18 14:16:37 to Feb 19
    moves = csmetrics.mrr_movements(billing, as_of="2021-03-01")
    assert moves["kind"].tolist() == ["new", "churn"]
    assert moves["amount"].tolist() == pytest.approx([6.3919, -6.3919])


def test_a_seed_subscription_without_its_trial_by_hand(shared_data):
    source = read_source(shared_data / "fivetran_stripe")
    source["subscription_history"] = source["subscription_history"].drop(columns=["trial_start", "trial_end"])
    del source["invoice_line_item"]  # without invoices, the subscription item is the only fact
    billing = fivetran_stripe(source).tables["billing"]
    assert billing[["customer_id", "amount", "interval_months", "currency"]].to_numpy().tolist() == [["sdf6547", 1500.0, 1.0, "USD"]]
    line = billing.iloc[0]
    assert (line["service_start"], line["service_end"]) == (pd.Timestamp("2021-02-18 14:16:37", tz="UTC"), pd.Timestamp("2021-02-19 14:16:37", tz="UTC"))
    # 1,500 a month whatever the (one-day) end: MRR 1,500 at the end of 2021-02-18, 0 after
    moves = csmetrics.mrr_movements(billing, as_of="2021-03-01")
    assert moves["kind"].tolist() == ["new", "churn"] and moves["amount"].tolist() == [1500.0, -1500.0]


def test_minor_units():
    assert [minor_unit_exponent(c) for c in ("usd", "JPY", "kwd", "EUR")] == [2, 0, 3, 2]


def write_stripe(subscriptions: pd.DataFrame, synced: str) -> dict[str, pd.DataFrame]:
    """Subscriptions (id, customer, price, currency, interval, count, start, end, plan, quantity) as
    Fivetran's Stripe tables, amounts in minor units, timestamps as naive text, booleans as TRUE/FALSE."""
    def text(values):
        return pd.to_datetime(values).dt.strftime("%Y-%m-%d %H:%M:%S").where(pd.notna(values), None)

    cents = subscriptions["price"] * 10.0 ** subscriptions["currency"].map(minor_unit_exponent)
    plan = pd.DataFrame({"id": "plan_" + subscriptions["id"], "_fivetran_synced": synced, "amount": cents.round().astype(int).astype(str),
                         "currency": subscriptions["currency"].str.lower(), "interval": subscriptions["interval"],
                         "interval_count": subscriptions["count"].astype(str), "nickname": subscriptions["plan"], "livemode": "TRUE"})  # fmt: skip
    history = pd.DataFrame({"id": subscriptions["id"], "_fivetran_synced": synced, "_fivetran_active": "true",
                            "customer_id": subscriptions["customer"], "start_date": text(subscriptions["start"]),
                            "created": text(subscriptions["start"]), "ended_at": text(subscriptions["end"]),
                            "cancel_at": None, "cancel_at_period_end": "FALSE", "status": "active", "livemode": "TRUE"})  # fmt: skip
    old = history.iloc[:1].assign(_fivetran_active="false", start_date="2000-01-01 00:00:00")  # a superseded version
    items = pd.DataFrame({"id": "si_" + subscriptions["id"], "_fivetran_synced": synced, "subscription_id": subscriptions["id"],
                          "plan_id": "plan_" + subscriptions["id"], "quantity": subscriptions["quantity"].astype(str)})  # fmt: skip
    customers = pd.DataFrame({"id": subscriptions["customer"].unique(), "created": "2023-01-01 00:00:00", "_fivetran_synced": synced})
    return {"subscription_history": pd.concat([history, old], ignore_index=True), "subscription_item": items, "plan": plan, "customer": customers}


def generated_subscriptions(seed: int, n: int = 60) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    start = pd.Timestamp("2023-01-01") + pd.to_timedelta(rng.integers(0, 540, n), unit="D") + pd.to_timedelta(rng.integers(0, 86_400, n), unit="s")
    ended = rng.random(n) < 0.35
    end = pd.Series(start + pd.to_timedelta(rng.integers(10, 400, n), unit="D")).where(ended)
    interval = rng.choice(["month", "year"], n, p=[0.7, 0.3])
    return pd.DataFrame({
        "id": [f"sub_{i}" for i in range(n)], "customer": [f"cus_{i % 45}" for i in range(n)],
        "price": rng.choice([9.0, 29.0, 99.5, 1200.0, 4990.0], n), "currency": rng.choice(["usd", "eur", "jpy"], n),
        "interval": interval, "count": np.where(interval == "month", rng.choice([1, 1, 3, 6], n), 1),
        "start": start, "end": end, "plan": rng.choice(["basic", "pro"], n), "quantity": rng.integers(1, 4, n),
    }).assign(price=lambda f: np.where(f["currency"] == "jpy", np.round(f["price"]), f["price"]))  # fmt: skip  # yen has no minor unit


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_round_trip_gives_the_metrics_of_the_subscriptions_written_directly(seed):
    subs = generated_subscriptions(seed)
    converted = fivetran_stripe(write_stripe(subs, "2024-12-31 23:00:00"))
    months = np.where(subs["interval"] == "year", 12 * subs["count"], subs["count"])
    direct = pd.DataFrame({
        "line_id": "si_" + subs["id"], "customer_id": subs["customer"], "kind": "recurring",
        "amount": subs["price"] * subs["quantity"], "interval_months": months.astype(float),
        "service_start": pd.to_datetime(subs["start"], utc=True), "service_end": pd.to_datetime(subs["end"], utc=True),
        "currency": subs["currency"].str.upper(), "plan": subs["plan"],
    })  # fmt: skip
    fx = pd.DataFrame({"currency": ["EUR", "JPY"], "date": "2020-01-01", "rate": [1.1, 0.0067]})
    as_of = converted.as_of
    assert as_of == pd.Timestamp("2024-12-31 23:00:00", tz="UTC")
    for function in (csmetrics.revenue_metrics, csmetrics.customer_metrics):
        got = function(converted.tables["billing"], fx=fx, base_currency="USD", as_of=as_of, by="plan")
        expected = function(direct, fx=fx, base_currency="USD", as_of=as_of, by="plan")
        pd.testing.assert_frame_equal(got, expected)
    pd.testing.assert_frame_equal(
        csmetrics.renewal_calendar(converted.tables["billing"], fx=fx, base_currency="USD", as_of=as_of),
        csmetrics.renewal_calendar(direct, fx=fx, base_currency="USD", as_of=as_of),
    )


def test_missing_tables_are_named_and_the_cli_converts_then_reports(tmp_path, shared_data):
    with pytest.raises(AdapterError, match="no 'subscription_item' table"):
        fivetran_stripe({"subscription_history": pd.DataFrame(columns=["id", "customer_id", "start_date", "created"])})
    runner = CliRunner()
    result = runner.invoke(app, ["convert", "fivetran-stripe", str(shared_data / "fivetran_stripe"), "--out", str(tmp_path / "data")])
    assert result.exit_code == 0, result.output
    assert "subscription_item: id, subscription_id, quantity" in result.output
    assert (tmp_path / "data" / "as_of.txt").read_text().startswith("2025-08-26")
    report = runner.invoke(app, ["report", str(tmp_path / "data"), "--out", str(tmp_path / "report"), "--quiet"])
    assert report.exit_code == 0, report.output
    import json

    manifest = json.loads((tmp_path / "report" / "manifest.json").read_text())
    assert manifest["as_of"].startswith("2025-08-26 14:30")
    assert manifest["source"]["adapter"] == "fivetran-stripe" and "subscription_item" in manifest["source"]["used"]
    bad = runner.invoke(app, ["convert", "fivetran-hubspot", str(tmp_path), "--out", str(tmp_path / "x")])
    assert bad.exit_code == 2 and "unknown source 'fivetran-hubspot'" in bad.output


# --------------------------------------------------------------------------
# Zendesk
# --------------------------------------------------------------------------
from csmetrics.adapters import fivetran_zendesk  # noqa: E402


def test_zendesk_seed_ticket_11071_lifecycle_and_the_schedule(shared_data):
    converted = fivetran_zendesk(shared_data / "fivetran_zendesk")
    tickets = converted.tables["tickets"].set_index(converted.tables["tickets"]["ticket_id"].astype(str))
    assert len(tickets) == 8  # 10 tickets, 2 deleted
    t = tickets.loc["11071"]
    # open 2020-08-28 11:01:27 (7 h before created_at), ... open, solved 2020-11-14 11:01:27, closed the next day
    assert t["created_at"] == pd.Timestamp("2020-08-28 18:06:36", tz="UTC")
    assert t["resolved_at"] == pd.Timestamp("2020-11-14 11:01:27", tz="UTC")
    assert t["reopens"] == 0 and t["priority"] == "urgent" and t["channel"] == "email"
    assert str(t["customer_id"]) == "2222"  # no organization: the requester
    assert pd.isna(t["first_response_at"])  # no seed comment belongs to a seed ticket
    schedule = converted.schedules["360000310393"]
    assert schedule.tz == "America/Los_Angeles"
    assert {d: schedule.open_minutes(d) for d in ("mon", "fri", "sat")} == {"mon": ((480, 1200),), "fri": ((480, 1200),), "sat": ()}
    assert "schedule holidays name no known schedule: none applied" in converted.notes


def test_zendesk_replies_reopens_and_ratings_by_hand():
    ticket = pd.DataFrame({"id": ["1", "2"], "created_at": ["2024-03-01 09:00:00", "2024-03-02 10:00:00"],
                           "updated_at": ["2024-03-05 12:00:00", "2024-03-03 10:00:00"], "status": ["closed", "solved"],
                           "organization_id": ["org-a", None], "requester_id": ["u1", "u2"], "via_channel": "web",
                           "assignee_id": "a1", "group_id": "g1", "priority": "high",
                           "satisfaction_score": ["good", "bad"], "_fivetran_synced": "2024-03-06 00:00:00"})  # fmt: skip
    user = pd.DataFrame({"id": ["a1", "u1", "u2"], "role": ["agent", "end-user", "end-user"]})
    comment = pd.DataFrame({"ticket_id": ["1", "1", "1", "1", "2"], "user_id": ["u1", "a1", "a1", "a1", "a1"],
                            "created": ["2024-03-01 09:00:00", "2024-03-01 09:30:00", "2024-03-02 08:00:00",
                                        "2024-03-04 08:00:00", "2024-03-02 11:00:00"], "public": ["TRUE"] * 4 + ["FALSE"]})  # fmt: skip
    history = pd.DataFrame({"ticket_id": ["1"] * 4, "field_name": "status", "value": ["new", "solved", "open", "solved"],
                            "updated": ["2024-03-01 09:00:00", "2024-03-03 09:00:00", "2024-03-03 15:00:00", "2024-03-04 09:00:00"]})  # fmt: skip
    converted = fivetran_zendesk({"ticket": ticket, "user": user, "ticket_comment": comment, "ticket_field_history": history})
    t = converted.tables["tickets"].set_index("ticket_id")
    assert t.loc["1", "first_response_at"] == pd.Timestamp("2024-03-01 09:30:00", tz="UTC")  # the agent, not the customer
    assert t.loc["1", "contacts"] == 2  # public agent replies up to the first solve (Mar 3)
    assert t.loc["1", "resolved_at"] == pd.Timestamp("2024-03-03 09:00:00", tz="UTC") and t.loc["1", "reopens"] == 1
    assert pd.isna(t.loc["2", "first_response_at"])  # its only agent comment is private
    assert t.loc["2", "resolved_at"] == pd.Timestamp("2024-03-03 10:00:00", tz="UTC")  # no history: updated_at
    assert t.loc["2", "customer_id"] == "u2"
    surveys = converted.tables["surveys"]
    assert surveys["score"].tolist() == [1.0, 0.0] and set(surveys["survey"]) == {"csat"}
    csat = csmetrics.survey_metrics(surveys).set_index("metric")["value"]
    assert csat["csat"] == 0.5  # good counts as satisfied on the 0-1 scale (threshold 1)
    assert converted.as_of == pd.Timestamp("2024-03-06", tz="UTC")


def test_cli_converts_zendesk_and_reports(tmp_path, shared_data):
    runner = CliRunner()
    result = runner.invoke(app, ["convert", "fivetran-zendesk", str(shared_data / "fivetran_zendesk"), "--out", str(tmp_path / "data")])
    assert result.exit_code == 0, result.output
    assert (tmp_path / "data" / "tickets.parquet").exists() and (tmp_path / "data" / "schedules.parquet").exists()
    report = runner.invoke(app, ["report", str(tmp_path / "data"), "--out", str(tmp_path / "report"), "--quiet"])
    assert report.exit_code == 0, report.output


def _zendesk_minutes(days: range, start: str, end: str) -> list[tuple[int, int]]:
    """Zendesk's schedule rows: (start_time, end_time) minutes since Sunday 00:00 local, day 0 = Sunday."""
    a, b = (int(t[:2]) * 60 + int(t[3:]) for t in (start, end))
    return [(1440 * d + a, 1440 * d + b) for d in days]


def test_zendesk_business_minutes_across_a_schedule_change():
    """README_fivetran.md's case from dbt_zendesk's DECISIONLOG, restated in local time: ticket 941606,
    created Tue 2020-09-29 17:01:38 UTC on "Level 1 Chicago" (every day 07:00-21:00 Chicago = UTC
    720-1560 ... from Sunday 00:00), switched at 2020-09-30 19:01:25 to "Level 2 San Francisco" (Mon-Fri
    08:00-17:30 Los Angeles = UTC 2340-2910 ...), first public agent reply 2020-09-30 19:01:46.

    csmetrics keeps the schedule in force at creation for the ticket's life (METRICS.md §11):
    Tue 17:01:38 -> Wed 02:00 UTC (Chicago's 21:00) = 538 min 22 s, Wed 12:00 -> 19:01:46 UTC = 421 min 46 s:
    960 min 08 s. The package's all-schedules rule gives 538 min 22 s + 421 min 25 s (Level 1 to the
    switch) + 21 s (Level 2, open then) = the same 960 min 08 s, here, because both schedules are open
    at the switch; the README's 959.46 writes its seconds as hundredths and drops the first 22 s."""
    level1 = _zendesk_minutes(range(7), "07:00", "21:00")
    level2 = _zendesk_minutes(range(1, 6), "08:00", "17:30")
    schedule = pd.DataFrame(
        [("1", "Level 1 Chicago", "Central Time (US & Canada)", s, e, "2019-01-01 00:00:00") for s, e in level1]
        + [("2", "Level 2 San Francisco", "Pacific Time (US & Canada)", s, e, "2019-06-01 00:00:00") for s, e in level2],
        columns=["id", "name", "time_zone", "start_time", "end_time", "created_at"],
    )
    ticket = pd.DataFrame({"id": ["941606", "7"], "created_at": ["2020-09-29 17:01:38", "2020-09-29 17:01:38"],
                           "status": "open", "requester_id": ["u1", "u2"], "_fivetran_synced": "2020-10-01 00:00:00"})  # fmt: skip
    ticket_schedule = pd.DataFrame({"ticket_id": ["941606", "941606"], "created_at": ["2020-09-29 17:01:38", "2020-09-30 19:01:25"],
                                    "schedule_id": ["1", "2"]})  # fmt: skip
    user = pd.DataFrame({"id": ["a1"], "role": ["agent"]})
    comment = pd.DataFrame({"ticket_id": ["941606", "7"], "user_id": "a1", "created": "2020-09-30 19:01:46", "public": "TRUE"})
    converted = fivetran_zendesk({"ticket": ticket, "ticket_schedule": ticket_schedule, "schedule": schedule,
                                  "user": user, "ticket_comment": comment})  # fmt: skip
    level1_tz, level2_tz = converted.schedules["1"], converted.schedules["2"]
    assert (level1_tz.tz, level2_tz.tz) == ("America/Chicago", "America/Los_Angeles")
    # the local restatement gives the DECISIONLOG's UTC minutes from Sunday 2020-09-27 00:00 UTC
    sunday = pd.Timestamp("2020-09-27", tz="UTC").value
    for zone, expected in ((level1_tz, [(720, 1560), (2160, 3000), (3600, 4440), (5040, 5880), (6480, 7320), (7920, 8760), (9360, 10200)]),
                           (level2_tz, [(2340, 2910), (3780, 4350), (5220, 5790), (6660, 7230), (8100, 8670)])):  # fmt: skip
        starts, ends = zone.segments(sunday, sunday + 7 * 86_400 * 10**9)
        week = [(int((a - sunday) // 60e9), int((b - sunday) // 60e9)) for a, b in zip(starts, ends)]
        assert [w for w in week if 0 <= w[0] < 10080] == expected
    t = converted.tables["tickets"].set_index("ticket_id")
    assert t.loc["941606", "schedule_id"] == "1"  # the schedule in force at creation
    assert t.loc["7", "schedule_id"] == "1"  # no ticket_schedule row: the default (the first created)
    assert any("changed schedule" in note for note in converted.notes)
    expected = 538 + 22 / 60 + 421 + 46 / 60
    business = {**converted.schedules, "default": converted.schedules["1"]}
    one = converted.tables["tickets"][converted.tables["tickets"]["ticket_id"] == "941606"]
    frame = csmetrics.support_metrics(one, freq="M", business_hours=business, schedule_column="schedule_id", as_of="2020-10-01")
    value = frame[(frame["metric"] == "first_response_business_minutes_p50") & (frame["period"] == "2020-09")]["value"]
    assert value.tolist() == [pytest.approx(expected, abs=1e-9)]
    # the all-schedules rule by hand, piece by piece, agrees here
    switch = pd.Timestamp("2020-09-30 19:01:25", tz="UTC")
    pieces = csmetrics.business_minutes([t.loc["941606", "created_at"]], [switch], level1_tz)[0] + csmetrics.business_minutes(
        [switch], [t.loc["941606", "first_response_at"]], level2_tz
    )[0]
    assert pieces == pytest.approx(expected, abs=1e-9)
    # the last schedule for the whole life: Tue 10:01:38 -> 17:30 PDT + Wed 08:00 -> 12:01:46 PDT
    last = csmetrics.business_minutes([t.loc["941606", "created_at"]], [t.loc["941606", "first_response_at"]], level2_tz)[0]
    assert last == pytest.approx(448 + 22 / 60 + 241 + 46 / 60, abs=1e-9)


def test_report_takes_business_hours_from_converted_schedules(tmp_path, shared_data):
    runner = CliRunner()
    assert runner.invoke(app, ["convert", "fivetran-zendesk", str(shared_data / "fivetran_zendesk"), "--out", str(tmp_path / "data")]).exit_code == 0
    tickets = pd.read_parquet(tmp_path / "data" / "tickets.parquet")
    assert set(tickets["schedule_id"]) == {"360000310393"}  # ticket_schedule names unknown schedules: the default
    result = runner.invoke(app, ["report", str(tmp_path / "data"), "--out", str(tmp_path / "report"), "--no-html"])
    assert result.exit_code == 0, result.output
    assert "business hours: 1 schedule(s) from schedules.parquet" in result.output
    assert "match no table" not in result.output
    metrics = pd.read_parquet(tmp_path / "report" / "metrics.parquet")
    assert {"first_response_business_minutes_p50", "resolution_business_hours_p50"} <= set(metrics["metric"])
    # ticket 11071, alone in 2020-08: created Fri 2020-08-28 11:06:36 PDT, solved Sat 2020-11-14 03:01:27 PST,
    # on SupportCA (Mon-Fri 08:00-20:00 Los Angeles): every weekday Aug 28 - Nov 13 x 12 h, less Aug 28 08:00-11:06:36
    weekdays = sum(1 for d in pd.date_range("2020-08-28", "2020-11-13", freq="D") if d.day_of_week < 5)
    by_hand = weekdays * 12.0 - (3 + 6 / 60 + 36 / 3600)
    august = metrics[(metrics["metric"] == "resolution_business_hours_p50") & (metrics["period"] == pd.Timestamp("2020-08-01", tz="UTC"))]
    assert august["value"].tolist() == [pytest.approx(by_hand, abs=1e-9)]
    # the same schedule from the table written to DATA_DIR
    sched = csmetrics.io.read_schedules(tmp_path / "data")
    assert set(sched) == {"360000310393", "default"} and sched["default"].open_minutes("mon") == ((480, 1200),)


# --------------------------------------------------------------------------
# datagen's tables written the Stripe way, converted back: the same metrics
# --------------------------------------------------------------------------
from csmetrics.datagen import generate  # noqa: E402


def datagen_as_stripe(tables: dict[str, pd.DataFrame]) -> dict[str, pd.DataFrame]:
    """datagen's billing as Fivetran's Stripe tables: each recurring line an invoice line of the
    customer's subscription over its service period (discounts as negative lines), one-off lines as
    invoice items, refunds as refunds of a charge; amounts in minor units, timestamps as naive text."""
    billing, customers = tables["billing"], tables["customers"]

    def text(values):
        return pd.to_datetime(values, utc=True).dt.strftime("%Y-%m-%d %H:%M:%S").where(pd.notna(values), None)

    cents = (billing["amount"] * 100).round().astype("int64").astype(str)
    customer = "cus_" + billing["customer_id"].astype(str)
    charged = billing["kind"] != "refund"
    recurring = billing["kind"] == "recurring"
    lines = pd.DataFrame({
        "id": "il_" + billing["line_id"].astype(str), "invoice_id": "in_" + billing["line_id"].astype(str),
        "amount": cents, "currency": billing["currency"].str.lower(),
        "period_start": text(billing["service_start"].where(recurring, billing["invoiced_at"])),
        "period_end": text(billing["service_end"].where(recurring, billing["invoiced_at"])),
        "subscription_id": ("sub_" + billing["customer_id"].astype(str)).where(recurring, None),
        "plan_id": ("plan_" + billing["plan"].astype(str)).where(recurring, None), "livemode": "TRUE",
        "_fivetran_synced": "2030-01-01 00:00:00",
    })[charged.to_numpy()]  # fmt: skip
    invoice = pd.DataFrame({"id": lines["invoice_id"], "customer_id": customer[charged], "created": text(billing["invoiced_at"][charged]),
                            "livemode": "TRUE"})  # fmt: skip
    plans = sorted(billing.loc[recurring, "plan"].dropna().unique())
    plan = pd.DataFrame({"id": [f"plan_{p}" for p in plans], "amount": "100", "currency": "usd", "interval": "month",
                         "interval_count": "1", "nickname": plans})  # fmt: skip
    refunds = billing[billing["kind"] == "refund"]
    refund = pd.DataFrame({"id": "re_" + refunds["line_id"].astype(str), "amount": (refunds["amount"].abs() * 100).round().astype("int64").astype(str),
                           "currency": refunds["currency"].str.lower(), "created": text(refunds["invoiced_at"]),
                           "charge_id": "ch_" + refunds["line_id"].astype(str), "status": "succeeded"})  # fmt: skip
    charge = pd.DataFrame({"id": refund["charge_id"], "customer_id": "cus_" + refunds["customer_id"].astype(str)})
    stripe_customers = pd.DataFrame({"id": "cus_" + customers["customer_id"].astype(str), "created": text(customers["signup_at"])})
    return {"invoice_line_item": lines, "invoice": invoice, "plan": plan, "refund": refund, "charge": charge, "customer": stripe_customers}


@pytest.mark.parametrize("seed", [3, 11])
def test_datagen_round_trip_through_the_stripe_schema(seed):
    tables = generate(60, 14, seed=seed, start="2023-01-01")
    converted = fivetran_stripe(datagen_as_stripe(tables))
    original = tables["billing"].assign(customer_id="cus_" + tables["billing"]["customer_id"].astype(str))
    back = converted.tables["billing"]
    assert len(back) == len(original)
    fx, as_of = tables["fx"], pd.Timestamp("2024-02-20", tz="UTC")
    for function, kwargs in ((csmetrics.revenue_metrics, {"by": "plan"}), (csmetrics.customer_metrics, {}), (csmetrics.value_metrics, {})):
        expected = function(original, fx=fx, as_of=as_of, **kwargs)
        got = function(back, fx=fx, as_of=as_of, **kwargs)
        assert len(expected) > 20
        pd.testing.assert_frame_equal(got, expected, check_exact=False, rtol=1e-12, atol=1e-9)
    pd.testing.assert_frame_equal(csmetrics.renewal_calendar(back, fx=fx, as_of=as_of), csmetrics.renewal_calendar(original, fx=fx, as_of=as_of))


def datagen_as_zendesk(tickets: pd.DataFrame) -> dict[str, pd.DataFrame]:
    """datagen's tickets as Fivetran's Zendesk tables: the first public agent reply at first_response_at
    and contacts - 1 more before the solve; status history new -> solved (-> open -> solved per reopen)."""
    def text(values):
        return pd.to_datetime(values, utc=True).dt.strftime("%Y-%m-%d %H:%M:%S").where(pd.notna(values), None)

    ticket = pd.DataFrame({
        "id": tickets["ticket_id"].astype(str), "created_at": text(tickets["created_at"]),
        "updated_at": text(tickets["resolved_at"].fillna(tickets["created_at"])),
        "status": np.where(tickets["resolved_at"].notna(), "closed", "open"), "organization_id": "org_" + tickets["customer_id"].astype(str),
        "requester_id": "u_" + tickets["customer_id"].astype(str), "via_channel": tickets["channel"], "priority": tickets["priority"],
        "assignee_id": "agent_" + tickets["agent_id"].astype(str), "_fivetran_synced": "2030-01-01 00:00:00",
    })  # fmt: skip
    comments, history = [], []
    for row in tickets.itertuples():
        key, agent = str(row.ticket_id), f"agent_{row.agent_id}"
        comments.append((key, f"u_{row.customer_id}", row.created_at, "TRUE"))  # the customer's own message
        if pd.notna(row.first_response_at):
            n = int(row.contacts) if pd.notna(row.contacts) else 1
            stop = row.resolved_at if pd.notna(row.resolved_at) else row.first_response_at + pd.Timedelta(hours=n)
            for k in range(n):
                comments.append((key, agent, row.first_response_at + (stop - row.first_response_at) * k / max(n, 1), "TRUE"))
        history.append((key, "status", row.created_at, "new"))
        if pd.notna(row.resolved_at):
            history.append((key, "status", row.resolved_at, "solved"))
            for k in range(int(row.reopens) if pd.notna(row.reopens) else 0):
                history.append((key, "status", row.resolved_at + pd.Timedelta(hours=2 * k + 1), "open"))
                history.append((key, "status", row.resolved_at + pd.Timedelta(hours=2 * k + 2), "solved"))
    comment = pd.DataFrame(comments, columns=["ticket_id", "user_id", "created", "public"]).assign(created=lambda c: text(c["created"]))
    field_history = pd.DataFrame(history, columns=["ticket_id", "field_name", "updated", "value"]).assign(updated=lambda h: text(h["updated"]))
    agents = sorted({f"agent_{a}" for a in tickets["agent_id"]})
    user = pd.DataFrame({"id": agents + sorted({f"u_{c}" for c in tickets["customer_id"]}),
                         "role": ["agent"] * len(agents) + ["end-user"] * tickets["customer_id"].nunique()})  # fmt: skip
    return {"ticket": ticket, "ticket_comment": comment, "ticket_field_history": field_history, "user": user}


@pytest.mark.parametrize("seed", [2, 9])
def test_datagen_round_trip_through_the_zendesk_schema(seed):
    tickets = generate(40, 6, seed=seed, start="2024-01-01")["tickets"]
    tickets = tickets.assign(created_at=tickets["created_at"].dt.floor("s"), first_response_at=tickets["first_response_at"].dt.floor("s"),
                             resolved_at=tickets["resolved_at"].dt.floor("s"))  # fmt: skip  # Zendesk keeps seconds
    back = fivetran_zendesk(datagen_as_zendesk(tickets)).tables["tickets"]
    # what the schema cannot carry (handle and wait time, abandonment) is left out of the comparison
    original = tickets.drop(columns=["handle_seconds", "wait_seconds", "abandoned"]).assign(
        customer_id="org_" + tickets["customer_id"].astype(str),
        contacts=tickets["contacts"].where(tickets["first_response_at"].notna()),
    )
    assert len(back) == len(original)
    as_of = pd.Timestamp("2024-06-30", tz="UTC")
    for by in (None, "channel", "priority"):
        expected = csmetrics.support_metrics(original, as_of=as_of, by=by)
        got = csmetrics.support_metrics(back.drop(columns=["group"]), as_of=as_of, by=by)
        assert len(expected) > 20
        pd.testing.assert_frame_equal(got, expected)


def test_zendesk_intervals_past_midnight_are_split_and_the_schedules_table_is_checked(tmp_path):
    # Saturday 22:00 to Sunday 02:00 local (minutes 9960-10200 wrap the week): two day intervals, none lost
    schedule = pd.DataFrame({"id": "9", "name": "night", "time_zone": "UTC", "start_time": [9960, 1320],
                             "end_time": [10200, 1560], "created_at": "2020-01-01 00:00:00"})  # fmt: skip
    ticket = pd.DataFrame({"id": ["1"], "created_at": ["2024-03-02 21:00:00"], "status": "open", "requester_id": "u"})
    converted = fivetran_zendesk({"ticket": ticket, "schedule": schedule})
    night = converted.schedules["9"]
    assert night.open_minutes("sat") == ((1320, 1440),) and night.open_minutes("sun") == ((0, 120), (1320, 1440))
    assert night.open_minutes("mon") == ((0, 120),)
    # Sat 2024-03-02 21:00 -> Sun 03:00 UTC: 22:00-02:00 open = 240 minutes
    assert csmetrics.business_minutes(["2024-03-02 21:00"], ["2024-03-03 03:00"], night).tolist() == [240.0]
    converted.write(tmp_path)
    assert csmetrics.io.read_schedules(tmp_path)["default"] == night
    bad = converted.tables["schedules"].assign(tz=["UTC", "Europe/Berlin", "UTC", "UTC"])
    bad.to_parquet(tmp_path / "schedules.parquet")
    with pytest.raises(csmetrics.ConfigError, match="schedule '9' has several time zones"):
        csmetrics.io.read_schedules(tmp_path)
    runner = CliRunner()
    result = runner.invoke(app, ["report", str(tmp_path), "--out", str(tmp_path / "out"), "--no-html"])
    assert result.exit_code == 2 and "several time zones" in result.output


def _one_subscription(start="2024-01-01", price=100.0, currency="usd", end=None):
    subs = pd.DataFrame({"id": ["sub_a"], "customer": ["cus_a"], "price": [price], "currency": [currency], "interval": ["month"],
                         "count": [1], "start": [pd.Timestamp(start)], "end": [pd.Timestamp(end) if end else pd.NaT],
                         "plan": ["pro"], "quantity": [1]})  # fmt: skip
    return write_stripe(subs, "2024-08-01 00:00:00")


def _with_coupon(tables, start, *, percent=None, amount=None, currency="usd", duration="forever", months=None, end=None):
    tables["coupon"] = pd.DataFrame({"id": ["co_1"], "percent_off": [percent], "amount_off": [amount], "currency": [currency],
                                     "duration": [duration], "duration_in_months": [months], "livemode": ["TRUE"]})  # fmt: skip
    tables["subscription_discount"] = pd.DataFrame({"id": ["di_1"], "coupon_id": ["co_1"], "subscription_id": ["sub_a"],
                                                    "customer_id": ["cus_a"], "start": [start], "end": [end]})  # fmt: skip
    return tables


def _month_end_mrr(billing, as_of="2024-07-31 12:00"):
    frame = csmetrics.revenue_metrics(billing, freq="M", as_of=as_of)
    mrr = frame[frame["metric"] == "mrr"]
    return dict(zip(pd.DatetimeIndex(mrr["period"]).strftime("%Y-%m"), mrr["value"].round(6)))


def test_stripe_discounts_become_negative_recurring_lines_by_hand():
    # 20% for 3 months from Feb 1 (end empty: start + duration_in_months = May 1) on 100 USD a month
    billing = fivetran_stripe(_with_coupon(_one_subscription(), "2024-02-01 00:00:00", percent=20.0, duration="repeating", months=3)).tables["billing"]
    discount = billing[billing["amount"] < 0]
    assert discount[["amount", "interval_months", "plan"]].to_numpy().tolist() == [[-20.0, 1.0, "pro"]]
    assert (discount["service_start"].iloc[0], discount["service_end"].iloc[0]) == (pd.Timestamp("2024-02-01", tz="UTC"), pd.Timestamp("2024-05-01", tz="UTC"))
    assert _month_end_mrr(billing) == {"2024-01": 100, "2024-02": 80, "2024-03": 80, "2024-04": 80, "2024-05": 100, "2024-06": 100, "2024-07": 100}
    moves = csmetrics.mrr_movements(billing, as_of="2024-08-01")
    assert moves["kind"].tolist() == ["new", "contraction", "expansion"] and moves["amount"].tolist() == [100.0, -20.0, 20.0]
    # forever, 30 USD off: 70 from the discount's start on, open-ended
    billing = fivetran_stripe(_with_coupon(_one_subscription(), "2024-03-15 00:00:00", amount=3000)).tables["billing"]
    assert _month_end_mrr(billing)["2024-02"] == 100 and _month_end_mrr(billing)["2024-07"] == 70
    assert billing.loc[billing["amount"] < 0, "service_end"].isna().all()
    # amount_off above the price: the invoice stops at zero (capped), not below
    billing = fivetran_stripe(_with_coupon(_one_subscription(), "2024-03-01 00:00:00", amount=15000)).tables["billing"]
    assert _month_end_mrr(billing)["2024-04"] == 0
    # once, 50%, with no invoiced cycle after its start: one interval of the running item, Mar 15 - Apr 15
    billing = fivetran_stripe(_with_coupon(_one_subscription(), "2024-03-15 00:00:00", percent=50.0, duration="once")).tables["billing"]
    once = billing[billing["amount"] < 0]
    assert once["amount"].tolist() == [-50.0]
    assert (once["service_start"].iloc[0], once["service_end"].iloc[0]) == (pd.Timestamp("2024-03-15", tz="UTC"), pd.Timestamp("2024-04-15", tz="UTC"))
    assert _month_end_mrr(billing) == {"2024-01": 100, "2024-02": 100, "2024-03": 50, "2024-04": 100, "2024-05": 100, "2024-06": 100, "2024-07": 100}
    # an amount in another currency than the subscription's cannot apply: left out, with a note
    converted = fivetran_stripe(_with_coupon(_one_subscription(), "2024-03-01 00:00:00", amount=1000, currency="eur"))
    assert not (converted.tables["billing"]["amount"] < 0).any()
    assert any("another currency" in note for note in converted.notes)
    # a discount ending with the subscription: the negative line stops at the subscription's end
    billing = fivetran_stripe(_with_coupon(_one_subscription(end="2024-06-01"), "2024-02-01 00:00:00", percent=10.0)).tables["billing"]
    assert billing.loc[billing["amount"] < 0, "service_end"].tolist() == [pd.Timestamp("2024-06-01", tz="UTC")]
    assert _month_end_mrr(billing)["2024-05"] == 90 and _month_end_mrr(billing)["2024-06"] == 0


def test_stripe_discounts_on_invoiced_cycles_by_hand():
    """Invoiced months Jan-Mar at 100 (fixed lines), the item running on after Mar 31. A once coupon of
    30 USD from Feb 10 goes to the first cycle that starts inside it, March's invoice; a forever 10% from
    Feb 10 discounts the March invoice and the running item, not February (invoiced before it)."""
    tables = _one_subscription()
    months = pd.date_range("2024-01-01", periods=4, freq="MS")
    tables["invoice"] = pd.DataFrame({"id": [f"in_{i}" for i in range(3)], "customer_id": "cus_a",
                                      "created": months[:3].strftime("%Y-%m-%d %H:%M:%S")})  # fmt: skip
    tables["invoice_line_item"] = pd.DataFrame({"id": [f"il_{i}" for i in range(3)], "invoice_id": [f"in_{i}" for i in range(3)],
                                                "amount": "10000", "currency": "usd", "subscription_id": "sub_a", "plan_id": "plan_sub_a",
                                                "period_start": months[:3].strftime("%Y-%m-%d %H:%M:%S"),
                                                "period_end": months[1:].strftime("%Y-%m-%d %H:%M:%S")})  # fmt: skip
    once = fivetran_stripe(_with_coupon(dict(tables), "2024-02-10 00:00:00", amount=3000, duration="once")).tables["billing"]
    assert once.loc[once["amount"] < 0, ["line_id", "amount"]].to_numpy().tolist() == [["di_1-il_2", -30.0]]
    assert _month_end_mrr(once, "2024-05-15") == {"2024-01": 100, "2024-02": 100, "2024-03": 70, "2024-04": 100, "2024-05": 100}
    forever = fivetran_stripe(_with_coupon(dict(tables), "2024-02-10 00:00:00", percent=10.0)).tables["billing"]
    assert sorted(forever.loc[forever["amount"] < 0, "line_id"]) == ["di_1-il_2", "di_1-si_sub_a"]
    assert _month_end_mrr(forever, "2024-05-15") == {"2024-01": 100, "2024-02": 100, "2024-03": 90, "2024-04": 90, "2024-05": 90}


def test_zendesk_errors_name_the_zendesk_adapter():
    with pytest.raises(AdapterError, match="^fivetran-zendesk: the source has no 'ticket' table"):
        fivetran_zendesk({"user": pd.DataFrame({"id": ["a"], "role": ["agent"]})})

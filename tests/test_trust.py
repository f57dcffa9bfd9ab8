"""Issue 12: nothing silently wrong. Finite numbers, exact ids, timestamps in range, one date
format per column, every option checked, joins that agree, the CLI in one line."""

from __future__ import annotations

import shutil
import warnings

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

import csmetrics
from csmetrics import ValidationError
from csmetrics.cli import app
from csmetrics.options import ConfigError
from csmetrics.config import check_config

from .conftest import SAMPLE

runner = CliRunner()


def tickets(**columns) -> pd.DataFrame:
    n = max((len(v) for v in columns.values() if isinstance(v, list)), default=3)
    base = {"ticket_id": list(range(1, n + 1)), "customer_id": [1] * n, "created_at": ["2024-01-0%d 10:00" % (i % 9 + 1) for i in range(n)]}
    return pd.DataFrame({**base, **columns})


def billing(amounts, **columns) -> pd.DataFrame:
    n = len(amounts)
    base = {"customer_id": list(range(1, n + 1)), "kind": "recurring", "amount": amounts,
            "service_start": "2024-01-01", "service_end": "2024-02-01"}  # fmt: skip
    return pd.DataFrame({**base, **columns})


def rejected_rules(df, table, **kwargs) -> dict[int, str]:
    valid, rejected = csmetrics.validate(df, table, quarantine=True, **kwargs)
    assert len(valid) + len(rejected) == len(df)
    return dict(zip(rejected.index, rejected["reason"]))


# --------------------------------------------------------------------------
# 2. Finite numbers, money in range, exact ids, timestamps in range
# --------------------------------------------------------------------------
@pytest.mark.parametrize("column", ["handle_seconds", "wait_seconds", "contacts", "reopens"])
@pytest.mark.parametrize("bad", [np.inf, -np.inf, "inf", "-Infinity"])
def test_non_finite_durations_and_counts_fail_their_row(column, bad):
    df = tickets(**{column: [1.0, bad, 2.0]})
    assert rejected_rules(df, "tickets") == {1: f"{column}: finite"}
    with pytest.raises(ValidationError, match=f"tickets.{column}: rule 'finite'"):
        csmetrics.validate(df, "tickets")


def test_inf_handle_seconds_never_reach_the_aht():
    df = tickets(handle_seconds=[60.0, np.inf, 120.0])
    valid, _ = csmetrics.validate(df, "tickets", quarantine=True)
    frame = csmetrics.support_metrics(valid, validated=True)
    assert frame.loc[frame["metric"] == "aht_seconds", "value"].iloc[0] == 90.0


@pytest.mark.parametrize("amount", [1e11 + 1, -1e11 - 1, 1e15, 9.3e18, np.inf, -np.inf])
def test_money_beyond_the_exact_range_fails_validation(amount):
    df = billing([100.0, amount])
    reason = rejected_rules(df, "billing")[1]
    assert reason.startswith("amount: ") and ("1e+11" in reason or "finite" in reason)
    with pytest.raises(ValidationError, match="billing.amount"):
        csmetrics.revenue_metrics(df)


def test_money_at_the_bound_is_kept_and_exact():
    frame = csmetrics.revenue_metrics(billing([1e11, 0.0001]), as_of="2024-01-15")
    mrr = frame.loc[frame["metric"] == "mrr", "value"].iloc[0]
    assert mrr == 1e11 + 0.0001  # exact in 1e-4 units, not dropped, not wrapped


def test_a_monthly_amount_beyond_the_range_is_an_error_not_a_wrap():
    # a line of one second: its monthly amount is 2.6e6 times the amount
    df = billing([9e10], service_end=["2024-01-01 00:00:01"])
    with pytest.raises(ValidationError, match="exact money range"):
        csmetrics.revenue_metrics(df)


@pytest.mark.parametrize("rate", [np.inf, 0.0, -1.0, np.nan, "x"])
def test_bad_fx_rates_fail_their_row(rate):
    fx = pd.DataFrame({"currency": ["EUR", "EUR"], "date": ["2024-01-01", "2024-02-01"], "rate": [1.1, rate]})
    reasons = rejected_rules(fx, "fx")
    assert list(reasons) == [1] and reasons[1].startswith("rate: ")


def test_inf_fx_rate_does_not_drop_a_currency():
    fx = pd.DataFrame({"currency": ["EUR", "EUR"], "date": ["2023-12-01", "2024-01-01"], "rate": [1.1, np.inf]})
    df = billing([100.0, 100.0], currency=["EUR", "USD"])
    with pytest.raises(ValidationError, match="fx.rate: rule 'finite'"):
        csmetrics.report({"billing": df, "fx": fx}, html=False)
    kept = csmetrics.report({"billing": df, "fx": fx}, html=False, quarantine=True)
    mrr = kept.metrics.query("metric == 'mrr'")["value"].iloc[0]
    assert mrr == pytest.approx(100 * 1.1 + 100)  # the EUR customer is converted at the finite rate


@pytest.mark.parametrize("table,column", [("costs", "amount"), ("events", "duration_seconds")])
def test_costs_and_event_durations_must_be_finite(table, column):
    frames = {
        "costs": pd.DataFrame({"incurred_at": ["2024-01-01"] * 2, "category": "sales", "amount": [10.0, np.inf]}),
        "events": pd.DataFrame({"customer_id": 1, "timestamp": ["2024-01-01"] * 2, "event": "x", "duration_seconds": [1.0, np.inf]}),
    }
    assert rejected_rules(frames[table], table) == {1: f"{column}: finite"}


@pytest.mark.parametrize("dtype", ["uint64", "object"])
def test_ids_beyond_int64_are_kept_exactly(dtype):
    big = 2**63 + 12345
    ids = np.array([big, 7], dtype=dtype) if dtype == "uint64" else np.array([big, 7], dtype=object)
    df = billing([100.0, 50.0], customer_id=ids)
    valid = csmetrics.validate(df, "billing")
    assert valid["customer_id"].tolist() == [str(big), "7"]
    mrr = csmetrics.current_mrr(df, as_of="2024-01-15")
    assert mrr[str(big)] == 100.0 and (mrr.index.astype(str).str.startswith("-")).sum() == 0


def test_inexact_float_ids_fail_their_row():
    df = billing([100.0, 50.0, 20.0], customer_id=[1e20, 3.0, np.inf])
    reasons = rejected_rules(df, "billing")
    assert set(reasons) == {0, 2} and all("exact id" in r for r in reasons.values())


@pytest.mark.parametrize("unit", ["s", "ms", "us"])
def test_timestamps_outside_the_nanosecond_range_fail_their_row(unit):
    created = np.array(["2024-01-01", "3000-01-01", "1500-06-01"], dtype=f"M8[{unit}]")
    df = tickets(created_at=created)
    reasons = rejected_rules(df, "tickets")
    assert set(reasons) == {1, 2} and all("timestamp within 1677" in r for r in reasons.values())
    tz_aware = df.assign(created_at=pd.Series(created).dt.tz_localize("Europe/Berlin"))
    assert set(rejected_rules(tz_aware, "tickets")) == {1, 2}


@pytest.mark.parametrize("text", ["3000-01-01", "1000-01-01T00:00:00Z", "9999-12-31 23:59"])
def test_iso_strings_outside_the_range_fail_their_row(text):
    df = tickets(resolved_at=["2024-01-02", text, None])
    assert rejected_rules(df, "tickets") == {1: "resolved_at: timestamp within 1677-09-22..2262-04-11"}


def test_out_of_range_timestamps_in_a_parquet_folder_and_on_dask(tmp_path):
    import dask.dataframe as dd

    folder = tmp_path / "data" / "tickets"
    folder.mkdir(parents=True)
    first = tickets(created_at=np.array(["2024-01-01", "2024-01-02", "2024-01-03"], dtype="M8[s]"))
    second = tickets(ticket_id=[4, 5, 6], created_at=np.array(["2024-02-01", "2500-01-01", "2024-02-03"], dtype="M8[s]"))
    first.to_parquet(folder / "a.parquet")
    second.to_parquet(folder / "b.parquet")
    from csmetrics.io import read_table

    table = read_table(folder)
    with pytest.raises(ValidationError, match="timestamp within 1677"):
        csmetrics.validate(table, "tickets")
    assert len(csmetrics.validate(table, "tickets", quarantine=True)[1]) == 1
    lazy = dd.read_parquet(folder)
    with pytest.raises(ValidationError, match="timestamp within 1677"):
        csmetrics.support_metrics(lazy)
    result = csmetrics.report({"tickets": lazy}, html=False, quarantine=True)
    assert len(result.rejected["tickets"]) == 1 and result.manifest["inputs"]["tickets"]["rows"] == 6
    out = tmp_path / "out"
    done = runner.invoke(app, ["report", str(tmp_path / "data"), "--out", str(out), "--quiet", "--no-html", "--quarantine"])
    assert done.exit_code == 0, done.output
    assert len(pd.read_parquet(out / "rejected" / "tickets.parquet")) == 1


@pytest.mark.parametrize("as_of", ["3000-01-01", "1500-01-01", "not a date", 12.5j])
def test_as_of_out_of_range_is_a_clear_error(as_of):
    with pytest.raises(ConfigError, match="as_of"):
        csmetrics.support_metrics(tickets(), as_of=as_of)
    with pytest.raises(ConfigError, match="as_of"):
        csmetrics.report({"tickets": tickets()}, as_of=as_of, html=False)


# --------------------------------------------------------------------------
# 3. One reading of a date column
# --------------------------------------------------------------------------
def test_one_format_for_the_whole_column():
    df = tickets(created_at=["13/02/2023", "05/02/2023", "28/02/2023"])
    valid = csmetrics.validate(df, "tickets")
    assert valid["created_at"].dt.strftime("%Y-%m-%d").tolist() == ["2023-02-13", "2023-02-05", "2023-02-28"]
    us = tickets(created_at=["02/13/2023", "02/05/2023", "12/31/2023"])
    assert csmetrics.validate(us, "tickets")["created_at"].dt.strftime("%Y-%m-%d").tolist() == ["2023-02-13", "2023-02-05", "2023-12-31"]


def test_conflicting_formats_are_rejected_naming_two_examples():
    df = tickets(created_at=["13/02/2023", "02/13/2023", "05/02/2023"])
    with pytest.raises(ValidationError) as info:
        csmetrics.validate(df, "tickets", quarantine=True)
    message = str(info.value)
    assert "created_at" in message and "'13/02/2023'" in message and "'02/13/2023'" in message


def test_ambiguous_dates_are_rejected_not_guessed():
    with pytest.raises(ValidationError, match="'05/02/2023' reads as"):
        csmetrics.validate(tickets(created_at=["05/02/2023", "06/03/2023", "01/01/2023"]), "tickets")


def test_iso_values_mix_with_one_other_format_and_garbage_fails_its_row():
    df = tickets(created_at=["2023-02-01 10:00", "13/02/2023", "not a date"])
    reasons = rejected_rules(df, "tickets")
    assert reasons == {2: "created_at: coercible to timestamp"}  # reported once, not again as "not null"


# --------------------------------------------------------------------------
# 4. Every option is checked
# --------------------------------------------------------------------------
BILLING = billing([100.0, 50.0])


@pytest.mark.parametrize(
    "call,match",
    [
        (lambda: csmetrics.revenue_metrics(BILLING, count_new_churn="no"), "count_new_churn must be true or false"),
        (lambda: csmetrics.revenue_metrics(BILLING, count_new_churn=1), "count_new_churn"),
        (lambda: csmetrics.revenue_metrics(BILLING, renewal_grace_days="7"), "renewal_grace_days must be a finite number"),
        (lambda: csmetrics.revenue_metrics(BILLING, renewal_grace_days=-1), "renewal_grace_days must lie in"),
        (lambda: csmetrics.revenue_metrics(BILLING, renewal_grace_days=np.inf), "renewal_grace_days"),
        (lambda: csmetrics.customer_metrics(BILLING, repeat_window_days=None), "repeat_window_days"),
        (lambda: csmetrics.value_metrics(BILLING, gross_margin=0), "gross_margin must lie in \\(0, 1\\]"),
        (lambda: csmetrics.value_metrics(BILLING, gross_margin=1.5), "gross_margin"),
        (lambda: csmetrics.value_metrics(BILLING, gross_margin="0.8"), "gross_margin"),
        (lambda: csmetrics.value_metrics(BILLING, cost_roles={"acquisition": "sales"}), "list of category names"),
        (lambda: csmetrics.value_metrics(BILLING, cost_roles={"acquisition": [1, 2]}), "list of category names"),
        (lambda: csmetrics.value_metrics(BILLING, cost_roles=["sales"]), "cost_roles must map"),
        (lambda: csmetrics.HealthScorecard(support_scale=0), "support_scale"),
        (lambda: csmetrics.HealthScorecard(support_scale=-3), "support_scale"),
        (lambda: csmetrics.HealthScorecard(bands=(40,)), "bands"),
        (lambda: csmetrics.HealthScorecard(bands=(70, 40)), "bands"),
        (lambda: csmetrics.HealthScorecard(bands=(40, 40)), "bands"),
        (lambda: csmetrics.HealthScorecard(bands=(-5, 70)), "bands"),
        (lambda: csmetrics.HealthScorecard(bands=(40, 170)), "bands"),
        (lambda: csmetrics.HealthScorecard(weights={"usage": 0, "support": 0}), "positive sum"),
        (lambda: csmetrics.HealthScorecard(weights={"usage": -1, "support": 2}), "weights\\['usage'\\]"),
        (lambda: csmetrics.HealthScorecard(weights={"usage": np.nan}), "weights"),
        (lambda: csmetrics.HealthScorecard(baseline_periods=0), "baseline_periods"),
        (lambda: csmetrics.HealthScorecard(baseline_periods=2.5), "baseline_periods"),
        (lambda: csmetrics.HealthScorecard(baseline_periods="3"), "baseline_periods"),
        (lambda: csmetrics.support_metrics(tickets(), sla_targets={"urgent": 0}), "sla_targets\\['urgent'\\]"),
        (lambda: csmetrics.support_metrics(tickets(), sla_targets={"urgent": np.inf}), "sla_targets"),
        (lambda: csmetrics.support_metrics(tickets(), sla_targets={"urgent": "60"}), "sla_targets"),
        (lambda: csmetrics.support_metrics(tickets(), by=3), "by must be a column name"),
        (lambda: csmetrics.support_metrics(tickets(), by=["channel", None]), "by must be"),
        (lambda: csmetrics.support_metrics(tickets(), freq="month"), "freq must be one of"),
        (lambda: csmetrics.support_metrics(tickets(), tz="Mars/Olympus"), "tz must be a time zone"),
        (lambda: csmetrics.engagement_metrics(pd.DataFrame({"customer_id": [1], "timestamp": ["2024-01-01"], "event": ["a"]}),
                                              session_gap_minutes=0), "session_gap_minutes"),
        (lambda: csmetrics.survey_metrics(pd.DataFrame({"response_id": [1], "customer_id": 1, "survey": "csat", "score": [4],
                                                        "responded_at": "2024-01-01"}), csat_thresholds={"1-5": 9}), "csat_thresholds"),
        (lambda: csmetrics.survey_metrics(pd.DataFrame({"response_id": [1], "customer_id": 1, "survey": "csat", "score": [4],
                                                        "responded_at": "2024-01-01"}), csat_thresholds={"five": 4}), "min-max"),
    ],
)
def test_bad_options_are_config_errors_naming_the_option(call, match):
    with pytest.raises(ConfigError, match=match):
        call()


def test_csat_thresholds_take_text_scales_through_the_api():
    surveys = pd.DataFrame({"response_id": [1, 2, 3, 4], "customer_id": 1, "survey": "csat", "score": [5, 4, 3, 5],
                            "responded_at": "2024-01-05"})  # fmt: skip
    for thresholds in ({"1-5": 5}, {(1, 5): 5}, {"1 - 5": 5.0}):
        frame = csmetrics.survey_metrics(surveys, csat_thresholds=thresholds).set_index("metric")
        assert frame.loc["csat", "value"] == 0.5  # 2 of 4 at or above 5


@pytest.mark.parametrize(
    "raw,match",
    [
        ({"policies": {"count_new_churn": "no"}}, "count_new_churn"),
        ({"policies": {"renewal_grace_days": "7"}}, "renewal_grace_days"),
        ({"gross_margin": 0}, "gross_margin"),
        ({"cost_roles": {"retention": "support"}}, "cost_roles.retention"),
        ({"health": {"bands": [40]}}, "bands"),
        ({"health": {"weights": {"usage": 0}}}, "positive sum"),
        ({"health": {"baseline_periods": 0}}, "baseline_periods"),
        ({"health": {"support_scale": -1}}, "support_scale"),
        ({"health": "strong"}, "\\[health\\] must be a table"),
        ({"sla_targets": {"high": -5}}, "sla_targets"),
        ({"by": 5}, "by must be"),
        ({"freq": "fortnight"}, "freq"),
        ({"tz": 3}, "tz"),
        ({"as_of": "3000-01-01"}, "as_of"),
        ({"session_gap_minutes": "30"}, "session_gap_minutes"),
        ({"csat_thresholds": {"1-5": "4"}}, "csat_thresholds"),
    ],
)
def test_config_values_are_checked(raw, match):
    with pytest.raises(ConfigError, match=match):
        check_config(raw)


def test_config_key_lists_come_from_the_code():
    from csmetrics.metrics._billing import Policies
    from csmetrics.config import POLICY_KEYS, scorecard_keys

    assert set(POLICY_KEYS) == set(Policies.__dataclass_fields__)
    assert set(scorecard_keys()) == {"weights", "bands", "baseline_periods", "support_scale", "trend_periods"}


def test_unknown_segment_columns_list_the_columns_there_are(sample_tables):
    with pytest.raises(ConfigError, match="columns there are: .*channel"):
        csmetrics.support_metrics(sample_tables["tickets"], by="chanel")
    with pytest.raises(ConfigError, match="columns there are: .*region"):
        csmetrics.revenue_metrics(sample_tables["billing"], fx=sample_tables["fx"], customers=sample_tables["customers"], by="regoin")
    with pytest.raises(ConfigError, match="in no table; the columns there are"):
        csmetrics.report(sample_tables, by=["regoin"], html=False)


@pytest.mark.parametrize("column", ["period", "freq", "metric", "value", "numerator", "denominator", "ci_low", "ci_high"])
def test_frame_columns_cannot_be_segments(sample_tables, column):
    with pytest.raises(ConfigError, match="cannot be a segment column"):
        csmetrics.support_metrics(sample_tables["tickets"].assign(**{column: "x"}), by=column)


def test_family_columns_cannot_be_segments(sample_tables):
    with pytest.raises(ConfigError, match="cannot be a segment column"):
        csmetrics.engagement_metrics(sample_tables["events"], by="event")
    with pytest.raises(ConfigError, match="cannot be a segment column"):
        csmetrics.mrr_movements(sample_tables["billing"], fx=sample_tables["fx"], by="kind")


def test_wrong_case_columns_get_a_hint():
    with pytest.warns(UserWarning, match="'Channel' is not read; did you mean 'channel'"):
        csmetrics.validate(tickets(Channel=["a", "b", "c"]), "tickets")
    df = tickets().rename(columns={"customer_id": "Customer_Id"})
    with pytest.raises(ValidationError, match="found 'Customer_Id'"):
        csmetrics.validate(df, "tickets")


def test_duplicate_column_labels_are_a_validation_error():
    df = tickets(channel=["a", "b", "c"])
    df.columns = ["ticket_id", "customer_id", "created_at", "created_at"]
    with pytest.raises(ValidationError, match="unique column label"):
        csmetrics.validate(df, "tickets", quarantine=True)
    with pytest.raises(ValidationError, match="unique column label"):
        csmetrics.support_metrics(df)


def test_unknown_keywords_are_rejected(sample_tables):
    with pytest.raises(TypeError):
        csmetrics.revenue_metrics(sample_tables["billing"], fx=sample_tables["fx"], grace_days=7)
    with pytest.raises(TypeError):
        csmetrics.support_metrics(sample_tables["tickets"], sla=60)


# --------------------------------------------------------------------------
# 5. Joins agree across families
# --------------------------------------------------------------------------
@pytest.mark.parametrize("kind", ["text", "categorical"])
def test_text_customer_ids_join_integer_billing_in_every_family(sample_tables, kind):
    t = sample_tables
    ids = t["customers"]["customer_id"].astype(str)
    customers = t["customers"].assign(customer_id=ids.astype("category") if kind == "categorical" else ids)
    for call in (csmetrics.revenue_metrics, csmetrics.customer_metrics, csmetrics.value_metrics):
        same = call(t["billing"], fx=t["fx"], by="region", customers=t["customers"])
        mixed = call(t["billing"], fx=t["fx"], by="region", customers=customers)
        assert mixed["region"].notna().all()
        pd.testing.assert_frame_equal(mixed.drop(columns="region"), same.drop(columns="region"))
        assert mixed["region"].astype(str).tolist() == same["region"].astype(str).tolist()
    moves = csmetrics.mrr_movements(t["billing"], fx=t["fx"], by="region", customers=customers)
    assert moves["region"].notna().all()
    support = csmetrics.support_metrics(t["tickets"], by="region", customers=customers)
    assert support["region"].notna().all()


def test_followups_mrr_with_integer_survey_ids_and_text_billing_ids(sample_tables):
    t = sample_tables
    expected = csmetrics.followups(t["surveys"], billing=t["billing"], fx=t["fx"])
    text_billing = t["billing"].assign(customer_id=t["billing"]["customer_id"].astype(str))
    got = csmetrics.followups(t["surveys"], billing=text_billing, fx=t["fx"])
    assert got["mrr"].notna().sum() == expected["mrr"].notna().sum() > 0
    np.testing.assert_allclose(got["mrr"].to_numpy(dtype=float), expected["mrr"].to_numpy(dtype=float))


# --------------------------------------------------------------------------
# 6. The CLI speaks in one line
# --------------------------------------------------------------------------
def _one_line(result, *needles):
    assert result.exit_code == 2, result.output
    lines = result.output.strip().splitlines()
    assert len(lines) == 1, result.output
    for needle in needles:
        assert needle in lines[0], lines[0]


@pytest.fixture
def data(tmp_path):
    folder = tmp_path / "data"
    folder.mkdir()
    shutil.copy(SAMPLE / "tickets.parquet", folder / "tickets.parquet")
    return folder


@pytest.mark.parametrize(
    "args,needle",
    [
        (["--freq", "fortnight"], "--freq"),
        (["--freq", ""], "--freq"),
        (["--tz", "Atlantis/Capital"], "--tz"),
        (["--as-of", "yesterday-ish"], "--as-of"),
        (["--as-of", "2400-01-01"], "--as-of"),
        (["--by", "metric"], "cannot be a segment"),
        (["--engine", "spark"], "--engine"),
        (["--engine", "dask", "--workers", "0"], "--workers"),
    ],
)
def test_cli_bad_options(data, tmp_path, args, needle):
    _one_line(runner.invoke(app, ["report", str(data), "--out", str(tmp_path / "out"), "--quiet", *args]), needle)
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize(
    "text,needle",
    [
        ('freq = "M\n', "not valid TOML"),
        ("freq = 5\n", "freq must be"),
        ("[policies]\ncount_new_churn = \"no\"\n", "count_new_churn"),
        ("[policies]\nrenewal_grace_days = \"7\"\n", "renewal_grace_days"),
        ("[health]\nbands = [40]\n", "bands"),
        ("cost_roles = 3\n", "cost_roles"),
        ("[cost_roles]\nretention = \"support\"\n", "cost_roles.retention"),
        ("gross_margin = 2\n", "gross_margin"),
    ],
)
def test_cli_bad_config(data, tmp_path, text, needle):
    config = tmp_path / "csmetrics.toml"
    config.write_text(text)
    _one_line(runner.invoke(app, ["report", str(data), "--out", str(tmp_path / "out"), "--quiet", "--config", str(config)]),
              str(config), needle)  # fmt: skip


@pytest.mark.parametrize("content,needle", [("", "is empty"), ("ticket_id,customer_id,created_at\n", "header but no rows")])
def test_cli_empty_csv(tmp_path, content, needle):
    folder = tmp_path / "data"
    folder.mkdir()
    (folder / "tickets.csv").write_text(content)
    _one_line(runner.invoke(app, ["report", str(folder), "--out", str(tmp_path / "out"), "--quiet"]), "tickets.csv", needle)


def test_cli_folder_without_timestamps(tmp_path):
    folder = tmp_path / "data"
    folder.mkdir()
    shutil.copy(SAMPLE / "customers.parquet", folder / "customers.parquet")
    _one_line(runner.invoke(app, ["report", str(folder), "--out", str(tmp_path / "out"), "--quiet"]), "no timestamps")
    _one_line(runner.invoke(app, ["report", str(tmp_path / "nowhere"), "--out", str(tmp_path / "out"), "--quiet"]), "does not exist")


def test_cli_warns_about_files_that_match_no_table(data, tmp_path):
    shutil.copy(SAMPLE / "billing.parquet", data / "bill.parquet")
    result = runner.invoke(app, ["report", str(data), "--out", str(tmp_path / "out"), "--quiet", "--no-html"])
    assert result.exit_code == 0
    assert "bill.parquet match no table" in result.output and "billing.parquet" in result.output


def test_every_broken_table_is_reported_in_one_run(tmp_path):
    folder = tmp_path / "data"
    shutil.copytree(SAMPLE, folder)
    t = pd.read_parquet(folder / "tickets.parquet")
    t.loc[[3, 5], "handle_seconds"] = -1.0
    t.to_parquet(folder / "tickets.parquet")
    s = pd.read_parquet(folder / "surveys.parquet")
    s.loc[[0], "survey"] = "nsp"
    s.to_parquet(folder / "surveys.parquet")
    result = runner.invoke(app, ["report", str(folder), "--out", str(tmp_path / "out"), "--quiet"])
    assert result.exit_code == 1
    assert "2 tables failed validation: tickets (2 rows), surveys (1 rows)" in result.output
    assert "tickets.handle_seconds" in result.output and "surveys.survey" in result.output
    assert "rows [3, 5]" in result.output  # Parquet rows


def test_csv_rows_are_reported_as_file_lines_and_rejected_rows_keep_their_position(tmp_path):
    folder = tmp_path / "data"
    folder.mkdir()
    tickets(handle_seconds=[1.0, -1.0, 2.0, -3.0]).to_csv(folder / "tickets.csv", index=False)
    result = runner.invoke(app, ["report", str(folder), "--out", str(tmp_path / "out"), "--quiet"])
    assert result.exit_code == 1 and "CSV lines [3, 5]" in result.output
    result = runner.invoke(app, ["report", str(folder), "--out", str(tmp_path / "out"), "--quiet", "--quarantine", "--no-html"])
    assert result.exit_code == 0, result.output
    rejected = pd.read_parquet(tmp_path / "out" / "rejected" / "tickets.parquet")
    assert rejected["csv_line"].tolist() == [3, 5] and rejected["ticket_id"].tolist() == [2, 4]
    parquet = tmp_path / "pq"
    parquet.mkdir()
    tickets(handle_seconds=[1.0, -1.0, 2.0]).to_parquet(parquet / "tickets.parquet")
    assert runner.invoke(app, ["report", str(parquet), "--out", str(tmp_path / "o2"), "--quiet", "--quarantine", "--no-html"]).exit_code == 0
    assert pd.read_parquet(tmp_path / "o2" / "rejected" / "tickets.parquet")["source_row"].tolist() == [1]


def test_a_coercion_failure_is_reported_once():
    df = tickets(created_at=["2024-01-01", "soon", "2024-01-03"], handle_seconds=[1.0, "ten", 3.0])
    with pytest.raises(ValidationError) as info:
        csmetrics.validate(df, "tickets")
    rules = sorted(zip(info.value.failures["column"], info.value.failures["rule"]))
    assert rules == [("created_at", "coercible to timestamp"), ("handle_seconds", "coercible to float")]


def test_schema_drift_in_a_table_folder_names_the_files(tmp_path):
    folder = tmp_path / "data" / "tickets"
    folder.mkdir(parents=True)
    tickets().to_parquet(folder / "2024-01.parquet")
    tickets(ticket_id=[7, 8, 9]).assign(customer_id="x").to_parquet(folder / "2024-02.parquet")
    result = runner.invoke(app, ["report", str(tmp_path / "data"), "--out", str(tmp_path / "out"), "--quiet"])
    _one_line(result, "2024-01.parquet", "2024-02.parquet", "customer_id")


# --------------------------------------------------------------------------
# 7. Dask's local cluster listens on loopback only
# --------------------------------------------------------------------------
def test_local_cluster_listens_on_loopback_only(monkeypatch, tmp_path, data):
    import distributed

    seen = {}
    real = distributed.LocalCluster

    class Recording(real):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            seen["scheduler"] = self.scheduler_address
            seen["dashboard"] = self.dashboard_link
            seen["workers"] = [w.address for w in self.workers.values()]

    monkeypatch.setattr(distributed, "LocalCluster", Recording)
    result = runner.invoke(app, ["report", str(data), "--out", str(tmp_path / "out"), "--no-html", "--engine", "dask", "--workers", "1"])
    assert result.exit_code == 0, result.output
    assert seen["scheduler"].startswith("tcp://127.0.0.1:")
    assert "127.0.0.1" in seen["dashboard"]
    assert seen["workers"] and all(w.startswith("tcp://127.0.0.1:") for w in seen["workers"])


# --------------------------------------------------------------------------
# 8. Defects users reported
# --------------------------------------------------------------------------
def test_churned_customers_are_scored_only_while_active(sample_tables):
    t = sample_tables
    tables = {k: t[k] for k in ("events", "surveys", "tickets", "billing", "fx")}
    scores = csmetrics.HealthScorecard().score(**tables)
    mine = scores[scores["customer_id"] == 491]
    assert mine["period"].max() == pd.Timestamp("2024-09-01", tz="UTC")  # churned 2024-09-04: scored that month, not after
    assert (mine.loc[mine["period"] == mine["period"].max(), "mrr"] == 0).all()
    at_risk = csmetrics.at_risk(**tables, period="2024-11-01")
    assert 491 not in set(at_risk["customer_id"]) and not (at_risk["mrr"] == 0).any()
    revenue = csmetrics.customer_metrics(t["billing"], fx=t["fx"], as_of=t["events"]["timestamp"].max())
    wide = revenue.pivot_table(index="period", columns="metric", values="value")
    active = wide["customers_start"] + wide["customers_new"] + wide["customers_reactivated"]
    scored = scores.groupby("period").size()
    assert (scored.reindex(active.index).fillna(0) <= active).all()  # never more scored than active


def test_scored_only_while_active_by_hand():
    billing_ = pd.DataFrame({"customer_id": [1, 1, 2], "kind": "recurring", "amount": [100.0, 100.0, 50.0],
                             "service_start": ["2024-01-01", "2024-04-01", "2024-01-01"],
                             "service_end": ["2024-02-10", "2024-05-01", "2024-06-01"]})  # fmt: skip
    scores = csmetrics.HealthScorecard().score(billing=billing_, as_of="2024-05-20")
    months = scores.groupby("customer_id")["period"].apply(lambda p: p.dt.strftime("%m").tolist()).to_dict()
    # churned 2024-02-10 (scored in Feb), gone in March, back in April; the line ends at May 1 00:00 (end
    # exclusive), so its MRR is 0 at every instant of May
    assert months[1] == ["01", "02", "04"]
    assert months[2] == ["01", "02", "03", "04", "05"]


def test_cohorts_by_segment_sum_to_the_whole(sample_tables):
    t = sample_tables
    whole = csmetrics.cohort_table(t["billing"], fx=t["fx"])
    for by in ("plan", ["region"], ["region", "plan"]):
        split = csmetrics.cohort_table(t["billing"], fx=t["fx"], customers=t["customers"], by=by)
        columns = [by] if isinstance(by, str) else by
        assert set(columns) <= set(split.columns)
        summed = split.groupby(["cohort", "period"])[["cohort_customers", "customers_active", "mrr"]].sum()
        expected = whole.set_index(["cohort", "period"])[["cohort_customers", "customers_active", "mrr"]]
        np.testing.assert_allclose(summed.reindex(expected.index).fillna(0).to_numpy(), expected.to_numpy(), rtol=1e-12)


def test_cohort_plan_is_the_plan_of_the_first_mrr():
    b = pd.DataFrame({"customer_id": [1, 1, 2], "kind": "recurring", "amount": [10.0, 90.0, 20.0],
                      "plan": ["basic", "pro", "pro"], "service_start": ["2024-01-01", "2024-02-01", "2024-01-01"],
                      "service_end": ["2024-02-01", "2024-03-01", "2024-03-01"]})  # fmt: skip
    table = csmetrics.cohort_table(b, by="plan", as_of="2024-02-20")
    feb = table[table["period"] == pd.Timestamp("2024-02-01", tz="UTC")].set_index("plan")
    assert feb.loc["basic", "mrr"] == 90.0 and feb.loc["basic", "revenue_retention"] == 9.0  # upgraded, stays basic
    assert feb.loc["pro", "mrr"] == 10.0 and feb.loc["pro", "cohort_customers"] == 1  # 20 over two months


def test_billing_without_invoiced_at_in_the_report_and_on_dask(sample_tables):
    import dask.dataframe as dd

    t = dict(sample_tables)
    t["billing"] = t["billing"][t["billing"]["kind"] == "recurring"].drop(columns="invoiced_at")
    expected = csmetrics.revenue_metrics(t["billing"], fx=t["fx"], as_of=t["events"]["timestamp"].max())
    result = csmetrics.report(t, html=False, as_of=t["events"]["timestamp"].max())
    got = result.metrics[result.metrics["metric"].isin(expected["metric"].unique())]
    np.testing.assert_allclose(got["value"].to_numpy(dtype=float), expected["value"].to_numpy(dtype=float), rtol=1e-12, equal_nan=True)
    on_dask = csmetrics.report({**t, "billing": dd.from_pandas(t["billing"], npartitions=2)}, html=False,
                               as_of=t["events"]["timestamp"].max())  # fmt: skip
    assert len(on_dask.metrics) == len(result.metrics)


def test_movements_and_current_mrr_accept_dask(sample_tables):
    import dask.dataframe as dd

    t = sample_tables
    lazy = dd.from_pandas(t["billing"], npartitions=3)
    pd.testing.assert_frame_equal(csmetrics.mrr_movements(lazy, fx=t["fx"], by="plan"), csmetrics.mrr_movements(t["billing"], fx=t["fx"], by="plan"))
    pd.testing.assert_series_equal(csmetrics.current_mrr(lazy, fx=t["fx"]), csmetrics.current_mrr(t["billing"], fx=t["fx"]))
    pd.testing.assert_frame_equal(csmetrics.cohort_table(lazy, fx=t["fx"], by="plan"), csmetrics.cohort_table(t["billing"], fx=t["fx"], by="plan"))


@pytest.mark.parametrize("as_of", [None, "2000-01-01"])
def test_empty_tables_and_early_as_of_give_zero_count_frames(sample_tables, as_of):
    t = sample_tables
    tables = {k: (t[k].iloc[:0] if as_of is None else t[k]) for k in ("events", "surveys", "tickets", "billing", "fx")}
    when = as_of or "2024-01-15"
    health = csmetrics.health_metrics(**tables, as_of=when)
    assert set(health["metric"]) >= {"health_score_mean"} and health.loc[health["metric"] == "health_score_mean", "value"].isna().all()
    assert csmetrics.at_risk(**tables, as_of=when).empty
    assert csmetrics.HealthScorecard().score(**tables, as_of=when).empty
    result = csmetrics.report({**tables, "customers": t["customers"]}, as_of=when)
    assert result.at_risk.empty and "<html" in result.html.lower()


def test_health_weights_and_bands_are_checked_not_nan():
    with pytest.raises(ConfigError, match="positive sum"):
        csmetrics.HealthScorecard(weights={c: 0 for c in ("usage", "sentiment", "support", "revenue")})
    with pytest.raises(ConfigError, match="bands"):
        csmetrics.HealthScorecard(bands=(40,))


def test_frame_helpers_reject_frames_that_are_not_metric_frames(sample_tables):
    other = sample_tables["tickets"]
    for call in (lambda: csmetrics.to_wide(other), lambda: csmetrics.reaggregate(other), lambda: csmetrics.compare_periods(other, "fcr_rate")):
        with pytest.raises(ConfigError, match="takes a metric frame"):
            call()
    frame = csmetrics.support_metrics(other, by="channel")
    with pytest.raises(ConfigError, match="not segment columns"):
        csmetrics.reaggregate(frame, by=["region"])

"""The threaded engine (issue 14): customer buckets in a thread pool give the pandas engine's outputs."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from csmetrics.cli import app
from csmetrics.datagen import generate
from csmetrics.engines import open_engine, resolve
from csmetrics.report import report

from .conftest import SAMPLE

OUTPUTS = ("cohorts", "followups", "at_risk", "renewals", "renewal_calendar", "usage_retention", "active_days", "health_movers", "clv")


def assert_same(expected, got):
    pd.testing.assert_frame_equal(got.metrics.reset_index(drop=True), expected.metrics.reset_index(drop=True), rtol=1e-9)
    for name in OUTPUTS:
        e, g = getattr(expected, name), getattr(got, name)
        if e is None:
            assert g is None, name
            continue
        pd.testing.assert_frame_equal(g.reset_index(drop=True), e.reset_index(drop=True), rtol=1e-9, obj=name)
    pd.testing.assert_frame_equal(got.customers.reset_index(drop=True), expected.customers.reset_index(drop=True), rtol=1e-9)


@pytest.mark.parametrize("buckets", [1, 2, 3])
def test_report_on_threads_equals_pandas(sample_tables, buckets):
    expected = report(sample_tables, by=["region"], html=False)
    got = report(sample_tables, by=["region"], html=False, engine="threads", buckets=buckets)
    assert got.manifest["engine"] == "threads"
    assert_same(expected, got)


def test_spot_fx_and_open_ended_lines_on_threads(sample_tables):
    billing = sample_tables["billing"].copy()
    billing.loc[billing.index[::7], "interval_months"] = 1.0
    billing.loc[billing.index[::14], "service_end"] = pd.NaT
    tables = {**sample_tables, "billing": billing}
    config = {"policies": {"fx_mode": "spot"}}
    assert_same(report(tables, html=False, config=config), report(tables, html=False, config=config, engine="threads", buckets=2))


@settings(max_examples=6, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(seed=st.integers(0, 10_000), buckets=st.integers(2, 5), customers=st.integers(5, 40))
def test_any_bucketing_gives_the_pandas_outputs(seed, buckets, customers):
    tables = generate(customers, 8, seed=seed, start="2024-01-01")
    assert_same(report(tables, html=False, by=["region"]), report(tables, html=False, by=["region"], engine="threads", buckets=buckets))


def test_buckets_split_customers_whole(sample_tables):
    engine, _ = open_engine(sample_tables, engine="threads", buckets=3)
    def ids(part):
        return set(part["customer_id"])

    (seen,) = engine.gather(engine.map(ids, engine.table("billing")))
    assert sum(len(s) for s in seen) == len(set().union(*seen))  # disjoint
    (events,) = engine.gather(engine.map(ids, engine.table("events")))  # taken when the call runs
    for b in range(3):  # the same customer is in the same bucket in every table
        assert not (events[b] & set().union(*(seen[o] for o in range(3) if o != b)))


def test_cli_engine_threads(tmp_path):
    runner = CliRunner()
    result = runner.invoke(app, ["report", str(SAMPLE), "--out", str(tmp_path / "t"), "--engine", "threads", "--buckets", "2", "--quiet", "--no-html"])
    assert result.exit_code == 0, result.output
    assert (tmp_path / "t" / "metrics.parquet").read_bytes()
    bad = runner.invoke(app, ["report", str(SAMPLE), "--out", str(tmp_path / "x"), "--buckets", "2"])
    assert bad.exit_code == 2 and "--buckets needs --engine threads or dask" in bad.output


def test_the_default_engine_is_threads_for_large_tables_on_several_cores(sample_tables, monkeypatch):
    import csmetrics
    import csmetrics.engines as engines

    small = report(sample_tables, html=False)
    assert small.manifest["engine"] == "pandas"  # sample_data (60k rows) stays on one core
    monkeypatch.setattr(engines, "THREADS_MIN_ROWS", 1_000)
    monkeypatch.setattr(engines.os, "cpu_count", lambda: 2)
    assert engines.default_engine({"events": sample_tables["events"]}) == "threads"
    big = report(sample_tables, html=False)
    assert big.manifest["engine"] == "threads" and big.manifest["buckets"] == 2
    assert_same(small, big)
    # the API functions take the same default, with the same numbers
    for name, function in (("tickets", csmetrics.support_metrics), ("surveys", csmetrics.survey_metrics), ("events", csmetrics.engagement_metrics)):
        threaded = function(sample_tables[name], by="region", customers=sample_tables["customers"])
        monkeypatch.setattr(engines, "THREADS_MIN_ROWS", 10**12)
        single = function(sample_tables[name], by="region", customers=sample_tables["customers"])
        monkeypatch.setattr(engines, "THREADS_MIN_ROWS", 1_000)
        pd.testing.assert_frame_equal(threaded, single, rtol=1e-12, obj=name)
    monkeypatch.setattr(engines.os, "cpu_count", lambda: 1)
    assert engines.default_engine({"events": sample_tables["events"]}) == "pandas"  # one core: no pool


def test_the_default_engine_stays_on_pandas_without_the_memory_for_threads(sample_tables, monkeypatch):
    import csmetrics.engines as engines

    monkeypatch.setattr(engines, "THREADS_MIN_ROWS", 1_000)
    monkeypatch.setattr(engines.os, "cpu_count", lambda: 2)
    size = sum(int(t.memory_usage(index=False).sum()) for t in sample_tables.values())
    assert engines.default_engine(sample_tables, available=int(engines.THREADS_MEMORY_FACTOR * size) + 1) == "threads"
    assert engines.default_engine(sample_tables, available=int(engines.THREADS_MEMORY_FACTOR * size) - 1) == "pandas"
    assert engines._free_memory() > 0


def test_support_on_threads_with_business_hours_equals_pandas(sample_tables, monkeypatch):
    """The threads engine's quantiles run in shares of the periods; with schedules each share takes its rows."""
    import csmetrics
    import csmetrics.engines as engines
    from csmetrics import Schedule

    week = Schedule(tz="Europe/Berlin", hours={d: ["09:00-12:00", "13:00-17:00"] for d in ("mon", "tue", "wed", "thu", "fri")})
    options = {"by": "channel", "business_hours": week, "sla_targets": {"high": 60, "low": 600}, "freq": "W"}
    single = csmetrics.support_metrics(sample_tables["tickets"], **options)
    monkeypatch.setattr(engines, "THREADS_MIN_ROWS", 1_000)
    monkeypatch.setattr(engines.os, "cpu_count", lambda: 3)
    threaded = csmetrics.support_metrics(sample_tables["tickets"], **options)
    assert "first_response_business_minutes_p90" in set(threaded["metric"])
    pd.testing.assert_frame_equal(threaded, single, rtol=1e-12)


def test_allocator_tuning_is_once_and_can_be_declined():
    """tune_allocator: on glibc it sets malloc up once per process (True), CSMETRICS_MALLOC=default
    leaves malloc alone (False), and so do malloc thresholds set by the environment (a Dask worker's
    nanny sets one); the numbers do not depend on it (the suite runs tuned)."""
    import os
    import platform
    import subprocess
    import sys

    # without malloc settings of the environment (a Dask cluster started earlier in this process set one)
    plain = {k: v for k, v in os.environ.items() if not k.startswith("MALLOC_") and k not in ("GLIBC_TUNABLES", "CSMETRICS_MALLOC")}

    def tuned_with(**env: str) -> list[str]:
        code = "from csmetrics._compat import tune_allocator as t; print(t(), t())"
        done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, env={**plain, **env})
        return done.stdout.split()

    expected = "True" if platform.libc_ver()[0] == "glibc" else "False"
    assert tuned_with() == [expected, expected]
    # declined, or malloc's thresholds set by the environment (as a Dask worker's nanny sets them)
    for declining in ({"CSMETRICS_MALLOC": "default"}, {"MALLOC_TRIM_THRESHOLD_": "65536"},
                      {"MALLOC_MMAP_THRESHOLD_": "1048576"}, {"GLIBC_TUNABLES": "glibc.malloc.trim_threshold=65536"}):  # fmt: skip
        assert tuned_with(**declining) == ["False", "False"], declining
    assert tuned_with(GLIBC_TUNABLES="glibc.pthread.rseq=0") == [expected, expected]  # not malloc's


@pytest.mark.parametrize("engine, buckets", [("pandas", None), ("threads", 2), ("threads", 3)])
def test_a_table_without_rows_gives_as_of_period_of_zeros(sample_tables, engine, buckets):
    """Tickets, surveys, events or billing given with no rows (and an explicit as_of): the frame of
    as_of's period (0 tickets, no NPS, 0 active users, 0 MRR) on every engine; each raised a TypeError
    from deep inside before."""
    from csmetrics import plans
    from csmetrics.api import _one
    from csmetrics.engines import open_engine, resolve

    window = {"freq": "M", "tz": "UTC", "as_of": "2024-06-01", "start": None, "end": None}
    cases = (
        ("tickets", plans.support, "tickets", 0.0),
        ("surveys", plans.surveys, "nps", None),
        ("events", plans.engagement, "active_users", 0.0),
        ("billing", lambda e, **w: plans.revenue(e, plans.billing_context(e, **w)), "mrr", 0.0),
    )
    for table, plan, metric, expected in cases:
        opened = open_engine({table: sample_tables[table].iloc[:0]}, engine=engine, buckets=buckets)[0]
        frame = _one(opened, plan(opened, **window))
        frame = (frame[0] if isinstance(frame, tuple) else frame).set_index("metric")
        assert frame["period"].unique().tolist() == [pd.Timestamp("2024-06-01", tz="UTC")]
        value = frame.loc[metric, "value"]
        assert (np.isnan(value) if expected is None else value == expected), (table, value)


def test_a_bucket_holds_the_columns_a_call_reads():
    from csmetrics.engines.pandas import ThreadedEngine, _done

    events = pd.DataFrame({"customer_id": [1, 2, 3, 4], "timestamp": pd.Timestamp("2024-01-01", tz="UTC"),
                           "event": "login", "user_id": [10, 20, 30, 40]})  # fmt: skip
    engine = ThreadedEngine({"events": events}, 2)
    pruned = [_done(b) for b in engine.table("events", ["customer_id", "timestamp", "not_there"])]
    whole = [_done(b) for b in engine.table("events")]
    assert [list(b.columns) for b in pruned] == [["customer_id", "timestamp"]] * 2
    assert [list(b.columns) for b in whole] == [list(events.columns)] * 2
    assert sorted(np.concatenate([b["customer_id"].to_numpy() for b in pruned]).tolist()) == [1, 2, 3, 4]
    for p, w in zip(pruned, whole):
        pd.testing.assert_frame_equal(p, w[["customer_id", "timestamp"]])


@pytest.mark.parametrize(("engine", "buckets"), [("pandas", 1), ("threads", 2), ("threads", 3)])
def test_the_report_builds_one_billing_ledger_per_bucket(sample_tables, ledgers_built, engine, buckets):
    """Revenue, value, cohorts, renewals, health, the customer rows and the follow-up list's MRR share
    one ledger per customer bucket (the follow-ups once built their own, and health its own in spot
    mode), so customers.parquet's MRR adds up to the company MRR and the follow-ups' MRR is the
    customer's MRR at as_of, under the report's policies (spot fx too)."""
    built = ledgers_built
    kwargs = {"engine": engine, "buckets": buckets} if engine == "threads" else {}
    for config in ({}, {"policies": {"fx_mode": "spot"}}):
        built.clear()
        result = report(sample_tables, html=False, config=config, **kwargs)
        assert len(built) == buckets, config
        m = result.metrics
        company = m[(m["metric"] == "mrr") & m["event"].isna()].set_index("period")["value"]
        summed = result.customers.groupby("period")["mrr"].sum()
        np.testing.assert_allclose(summed.reindex(company.index).to_numpy(), company.to_numpy(), rtol=1e-12)
        latest = result.customers.sort_values("period").groupby("customer_id")["mrr"].last()
        followed = result.followups.dropna(subset=["mrr"])
        assert len(followed) > 0
        np.testing.assert_allclose(
            followed["mrr"].to_numpy(), latest.reindex(followed["customer_id"]).to_numpy(), rtol=1e-12
        )


def test_resolve_on_threads_finishes_each_family_as_its_partials_complete():
    """The caller's thread finishes an early pending (e.g. the CLV fit on the rfm rows) while the pool
    still computes a later one: here the later partial waits for the earlier finish."""
    import threading

    from csmetrics.engines.base import Pending, resolve
    from csmetrics.engines.pandas import ThreadedEngine

    engine = ThreadedEngine({}, 2)
    finished = threading.Event()
    early = engine.map(lambda x: x + 1, [1, 2])
    late = engine.map(lambda x: finished.wait(timeout=10) and x, [3, 4])
    done = resolve(engine, {"early": Pending((early,), lambda parts: finished.set() or sum(parts)),
                            "late": Pending((late,), lambda parts: parts)})  # fmt: skip
    assert done == {"early": 5, "late": [3, 4]}


@pytest.mark.parametrize(("engine", "buckets"), [("pandas", 1), ("threads", 2), ("threads", 3)])
def test_the_report_finds_the_event_users_once_per_bucket(sample_tables, monkeypatch, engine, buckets):
    """Engagement, usage retention and active days read one user order per events bucket (each family
    once factorized and sorted the users itself), and give what they give alone."""
    from csmetrics import plans
    from csmetrics.metrics import _common

    found = []
    real = _common.user_order

    def counted(events):
        found.append(len(events))
        return real(events)

    monkeypatch.setattr(_common, "user_order", counted)
    monkeypatch.setattr(plans, "user_order", counted)
    kwargs = {"engine": engine, "buckets": buckets} if engine == "threads" else {}
    result = report(sample_tables, by=["region"], html=False, **kwargs)
    assert sorted(found) == sorted(np.bincount(_bucket_of(sample_tables["events"], buckets), minlength=buckets)), found
    alone = open_engine(sample_tables, engine=engine, **({"buckets": buckets} if engine == "threads" else {}))[0]
    as_of = result.manifest["as_of"]
    for name, pending in {
        "usage_retention": plans.usage_retention(alone, freq="M", periods=12, by=["region"], as_of=as_of),
        "active_days": plans.active_days(alone, freq="M", as_of=as_of),
    }.items():
        pd.testing.assert_frame_equal(resolve(alone, {name: pending})[name], getattr(result, name), obj=name)


def _bucket_of(table, buckets):
    return pd.util.hash_pandas_object(table["customer_id"], index=False).to_numpy() % np.uint64(buckets)


@pytest.mark.parametrize(("engine", "buckets"), [("pandas", 1), ("threads", 2)])
@pytest.mark.parametrize(("freq", "per_bucket"), [("M", 1), ("Q", 2)])
def test_the_report_computes_one_revenue_partial_per_bucket_and_calendar(sample_tables, monkeypatch, engine, buckets, freq, per_bucket):
    """The value family's monthly revenue partial is the revenue family's when the report is monthly
    (it was computed twice); a quarterly report needs both."""
    from csmetrics.metrics import revenue

    made = []
    real = revenue._partial

    def counted(billing, context, memo):
        made.append(context.spine.freq)
        return real(billing, context, memo)

    monkeypatch.setattr(revenue, "_partial", counted)
    kwargs = {"engine": engine, "buckets": buckets} if engine == "threads" else {}
    report(sample_tables, by=["region"], freq=freq, html=False, **kwargs)
    assert len(made) == buckets * per_bucket, made


def test_customers_encoded_ahead_are_the_bytes_written_and_only_for_that_frame(sample_tables, tmp_path):
    """The CLI's report encodes customers.parquet in the background once its rows are merged, while
    its last steps run: the file written is byte for byte write_parquet's of the report's frame; a
    frame put in its place before writing is written instead; API calls encode nothing ahead."""
    from csmetrics.output import write_parquet

    result = report(sample_tables, html=False, engine="threads", buckets=2, _encode_ahead=True)
    assert result._ahead["customers"][0] is result.customers
    result.write(tmp_path / "out")
    write_parquet(result.customers, tmp_path / "direct.parquet")
    assert (tmp_path / "out" / "customers.parquet").read_bytes() == (tmp_path / "direct.parquet").read_bytes()
    result.customers = result.customers.head(3)
    result.write(tmp_path / "again")
    pd.testing.assert_frame_equal(pd.read_parquet(tmp_path / "again" / "customers.parquet"), result.customers.reset_index(drop=True))
    assert set(report(sample_tables, html=False, _encode_ahead=True)._ahead) == {"customers"}
    assert report(sample_tables, html=False, engine="threads", buckets=2)._ahead == {}

"""The Dask engine gives the pandas engine's frames: every family, the report, validation across partitions."""

from __future__ import annotations

import time

import dask
import dask.dataframe as dd
import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import csmetrics
from csmetrics.catalog import CATALOG
from csmetrics.datagen import generate
from csmetrics import HealthScorecard, at_risk, health_metrics
from csmetrics.report import report
from csmetrics.validate import ValidationError

BIG = ("events", "tickets", "surveys", "billing")
UNITS = {m.name: m.unit for m in CATALOG}


@pytest.fixture(autouse=True)
def threads():
    with dask.config.set(scheduler="threads", num_workers=2):
        yield


def to_dask(tables: dict[str, pd.DataFrame], partitions: int = 3) -> dict:
    return {k: dd.from_pandas(v, npartitions=partitions, sort=False) if k in BIG else v for k, v in tables.items()}


def assert_same_metrics(expected: pd.DataFrame, got: pd.DataFrame) -> None:
    """Same rows and labels; counts exactly, sums to 1e-12, rates and means to 1e-9 (relative)."""
    assert list(got.columns) == list(expected.columns)
    assert len(got) == len(expected) > 0
    labels = [c for c in expected.columns if c not in ("value", "numerator", "denominator", "ci_low", "ci_high")]
    pd.testing.assert_frame_equal(got[labels].reset_index(drop=True), expected[labels].reset_index(drop=True))
    unit = expected["metric"].map(UNITS).to_numpy()
    for column in ("value", "numerator", "denominator", "ci_low", "ci_high"):
        if column not in expected:
            continue
        e, g = expected[column].to_numpy(dtype=float), got[column].to_numpy(dtype=float)
        assert np.array_equal(np.isnan(e), np.isnan(g)), column
        both = ~np.isnan(e)
        counts = both & np.isin(unit, ("count", "users")) & (column == "value")
        sums = both & (unit == "currency") & (column == "value")
        assert np.array_equal(e[counts], g[counts]), column
        np.testing.assert_allclose(g[sums], e[sums], rtol=1e-12, atol=1e-9, err_msg=column)
        rest = both & ~counts & ~sums
        np.testing.assert_allclose(g[rest], e[rest], rtol=1e-9, atol=1e-12, err_msg=column)


# --------------------------------------------------------------------------
# Every family on sample_data
# --------------------------------------------------------------------------
FAMILIES = {
    "revenue": lambda t: csmetrics.revenue_metrics(t["billing"], by="plan", fx=t["fx"]),
    "revenue_spot": lambda t: csmetrics.revenue_metrics(t["billing"], by="plan", fx=t["fx"], fx_mode="spot"),
    "customers": lambda t: csmetrics.customer_metrics(t["billing"], by="region", customers=t["customers"], fx=t["fx"]),
    "value": lambda t: csmetrics.value_metrics(t["billing"], costs=t["costs"], fx=t["fx"], gross_margin=0.8),
    "support": lambda t: csmetrics.support_metrics(t["tickets"], by="channel", sla_targets={"urgent": 60, "high": 240}),
    "surveys": lambda t: csmetrics.survey_metrics(t["surveys"], by=["touchpoint", "size"], customers=t["customers"]),
    "engagement": lambda t: csmetrics.engagement_metrics(t["events"], billing=t["billing"], fx=t["fx"], by="region", customers=t["customers"]),
    "health": lambda t: health_metrics(events=t["events"], surveys=t["surveys"], tickets=t["tickets"], billing=t["billing"], fx=t["fx"]),
}


@pytest.mark.parametrize("family", sorted(FAMILIES))
def test_family_on_dask_equals_pandas(sample_tables, family):
    expected = FAMILIES[family](sample_tables)
    got = FAMILIES[family](to_dask(sample_tables))
    assert isinstance(got, pd.DataFrame)
    assert_same_metrics(expected, got)


def test_scores_cohorts_followups_and_at_risk_on_dask(sample_tables):
    t, d = sample_tables, to_dask(sample_tables, 4)
    health = {"events": "events", "surveys": "surveys", "tickets": "tickets", "billing": "billing", "fx": "fx"}
    scores = HealthScorecard().score(**{k: t[v] for k, v in health.items()})
    card = HealthScorecard()
    got = card.score(**{k: d[v] for k, v in health.items()})
    pd.testing.assert_frame_equal(got, scores, rtol=1e-9)
    assert card.support_scale_ >= 1
    pd.testing.assert_frame_equal(at_risk(**{k: d[v] for k, v in health.items()}), at_risk(**{k: t[v] for k, v in health.items()}), rtol=1e-9)
    pd.testing.assert_frame_equal(csmetrics.cohort_table(d["billing"], fx=t["fx"]), csmetrics.cohort_table(t["billing"], fx=t["fx"]), rtol=1e-12)
    for kwargs in ({"by": "plan"}, {"fx_mode": "spot", "renewal_grace_days": 3}):
        expected = csmetrics.renewal_calendar(t["billing"], fx=t["fx"], as_of="2024-10-20", **kwargs)
        assert len(expected) > 10
        pd.testing.assert_frame_equal(csmetrics.renewal_calendar(d["billing"], fx=t["fx"], as_of="2024-10-20", **kwargs), expected)
    for kwargs in ({"freq": "W", "periods": 8}, {"freq": "M", "by": "region", "customers": t["customers"]}):
        expected = csmetrics.usage_retention(t["events"], **kwargs)
        assert len(expected) > 20
        pd.testing.assert_frame_equal(csmetrics.usage_retention(d["events"], **kwargs), expected)
    pd.testing.assert_frame_equal(csmetrics.active_days_distribution(d["events"]), csmetrics.active_days_distribution(t["events"]))
    summary = csmetrics.rfm_summary(t["billing"], fx=t["fx"])
    assert len(summary) > 100
    pd.testing.assert_frame_equal(csmetrics.rfm_summary(d["billing"], fx=t["fx"]), summary)
    for pooled in (False, True):
        expected = csmetrics.cohort_retention_model(t["billing"], fx=t["fx"], by="plan", pooled=pooled)
        assert expected["alpha"].notna().sum() >= 2
        pd.testing.assert_frame_equal(csmetrics.cohort_retention_model(d["billing"], fx=t["fx"], by="plan", pooled=pooled), expected)
    spot = {"fx": t["fx"], "fx_mode": "spot", "by": "plan"}
    expected = csmetrics.mrr_movements(t["billing"], **spot)
    assert (expected["kind"] == "fx_effect").sum() > 100
    pd.testing.assert_frame_equal(csmetrics.mrr_movements(d["billing"], **spot), expected)
    expected = csmetrics.followups(t["surveys"], billing=t["billing"], fx=t["fx"])
    pd.testing.assert_frame_equal(csmetrics.followups(d["surveys"], billing=d["billing"], fx=t["fx"]), expected, rtol=1e-12)
    assert len(expected) > 0


def test_report_on_dask_equals_pandas(sample_tables, tmp_path):
    expected = report(sample_tables, by=["region"], html=False)
    got = report(to_dask(sample_tables, 4), by=["region"], html=False, buckets=3)
    assert_same_metrics(expected.metrics, got.metrics)
    for name in ("cohorts", "followups", "at_risk", "renewals", "renewal_calendar", "clv", "usage_retention", "active_days"):
        assert len(getattr(expected, name)) > 0, name
        pd.testing.assert_frame_equal(getattr(got, name), getattr(expected, name), rtol=1e-9)
    got.write(tmp_path / "dask")
    expected.write(tmp_path / "pandas")
    customers = pd.read_parquet(tmp_path / "dask" / "customers.parquet")
    pd.testing.assert_frame_equal(customers, pd.read_parquet(tmp_path / "pandas" / "customers.parquet"), rtol=1e-9)
    assert got.manifest["engine"] == "dask" and expected.manifest["engine"] == "pandas"
    assert got.manifest["outputs"] == expected.manifest["outputs"]
    assert {k: v["rows"] for k, v in got.manifest["inputs"].items()} == {k: v["rows"] for k, v in expected.manifest["inputs"].items()}


def test_the_dask_engine_builds_each_buckets_ledger_once_not_once_per_family(sample_tables, ledgers_built):
    """The revenue, value, cohort, renewal, CLV and health families of a report read one ledger per
    bucket on Dask too (they built their own: 36 ledgers for 4 buckets), and the report is the same."""
    made = ledgers_built
    expected = report(sample_tables, html=False)
    assert len(made) == 1
    made.clear()
    got = report(to_dask(sample_tables, 3), html=False, buckets=4)
    # one per bucket; the process memo's 6 entries hold the revenue partials beside the ledgers,
    # so a ledger may be dropped before a later family reads it and be built again
    assert 4 <= len(made) <= 8, made
    pd.testing.assert_frame_equal(got.metrics, expected.metrics, check_exact=False, rtol=1e-12)


# --------------------------------------------------------------------------
# Any partitioning of any data set: the same frames
# --------------------------------------------------------------------------
@settings(max_examples=8, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(seed=st.integers(0, 10_000), partitions=st.integers(1, 5), buckets=st.integers(1, 4), customers=st.integers(5, 40))
def test_hypothesis_partitions_give_the_pandas_frames(seed, partitions, buckets, customers):
    tables = generate(customers, 8, seed=seed, start="2024-01-01")
    expected = report(tables, html=False, by=["region"])
    got = report(to_dask(tables, partitions), html=False, by=["region"], buckets=buckets)
    assert_same_metrics(expected.metrics, got.metrics)
    assert len(got.customers) == len(expected.customers)


# --------------------------------------------------------------------------
# Validation across partitions
# --------------------------------------------------------------------------
def _tickets_with_cross_partition_duplicate(sample_tables) -> pd.DataFrame:
    tickets = sample_tables["tickets"].copy()
    tickets.loc[tickets.index[-1], "ticket_id"] = tickets["ticket_id"].iloc[0]  # first and last rows: different partitions
    return tickets


def test_cross_partition_duplicate_id_is_caught(sample_tables):
    tickets = _tickets_with_cross_partition_duplicate(sample_tables)
    ddf = dd.from_pandas(tickets, npartitions=3, sort=False)
    # each partition on its own is valid: only a global check can see the duplicate
    for part in ddf.to_delayed():
        csmetrics.validate(part.compute(), "tickets")
    with pytest.raises(ValidationError) as err:
        csmetrics.support_metrics(ddf)
    assert err.value.table == "tickets"
    assert set(err.value.failures["column"]) == {"ticket_id"} and set(err.value.failures["rule"]) == {"unique"}
    assert len(err.value.failures) == 2


def test_quarantine_on_dask_sets_aside_the_pandas_rows(sample_tables):
    tables = dict(sample_tables)
    tables["tickets"] = _tickets_with_cross_partition_duplicate(sample_tables)
    bad_billing = tables["billing"].copy()
    bad_billing.loc[bad_billing.index[:3], "amount"] = np.nan
    tables["billing"] = bad_billing
    expected = report(tables, quarantine=True, html=False)
    got = report(to_dask(tables, 3), quarantine=True, html=False)
    for name in ("tickets", "billing"):
        pd.testing.assert_frame_equal(got.rejected[name].sort_index(), expected.rejected[name].sort_index())
    assert len(got.rejected["tickets"]) == 2
    assert got.manifest["inputs"]["tickets"]["rows"] == len(tables["tickets"])
    assert_same_metrics(expected.metrics, got.metrics)


def test_mixed_currencies_across_partitions_need_fx(sample_tables):
    billing = sample_tables["billing"].copy()
    billing["currency"] = np.where(np.arange(len(billing)) < len(billing) // 2, "USD", "EUR")
    with pytest.raises(ValidationError, match="mixed currencies need an fx table"):
        csmetrics.revenue_metrics(dd.from_pandas(billing, npartitions=2, sort=False))


def test_text_and_integer_customer_ids_become_one_type(sample_tables):
    tickets = sample_tables["tickets"].assign(customer_id=lambda t: t["customer_id"].astype(str))
    customers = sample_tables["customers"]
    expected = csmetrics.support_metrics(tickets, by="region", customers=customers)
    got = csmetrics.support_metrics(dd.from_pandas(tickets, npartitions=3, sort=False), by="region", customers=customers)
    assert_same_metrics(expected, got)


# --------------------------------------------------------------------------
# The command line: a local cluster of processes, Parquet folders read lazily
# --------------------------------------------------------------------------
def test_cli_report_engine_dask_writes_the_pandas_outputs(tmp_path):
    import subprocess
    import sys

    from .conftest import SAMPLE

    data = tmp_path / "data"
    data.mkdir()
    for path in SAMPLE.glob("*.parquet"):
        frame = pd.read_parquet(path)
        if path.stem == "events":  # a dataset folder of several files, as a data lake holds it
            (data / "events").mkdir()
            for k, rows in enumerate(np.array_split(np.arange(len(frame)), 3)):
                frame.iloc[rows].to_parquet(data / "events" / f"part-{k}.parquet")
        else:
            frame.to_parquet(data / path.name)
    cli = [sys.executable, "-c", "from csmetrics.cli import app; app()", "report", str(data), "--no-html", "--quiet"]
    done = subprocess.run([*cli, "--out", str(tmp_path / "pandas")], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    done = subprocess.run([*cli, "--out", str(tmp_path / "dask"), "--engine", "dask", "--workers", "2", "--memory-limit", "1GB"],
                          capture_output=True, text=True)  # fmt: skip
    assert done.returncode == 0, done.stderr
    for name in ("metrics", "customers", "cohorts", "followups", "at_risk"):
        expected = pd.read_parquet(tmp_path / "pandas" / f"{name}.parquet")
        pd.testing.assert_frame_equal(pd.read_parquet(tmp_path / "dask" / f"{name}.parquet"), expected, rtol=1e-9)
    import json

    manifest = json.loads((tmp_path / "dask" / "manifest.json").read_text())
    assert manifest["engine"] == "dask" and manifest["inputs"]["events"]["rows"] == 152_529
    assert manifest["inputs"]["events"]["content_hash"].startswith("sha256:")


def test_cli_dask_options_need_the_dask_engine(tmp_path):
    from typer.testing import CliRunner

    from csmetrics.cli import app

    from .conftest import SAMPLE

    result = CliRunner().invoke(app, ["report", str(SAMPLE), "--out", str(tmp_path / "o"), "--workers", "2"])
    assert result.exit_code == 2 and "need --engine dask" in result.output


def test_at_risk_order_does_not_depend_on_row_order():
    from csmetrics.metrics.health import red_by_mrr

    period = pd.Timestamp("2024-03-01", tz="UTC")
    scores = pd.DataFrame({"customer_id": [5, 3, 9, 1], "period": period, "band": "red", "mrr": [100.0, 100.0, 50.0, 100.0],
                           "score": [20.0, 20.0, 10.0, 30.0]})  # fmt: skip
    expected = [3, 5, 1, 9]  # MRR first, then the lower score, then customer_id
    for seed in range(4):
        assert red_by_mrr(scores.sample(frac=1, random_state=seed))["customer_id"].tolist() == expected


def test_cli_report_on_a_running_cluster(tmp_path):
    import subprocess
    import sys

    from distributed import Client, LocalCluster

    from csmetrics.memo import process_memo

    from .conftest import SAMPLE

    expected = report({p.stem: pd.read_parquet(p) for p in SAMPLE.glob("*.parquet")}, html=False)
    cli = [sys.executable, "-c", "from csmetrics.cli import app; app()", "report", str(SAMPLE), "--no-html", "--quiet"]
    with LocalCluster(n_workers=1, threads_per_worker=2, memory_limit="2GB", dashboard_address=":0") as cluster:
        done = subprocess.run([*cli, "--out", str(tmp_path / "out"), "--engine", "dask", "--scheduler", cluster.scheduler_address],
                              capture_output=True, text=True)  # fmt: skip
        with Client(cluster) as client:  # the worker's families shared its buckets' ledgers in its own memo
            shared = client.run(lambda: (process_memo().made, process_memo().hits))
    assert done.returncode == 0, done.stderr
    assert all(made > 0 and hits >= made for made, hits in shared.values()), shared
    assert_same_metrics(expected.metrics, pd.read_parquet(tmp_path / "out" / "metrics.parquet"))


def test_purchases_of_a_segment_without_events_in_a_bucket_are_kept():
    """Found by the partition property test (seed 3622): a bucket whose events had no row of a segment
    dropped that segment's purchases; segments now come from events and billing lines together."""
    tables = generate(17, 8, seed=3622, start="2024-01-01")
    expected = report(tables, html=False, by=["region"])
    got = report(to_dask(tables, 1), html=False, by=["region"], buckets=4)
    assert_same_metrics(expected.metrics, got.metrics)
    for buckets in (2, 3):
        assert_same_metrics(expected.metrics, report(to_dask(tables, 2), html=False, by=["region"], buckets=buckets).metrics)


def _where(*frames) -> str:
    from distributed import get_worker

    return get_worker().address


def test_bucket_of_every_table_lives_on_one_worker(sample_tables):
    """With a distributed client, bucket j of events, tickets, surveys and billing is made and kept on
    worker j mod workers (a family reading several tables of a bucket moves nothing), the split
    pieces are released once the buckets are made, and the report is the pandas one."""
    from distributed import Client, LocalCluster

    from csmetrics.engines.dask import load

    expected = report(sample_tables, html=False)
    with LocalCluster(n_workers=2, threads_per_worker=1, processes=False, dashboard_address=":0") as cluster, \
            Client(cluster) as client, dask.config.set(scheduler=client.get):  # fmt: skip
        workers = sorted(client.scheduler_info()["workers"])
        engine, _ = load(to_dask(sample_tables, 3), buckets=4)
        for j in range(4):
            futures = [next(iter(engine.buckets[name][j].dask.values())) for name in BIG]
            client.gather(futures)
            where = client.who_has(futures)
            assert all(list(where[f.key]) == [workers[j % 2]] for f in futures), (j, where)
        # a family's task of bucket j is placed there too (it reads the bucket where it lives), as the
        # scheduler's preference: idle, it would go there anyway; under load it could go elsewhere
        tasks = engine.persist(engine.map(_where, engine.table("events"), engine.table("billing")))
        assert engine.gather(tasks)[0] == [workers[j % 2] for j in range(4)]
        keys = [t.key for t in tasks]
        wanted = client.run_on_scheduler(
            lambda dask_scheduler: [sorted(dask_scheduler.tasks[k].worker_restrictions or ()) for k in keys]
        )
        assert wanted == [[workers[j % 2]] for j in range(4)]
        # and run in bucket order: every family's task of bucket j before any of bucket j + 1, so a
        # spilled bucket is read back once for all its families (a task priority: the bucket's -j)
        two = engine.persist(engine.map(len, engine.table("tickets")))
        engine.gather(two)  # the graph has reached the scheduler
        order = client.run_on_scheduler(
            lambda dask_scheduler: [dask_scheduler.tasks[t.key].priority[0] for t in [*tasks, *two]]
        )
        assert order == [0, 1, 2, 3] * 2

        def pieces_held() -> list[str]:
            held = client.run_on_scheduler(
                lambda dask_scheduler: [str(k) for k, ts in dask_scheduler.tasks.items() if ts.state == "memory"]
            )
            return [k for k in held if k.startswith(("getitem", "_bucket_pieces"))]

        for _ in range(100):  # released (kept as lineage), not in memory; releases arrive in batches
            if not pieces_held():
                break
            time.sleep(0.05)
        assert not pieces_held()
        got = report(to_dask(sample_tables, 3), html=False, buckets=4)
    assert_same_metrics(expected.metrics, got.metrics)


def test_buckets_hold_dimensions_as_categoricals_with_every_value(sample_tables):
    """Each partition codes its dimensions on its own categories (as Parquet row groups have their
    own dictionaries); a bucket joins them on the union of the categories, every value kept, and the
    report is the pandas one. The rejected rows keep the text they were given."""
    from csmetrics.engines.dask import _concat, load
    from csmetrics.schemas import DIMENSIONS

    tickets = sample_tables["tickets"].sort_values("channel", kind="stable").reset_index(drop=True)
    tables = {**sample_tables, "tickets": tickets}  # sorted: partitions see different channels
    parts = dd.from_pandas(tickets, npartitions=3, sort=False)
    engine, _ = load({**to_dask(tables, 3), "tickets": parts}, buckets=2)
    buckets = engine.gather(engine.table("tickets"))[0]
    for bucket in buckets:
        for column in DIMENSIONS["tickets"]:
            assert isinstance(bucket[column].dtype, pd.CategoricalDtype), column
    joined = pd.concat(buckets).sort_values("ticket_id").reset_index(drop=True)
    original = tickets.sort_values("ticket_id").reset_index(drop=True)
    for column in DIMENSIONS["tickets"]:
        assert joined[column].astype("str").tolist() == original[column].astype("str").tolist()
    a = pd.DataFrame({"channel": pd.Categorical(["email", "chat"])})
    b = pd.DataFrame({"channel": pd.Categorical(["web", None, "email"])})
    both = _concat([a, b])
    assert isinstance(both["channel"].dtype, pd.CategoricalDtype)
    assert both["channel"].tolist()[:3] == ["email", "chat", "web"] and pd.isna(both["channel"][3])
    assert set(both["channel"].cat.categories) == {"chat", "email", "web"}
    assert_same_metrics(report(tables, html=False).metrics, report(to_dask(tables, 3), html=False, buckets=2).metrics)


def test_resolve_submits_every_family_then_finishes_each_in_turn(sample_tables):
    """On Dask every pending's tasks are submitted before any is finished, ``started`` runs once they
    are under way and before the first finish, and each finish gets its own computed parts."""
    from csmetrics.engines.base import Pending, resolve
    from csmetrics.engines.dask import load

    engine, _ = load(to_dask(sample_tables, 3), buckets=3)
    calls: list[str] = []
    tickets = engine.map(len, engine.table("tickets"))
    billing = engine.map(len, engine.table("billing"))
    pendings = {
        "tickets": Pending((tickets,), lambda parts: calls.append("tickets") or sum(parts)),
        "billing": Pending((billing,), lambda parts: calls.append("billing") or sum(parts)),
    }
    done = resolve(engine, pendings, started=lambda: calls.append("started"))
    assert calls == ["started", "tickets", "billing"]
    assert done == {"tickets": len(sample_tables["tickets"]), "billing": len(sample_tables["billing"])}


def test_local_cluster_workers_trim_their_heap_after_each_task():
    """The CLI's local cluster registers the heap plugin: each worker returns its heap's free pages
    after every task it ran; CSMETRICS_MALLOC=default in the workers' environment turns it off."""
    import contextlib

    from distributed import Client, LocalCluster

    from csmetrics.cli import _dask_client
    from csmetrics.engines.worker_heap import HeapPlugin

    def trims(dask_worker):
        plugin = dask_worker.plugins.get(HeapPlugin.name)
        return None if plugin is None else plugin.trims

    with contextlib.ExitStack() as stack:
        client = _dask_client(stack, None, 1, "1GB", quiet=True)
        assert list(client.run(trims).values()) == [0]
        client.gather(client.map(np.ones, [1 << 20] * 5, pure=False))
        assert list(client.run(trims).values()) == [5]
    with dask.config.set({"distributed.nanny.pre-spawn-environ.CSMETRICS_MALLOC": "default"}), \
            LocalCluster(n_workers=1, threads_per_worker=1, dashboard_address=":0") as cluster, Client(cluster) as client:  # fmt: skip
        client.register_plugin(HeapPlugin())
        client.gather(client.map(np.ones, [1 << 20] * 5, pure=False))
        assert list(client.run(trims).values()) == [0]


def test_buckets_hold_coded_ids_in_32_bits_where_they_fit(sample_tables):
    """Events' user_id and session_id (only ever turned into codes) are held in 32 bits by a partition
    whose values all lie in [0, 2**31); a partition with larger or negative ids keeps 64 bits, a bucket
    joining both holds 64 bits, and engagement and the report are the pandas engine's either way."""
    from csmetrics.engines.dask import _narrowed, coded, load

    assert _narrowed(pd.Series([0, 2**31 - 1])).dtype == np.int32
    assert _narrowed(pd.Series([5, None], dtype="Int64")).dtype == "Int32"
    assert _narrowed(pd.Series([1, 2**31])) is None and _narrowed(pd.Series([-1, 3])) is None
    assert _narrowed(pd.Series(["u1"])) is None and _narrowed(pd.Series([1], dtype=np.int32)) is None
    events = sample_tables["events"]
    narrowed = coded(events, "events")
    assert narrowed["user_id"].dtype in (np.int32, "Int32") and narrowed["customer_id"].dtype == events["customer_id"].dtype
    assert (narrowed["user_id"].astype("Int64") == events["user_id"].astype("Int64")).fillna(True).all()
    assert coded(sample_tables["tickets"], "tickets")["ticket_id"].dtype == sample_tables["tickets"]["ticket_id"].dtype

    # the second half's user ids beyond 32 bits (each user moved by the same amount: the same users)
    events = events.sort_values("timestamp", kind="stable").reset_index(drop=True)
    wide = events.assign(user_id=events["user_id"].astype("Int64"))
    half = np.arange(len(wide)) >= len(wide) // 2
    wide.loc[half, "user_id"] = wide.loc[half, "user_id"] + 2**40
    tables = {**sample_tables, "events": wide}
    engine, _ = load({**to_dask(tables, 2), "events": dd.from_pandas(wide, npartitions=2, sort=False)}, buckets=2)
    widths = {b["user_id"].dtype.itemsize for b in engine.gather(engine.table("events"))[0]}
    assert widths == {8}, widths
    assert_same_metrics(FAMILIES["engagement"](tables), FAMILIES["engagement"](to_dask(tables, 2)))
    assert_same_metrics(report(tables, html=False).metrics, report(to_dask(tables, 3), html=False, buckets=2).metrics)

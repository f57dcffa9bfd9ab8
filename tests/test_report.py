"""The main job: csmetrics report end to end."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

import csmetrics
from csmetrics.cli import app
from csmetrics.io import read_tables
from csmetrics.config import check_config
from csmetrics.options import ConfigError
from csmetrics.report import report
from csmetrics.schemas import MetricFrame

from .conftest import SAMPLE

runner = CliRunner()


@pytest.fixture(scope="module")
def sample_report(tmp_path_factory):
    out = tmp_path_factory.mktemp("report") / "out"
    result = runner.invoke(app, ["report", str(SAMPLE), "--out", str(out), "--quiet"])
    assert result.exit_code == 0, result.output
    return out


def test_cli_writes_every_output_with_valid_schemas(sample_report):
    names = {p.name for p in sample_report.iterdir()}
    assert {"metrics.parquet", "customers.parquet", "cohorts.parquet", "followups.parquet", "at_risk.parquet",
            "manifest.json", "index.html"} <= names  # fmt: skip
    metrics = pd.read_parquet(sample_report / "metrics.parquet")
    MetricFrame.validate(metrics)
    families = {csmetrics.catalog.get(m).family for m in metrics["metric"].unique()}
    assert families == {"revenue", "customers", "value", "support", "surveys", "engagement", "health"}
    assert not list(sample_report.parent.glob(".out.csmetrics-*"))  # no staging folder left behind


def test_manifest(sample_report):
    manifest = json.loads((sample_report / "manifest.json").read_text())
    assert manifest["csmetrics_version"] == csmetrics.__version__
    assert manifest["parameters"]["freq"] == "M"
    assert manifest["partial_period"] is not None  # as_of falls inside the last month
    tickets = manifest["inputs"]["tickets"]
    assert tickets["rows"] == len(pd.read_parquet(SAMPLE / "tickets.parquet")) and tickets["rows_rejected"] == 0
    assert tickets["content_hash"].startswith("sha256:") and tickets["path"].endswith("tickets.parquet")
    assert manifest["outputs"]["metrics"]["rows"] == len(pd.read_parquet(sample_report / "metrics.parquet"))


def test_numbers_equal_the_family_functions(sample_report):
    metrics = pd.read_parquet(sample_report / "metrics.parquet")
    as_of = json.loads((sample_report / "manifest.json").read_text())["as_of"]
    tables, _ = read_tables(SAMPLE)
    checks = [
        csmetrics.revenue_metrics(tables["billing"], fx=tables["fx"], as_of=as_of),
        csmetrics.support_metrics(tables["tickets"], as_of=as_of),
        csmetrics.survey_metrics(tables["surveys"], as_of=as_of),
    ]
    for expected in checks:
        keys = ["period", "metric"]
        got = metrics[metrics["metric"].isin(expected["metric"].unique())].set_index(keys)["value"]
        want = expected.set_index(keys)["value"]
        np.testing.assert_allclose(got.reindex(want.index).to_numpy(), want.to_numpy(), equal_nan=True, rtol=1e-12)


def test_html_is_self_contained(sample_report):
    page = (sample_report / "index.html").read_text()
    assert "<svg" in page and "MRR bridge" in page and "NPS with its 95% interval" in page
    for external in ("<script src", "<link", "url(http", 'src="http', "@import", "href=\"http"):
        assert external not in page
    assert "First contact resolution" in page and "Definitions" in page
    # the vendor conventions and renewals ahead (§12) are on the page
    for name in ("Gross MRR churn (ChartMogul)", "Net MRR churn (ChartMogul)", "Average sale price", "LTV (6-month churn)", "Renewals ahead"):
        assert name in page, name
    assert "up for renewal by" in page


def test_rerun_gives_byte_identical_metrics(sample_report, tmp_path):
    again = tmp_path / "again"
    assert runner.invoke(app, ["report", str(SAMPLE), "--out", str(again), "--quiet", "--no-html"]).exit_code == 0
    assert (again / "metrics.parquet").read_bytes() == (sample_report / "metrics.parquet").read_bytes()
    assert not (again / "index.html").exists()


def test_some_tables_only(tmp_path):
    data = tmp_path / "data"
    data.mkdir()
    for name in ("tickets", "surveys"):
        shutil.copy(SAMPLE / f"{name}.parquet", data / f"{name}.parquet")
    out = tmp_path / "out"
    result = runner.invoke(app, ["report", str(data), "--out", str(out), "--quiet", "--by", "channel"])
    assert result.exit_code == 0, result.output
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["families"] == ["support", "surveys", "health"]
    metrics = pd.read_parquet(out / "metrics.parquet")
    MetricFrame.validate(metrics)
    assert "channel" in metrics.columns
    assert metrics.loc[metrics["metric"] == "nps", "channel"].isna().all()  # surveys have no channel
    assert pd.read_parquet(out / "cohorts.parquet").empty


def test_crash_mid_write_leaves_previous_report_intact(tmp_path):
    tables, paths = read_tables(SAMPLE)
    result = report({k: tables[k] for k in ("tickets", "costs")}, html=False)
    out = tmp_path / "out"
    result.write(out)
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    changed = report({k: tables[k] for k in ("tickets",)}, html=False, freq="W")
    with pytest.raises(RuntimeError, match="simulated failure"):
        changed.write(out, _fail_after=1)
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before
    assert [p.name for p in tmp_path.iterdir()] == ["out"]  # staging removed


def test_bad_input_fails_and_quarantine_counts_rejected_rows(tmp_path):
    data = tmp_path / "data"
    shutil.copytree(SAMPLE, data)
    tickets = pd.read_parquet(data / "tickets.parquet")
    tickets.loc[[1, 2, 3], "handle_seconds"] = -5.0
    tickets.to_parquet(data / "tickets.parquet")
    failed = runner.invoke(app, ["report", str(data), "--out", str(tmp_path / "out"), "--quiet", "--no-html"])
    assert failed.exit_code == 1
    assert "tickets.handle_seconds: rule '>= 0': 3 rows" in failed.output
    assert not (tmp_path / "out").exists()
    ok = runner.invoke(app, ["report", str(data), "--out", str(tmp_path / "out"), "--quiet", "--no-html", "--quarantine"])
    assert ok.exit_code == 0, ok.output
    manifest = json.loads((tmp_path / "out" / "manifest.json").read_text())
    assert manifest["inputs"]["tickets"]["rows_rejected"] == 3
    rejected = pd.read_parquet(tmp_path / "out" / "rejected" / "tickets.parquet")
    assert len(rejected) == 3 and set(rejected["reason"]) == {"handle_seconds: >= 0"}


def test_config_file(tmp_path):
    config = tmp_path / "csmetrics.toml"
    config.write_text('freq = "Q"\n[sla_targets]\nurgent = 60\nhigh = 240\n[policies]\nrenewal_grace_days = 7\n'
                      '[csat_thresholds]\n"1-5" = 5\n[health]\nbands = [30, 60]\n')  # fmt: skip
    out = tmp_path / "out"
    result = runner.invoke(app, ["report", str(SAMPLE), "--out", str(out), "--quiet", "--no-html", "--config", str(config)])
    assert result.exit_code == 0, result.output
    metrics = pd.read_parquet(out / "metrics.parquet")
    assert set(metrics["freq"]) == {"Q"} and "sla_first_response_rate" in set(metrics["metric"])
    bad = tmp_path / "bad.toml"
    bad.write_text("freqency = 'M'\n")
    result = runner.invoke(app, ["report", str(SAMPLE), "--out", str(out), "--config", str(bad)])
    assert result.exit_code == 2 and "unknown key 'freqency'" in result.output
    with pytest.raises(ConfigError, match="unknown key health.colour"):
        check_config({"health": {"colour": 1}})


def test_metrics_command_lists_the_catalog():
    result = runner.invoke(app, ["metrics"])
    assert result.exit_code == 0 and "nrr" in result.output and "feature_adoption" in result.output


def test_metric_frame_accessor():
    frame = csmetrics.support_metrics(pd.read_parquet(SAMPLE / "tickets.parquet"), by="channel")
    wide = frame.cs.wide()
    assert {"tickets", "fcr_rate", "channel"} <= set(wide.columns)
    ax = frame.cs.plot("fcr_rate")
    assert len(ax.get_lines()) == 4  # one per channel
    with pytest.raises(AttributeError, match="not a metric frame"):
        pd.DataFrame({"x": [1]}).cs.wide()


def test_partitioned_metrics_dataset(tmp_path):
    data = tmp_path / "data"
    data.mkdir()
    shutil.copy(SAMPLE / "tickets.parquet", data / "tickets.parquet")
    out = tmp_path / "out"
    result = runner.invoke(app, ["report", str(data), "--out", str(out), "--quiet", "--no-html", "--partitioned"])
    assert result.exit_code == 0, result.output
    partitions = {p.name for p in (out / "metrics").iterdir()}
    assert "metric=fcr_rate" in partitions and "metric=tickets" in partitions
    dataset = pd.read_parquet(out / "metrics")
    assert len(dataset) == len(pd.read_parquet(out / "metrics.parquet"))


def test_cohorts_follow_the_reports_segments(sample_tables):
    split = report(sample_tables, by=["region"], html=False).cohorts
    whole = report(sample_tables, html=False).cohorts
    assert "region" in split.columns and "region" not in whole.columns
    summed = split.groupby(["cohort", "period"])[["cohort_customers", "customers_active", "mrr"]].sum()
    expected = whole.set_index(["cohort", "period"])[["cohort_customers", "customers_active", "mrr"]]
    np.testing.assert_allclose(summed.reindex(expected.index).fillna(0).to_numpy(), expected.to_numpy(), rtol=1e-12)


@pytest.mark.parametrize("engine", ["pandas", "threads"])
def test_the_clv_fit_runs_beside_the_other_families(sample_tables, monkeypatch, engine):
    """In this process the CLV fit (the report's longest finish) runs in a thread of its own from the
    moment its rfm rows are planned: it has begun before the health scores are planned, its table is
    the report's, and an error inside it reaches the caller."""
    import sys
    import threading

    from csmetrics import plans

    module = sys.modules["csmetrics.report"]
    real_fit, real_scores = module._fitted_clv, plans.health_scores
    began, seen = threading.Event(), {}

    def fitted(rfm, margin):
        seen["thread"], seen["rfm"] = threading.current_thread().name, rfm
        began.set()
        return real_fit(rfm, margin)

    def scores(*args, **kwargs):
        seen["fit began first"] = began.wait(timeout=20)
        return real_scores(*args, **kwargs)

    monkeypatch.setattr(module, "_fitted_clv", fitted)
    monkeypatch.setattr(plans, "health_scores", scores)
    done = csmetrics.report(sample_tables, engine=engine)
    rfm = seen.pop("rfm")
    assert seen == {"thread": "csmetrics-clv", "fit began first": True}
    assert len(rfm) == rfm["customer_id"].nunique() > 0  # the rfm rows of every bucket, one per customer
    expected, fit = real_fit(rfm, 1.0)
    assert done.manifest["clv"]["fitted"] and fit["parameters"] == done.manifest["clv"]["parameters"]
    pd.testing.assert_frame_equal(done.clv, expected)

    def broken(rfm, margin):
        raise RuntimeError("the fit broke")

    monkeypatch.setattr(module, "_fitted_clv", broken)
    with pytest.raises(RuntimeError, match="the fit broke"):
        csmetrics.report(sample_tables, engine=engine)


"""Adversarial but schema-shaped input to every public function, validate and the CLI (issue 12).

Each call gives either a correct result (a frame whose numbers are finite or NaN, proportions in
[0, 1], and in quarantine mode valid + rejected = input, row for row) or a ValidationError /
ConfigError: never another exception, a wrapped number or an inf.
"""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

import csmetrics
from csmetrics import catalog
from csmetrics.cli import app
from csmetrics.datagen import generate
from csmetrics.options import ConfigError
from csmetrics.validate import ValidationError

BASE = generate(6, 4, seed=3, start="2024-01-01")
EXPECTED = (ValidationError, ConfigError)
PROPORTIONS = {m.name for m in catalog.CATALOG if m.interval == "wilson"}

NUMBERS = [np.inf, -np.inf, np.nan, 1e300, -1e300, 1e12, -0.0, 2**63, "12", "x", True]
TIMES = [np.datetime64("3000-01-01", "s"), np.datetime64("1200-01-01", "us"), "3000-01-01", "13/02/2023", "garbage", None, 0]


def _mutate(frame: pd.DataFrame, draw) -> pd.DataFrame:
    """A few of: odd values in numeric, time and text columns, Arrow or categorical dtypes,
    a duplicated label, a dropped optional column, 0, 1 or a handful of rows."""
    n = draw(st.sampled_from([0, 1, 3, len(frame)]))
    out = frame.head(n).reset_index(drop=True).copy()
    for _ in range(draw(st.integers(0, 3))):
        if not len(out.columns):
            break
        position = draw(st.integers(0, len(out.columns) - 1))
        column = out.columns[position]
        action = draw(st.sampled_from(["number", "time", "mixed", "arrow", "category", "duplicate", "drop"]))
        if action == "duplicate":
            out = pd.concat([out, out.iloc[:, [position]]], axis=1)
            continue
        if action == "drop":
            out = out.drop(columns=column)
            continue
        series = out.iloc[:, position]
        if action == "arrow":
            try:
                if series.dtype.kind in "fiub":
                    series = series.astype(pd.ArrowDtype(pa.from_numpy_dtype(series.dtype)))
                elif series.dtype == object or pd.api.types.is_string_dtype(series.dtype):
                    series = series.astype(pd.ArrowDtype(pa.string()))
            except (TypeError, ValueError, OverflowError, pa.ArrowException, NotImplementedError):
                pass
        elif action == "category":
            series = series.astype("category")
        elif len(out):
            row = draw(st.integers(0, len(out) - 1))
            value = draw(st.sampled_from(NUMBERS if action == "number" else TIMES if action == "time" else [1, "a", 2.5, None, b"x"]))
            values = series.astype(object).to_numpy().copy()
            values[row] = value
            series = pd.Series(values, index=out.index)
        out.isetitem(position, series)
    return out


@st.composite
def tables(draw, names=("events", "tickets", "surveys", "billing", "customers", "costs", "fx")):
    chosen = draw(st.lists(st.sampled_from(list(names)), min_size=1, max_size=len(names), unique=True))
    return {name: _mutate(BASE[name], draw) for name in chosen}


def _check_frame(frame: pd.DataFrame) -> None:
    assert isinstance(frame, pd.DataFrame)
    for column in ("value", "numerator", "denominator", "ci_low", "ci_high"):
        if column in frame:
            values = frame[column].to_numpy(dtype=float)
            assert not np.isinf(values).any(), column
    if {"metric", "value"} <= set(frame.columns):
        rates = frame.loc[frame["metric"].isin(PROPORTIONS), "value"].to_numpy(dtype=float)
        rates = rates[~np.isnan(rates)]
        assert ((rates >= 0) & (rates <= 1)).all()


def _call(function, *args, **kwargs):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            return function(*args, **kwargs)
        except EXPECTED:
            return None


FAMILIES = {
    "revenue_metrics": ("billing", lambda t: csmetrics.revenue_metrics(t["billing"], fx=t.get("fx"))),
    "customer_metrics": ("billing", lambda t: csmetrics.customer_metrics(t["billing"], fx=t.get("fx"))),
    "value_metrics": ("billing", lambda t: csmetrics.value_metrics(t["billing"], fx=t.get("fx"), costs=t.get("costs"))),
    "mrr_movements": ("billing", lambda t: csmetrics.mrr_movements(t["billing"], fx=t.get("fx"))),
    "current_mrr": ("billing", lambda t: csmetrics.current_mrr(t["billing"], fx=t.get("fx")).to_frame()),
    "cohort_table": ("billing", lambda t: csmetrics.cohort_table(t["billing"], fx=t.get("fx"))),
    "support_metrics": ("tickets", lambda t: csmetrics.support_metrics(t["tickets"], customers=t.get("customers"))),
    "survey_metrics": ("surveys", lambda t: csmetrics.survey_metrics(t["surveys"])),
    "followups": ("surveys", lambda t: csmetrics.followups(t["surveys"], billing=t.get("billing"), fx=t.get("fx"))),
    "engagement_metrics": ("events", lambda t: csmetrics.engagement_metrics(t["events"])),
    "health_metrics": ("events", lambda t: csmetrics.health_metrics(events=t["events"], tickets=t.get("tickets"))),
    "at_risk": ("events", lambda t: csmetrics.at_risk(events=t["events"], surveys=t.get("surveys"))),
}


@settings(max_examples=150, deadline=None, suppress_health_check=list(HealthCheck))
@given(data=tables(), family=st.sampled_from(sorted(FAMILIES)))
def test_every_family_gives_a_correct_frame_or_a_clear_error(data, family):
    needed, call = FAMILIES[family]
    data.setdefault(needed, BASE[needed])
    if needed == "billing":
        data.setdefault("fx", BASE["fx"])  # the generated billing has two currencies
    result = _call(call, data)
    if result is not None:
        _check_frame(result)


@settings(max_examples=60, deadline=None, suppress_health_check=list(HealthCheck))
@given(data=tables())
def test_validate_quarantine_keeps_every_row(data):
    for name, frame in data.items():
        result = _call(csmetrics.validate, frame, name, quarantine=True)
        if result is None:
            continue
        valid, rejected = result
        assert len(valid) + len(rejected) == len(frame)
        assert sorted([*valid.index, *rejected.index]) == sorted(frame.index)
        assert rejected["reason"].str.len().gt(0).all()


@settings(max_examples=25, deadline=None, suppress_health_check=list(HealthCheck))
@given(data=tables(), quarantine=st.booleans())
def test_report_gives_a_report_or_a_clear_error(data, quarantine):
    result = _call(csmetrics.report, data, html=False, quarantine=quarantine)
    if result is not None:
        _check_frame(result.metrics)
        for name, info in result.manifest["inputs"].items():
            assert info["rows"] == len(data[name]) and info["rows_rejected"] <= info["rows"]


@settings(max_examples=15, deadline=None, suppress_health_check=list(HealthCheck))
@given(data=tables(), quarantine=st.booleans(), as_csv=st.booleans())
def test_cli_exits_0_1_or_2_without_a_traceback(tmp_path_factory, data, quarantine, as_csv):
    folder = tmp_path_factory.mktemp("data")
    for name, frame in data.items():
        frame = frame.loc[:, ~frame.columns.duplicated()]
        try:
            if as_csv:
                raise ValueError
            frame.to_parquet(folder / f"{name}.parquet")
        except (ValueError, TypeError, OverflowError, pa.ArrowException):
            frame.to_csv(folder / f"{name}.csv", index=False)
    out = tmp_path_factory.mktemp("out") / "report"
    args = ["report", str(folder), "--out", str(out), "--quiet", "--no-html", *(["--quarantine"] if quarantine else [])]
    result = CliRunner().invoke(app, args)
    assert result.exception is None or isinstance(result.exception, SystemExit), repr(result.exception)
    assert result.exit_code in (0, 1, 2), result.output
    assert "Traceback" not in result.output
    if result.exit_code == 2:
        assert len(result.output.strip().splitlines()) == 1, result.output
    if result.exit_code == 0:
        _check_frame(pd.read_parquet(out / "metrics.parquet"))


@pytest.mark.parametrize("kind", ["category", "arrow"])
def test_categorical_and_arrow_columns_give_the_same_numbers(kind):
    t = {k: v.copy() for k, v in BASE.items()}
    expected = csmetrics.report(t, html=False).metrics
    for name in ("tickets", "surveys", "events", "billing"):
        for column in t[name].columns:
            if t[name][column].dtype == object or pd.api.types.is_string_dtype(t[name][column].dtype):
                t[name][column] = t[name][column].astype("category" if kind == "category" else pd.ArrowDtype(pa.string()))
    got = csmetrics.report(t, html=False).metrics
    pd.testing.assert_frame_equal(got.drop(columns=[c for c in got.columns if c not in expected.columns]),
                                  expected, check_dtype=False, check_categorical=False, rtol=1e-12)  # fmt: skip

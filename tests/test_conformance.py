"""Backend conformance: every public function on pandas and on Dask, over tables that have only their
required columns (a missing optional column, such as billing's invoiced_at, must work everywhere)."""

from __future__ import annotations

import dask
import dask.dataframe as dd
import numpy as np
import pandas as pd
import pytest

import csmetrics
from csmetrics.schemas import BIG_TABLES
from csmetrics.validate import required_columns


def minimal_tables() -> dict[str, pd.DataFrame]:
    """Six customers over three months, each table with its required columns only (billing: recurring
    lines need their service dates, so those two optional columns are kept)."""
    months = pd.date_range("2024-01-01", periods=4, freq="MS", tz="UTC")
    rng = np.random.default_rng(5)
    billing = pd.DataFrame(
        {
            "customer_id": np.repeat(np.arange(1, 7), 3),
            "kind": "recurring",
            "amount": rng.integers(10, 200, 18).astype(float),
            "service_start": np.tile(months[:3], 6),
            "service_end": np.tile(months[1:], 6),
        }
    ).iloc[:-2]  # customer 6 churns early
    tickets = pd.DataFrame(
        {"ticket_id": np.arange(30), "customer_id": rng.integers(1, 7, 30),
         "created_at": months[0] + pd.to_timedelta(rng.integers(0, 85, 30), unit="D")}
    )  # fmt: skip
    surveys = pd.DataFrame(
        {"response_id": np.arange(20), "customer_id": rng.integers(1, 7, 20), "survey": "nps",
         "score": rng.integers(0, 11, 20).astype(float)}
    )  # fmt: skip
    surveys["responded_at"] = months[0] + pd.to_timedelta(rng.integers(0, 85, 20), unit="D")  # a time column is needed
    events = pd.DataFrame(
        {"customer_id": rng.integers(1, 7, 60), "event": rng.choice(["login", "export"], 60),
         "timestamp": months[0] + pd.to_timedelta(rng.integers(0, 85 * 24, 60), unit="h")}
    )  # fmt: skip
    customers = pd.DataFrame({"customer_id": np.arange(1, 7)})
    costs = pd.DataFrame({"incurred_at": months[:3], "category": ["sales", "support", "capex"], "amount": [100.0, 50.0, 10.0]})
    return {"billing": billing, "tickets": tickets, "surveys": surveys, "events": events, "customers": customers, "costs": costs}


def test_fixtures_have_only_required_columns():
    extra = {"billing": {"service_start", "service_end"}, "surveys": {"responded_at"}}
    for name, table in minimal_tables().items():
        assert set(table.columns) == set(required_columns(name)) | extra.get(name, set()), name


AS_OF = "2024-03-20"
CALLS = {
    "revenue_metrics": lambda t: csmetrics.revenue_metrics(t["billing"], as_of=AS_OF),
    "customer_metrics": lambda t: csmetrics.customer_metrics(t["billing"], as_of=AS_OF),
    "value_metrics": lambda t: csmetrics.value_metrics(t["billing"], costs=t["costs"], as_of=AS_OF),
    "mrr_movements": lambda t: csmetrics.mrr_movements(t["billing"], as_of=AS_OF),
    "current_mrr": lambda t: csmetrics.current_mrr(t["billing"], as_of=AS_OF).to_frame(),
    "cohort_table": lambda t: csmetrics.cohort_table(t["billing"], as_of=AS_OF),
    "support_metrics": lambda t: csmetrics.support_metrics(t["tickets"], as_of=AS_OF),
    "survey_metrics": lambda t: csmetrics.survey_metrics(t["surveys"], as_of=AS_OF),
    "followups": lambda t: csmetrics.followups(t["surveys"], billing=t["billing"], as_of=AS_OF),
    "engagement_metrics": lambda t: csmetrics.engagement_metrics(t["events"], billing=t["billing"], as_of=AS_OF),
    "health_metrics": lambda t: csmetrics.health_metrics(**{k: t[k] for k in ("events", "tickets", "surveys", "billing")}, as_of=AS_OF),
    "at_risk": lambda t: csmetrics.at_risk(**{k: t[k] for k in ("events", "tickets", "surveys", "billing")}, as_of=AS_OF),
    "scorecard": lambda t: csmetrics.HealthScorecard().score(**{k: t[k] for k in ("events", "tickets", "surveys", "billing")}, as_of=AS_OF),
    "report.metrics": lambda t: csmetrics.report(t, html=False).metrics,
    "report.customers": lambda t: _frame(csmetrics.report(t, html=False).customers),
    "report.cohorts": lambda t: csmetrics.report(t, html=False).cohorts,
}


def _frame(output) -> pd.DataFrame:
    return pd.concat(list(output.frames()), ignore_index=True) if hasattr(output, "frames") else output


def _dask(tables: dict[str, pd.DataFrame]) -> dict:
    return {k: dd.from_pandas(v, npartitions=2, sort=False) if k in BIG_TABLES else v for k, v in tables.items()}


@pytest.mark.parametrize("name", sorted(CALLS))
def test_every_public_function_on_pandas_and_dask(name):
    tables = minimal_tables()
    expected = CALLS[name](tables)
    assert isinstance(expected, pd.DataFrame) and (len(expected) > 0 or name == "at_risk")  # nobody is red here
    with dask.config.set(scheduler="synchronous"):
        got = CALLS[name](_dask(tables))
    assert isinstance(got, pd.DataFrame)
    pd.testing.assert_frame_equal(got.reset_index(drop=True), expected.reset_index(drop=True), check_dtype=False, rtol=1e-9)


def test_a_scorecard_is_not_changed_by_the_functions_that_use_it():
    tables = minimal_tables()
    card = csmetrics.HealthScorecard()
    csmetrics.health_metrics(scorecard=card, events=tables["events"], as_of=AS_OF)
    csmetrics.at_risk(scorecard=card, events=tables["events"], as_of=AS_OF)
    assert not hasattr(card, "support_scale_")
    with pytest.raises(csmetrics.NotFittedError, match="not fitted"):
        card.transform(events=tables["events"])
    fitted = card.fit(tickets=tables["tickets"], as_of=AS_OF)
    assert fitted is card and card.support_scale_ >= 1
    assert len(card.transform(tickets=tables["tickets"], as_of=AS_OF)) > 0

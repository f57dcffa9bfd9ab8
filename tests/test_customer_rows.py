"""customers.parquet (the report's per customer and period rows): movements by kind, MRR and health,
one row per (period, customer_id) with either, in that order, on every engine."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

import csmetrics
from csmetrics.report import report

from .metrics.test_open_ended import lines


def _by_cell(rows: pd.DataFrame) -> dict:
    return {(p.strftime("%Y-%m"), c): r for p, c, r in zip(rows["period"], rows["customer_id"], rows.itertuples())}


def test_movements_mrr_and_health_by_hand():
    # customer 1: 100 in January, 150 in February, nothing from March (churn -150 in March);
    # customer 2: 40 a month from February
    billing = lines((1, "2024-01-01", "2024-02-01", 100, 1), (1, "2024-02-01", "2024-03-01", 150, 1),
                    (2, "2024-02-01", None, 40, 1))  # fmt: skip
    rows = report({"billing": billing}, as_of="2024-03-15", html=False).customers
    assert list(zip(rows["period"].dt.strftime("%Y-%m"), rows["customer_id"])) == [
        ("2024-01", 1), ("2024-02", 1), ("2024-02", 2), ("2024-03", 1), ("2024-03", 2)]  # fmt: skip
    cell = _by_cell(rows)
    assert (cell["2024-01", 1].new_mrr, cell["2024-02", 1].expansion_mrr, cell["2024-03", 1].churn_mrr) == (100, 50, -150)
    assert cell["2024-02", 2].new_mrr == 40 and cell["2024-03", 2].new_mrr == 0
    # MRR at each scored period's end; customer 1 churned at March's first instant: not active in
    # March, so its March row holds the movement alone (no MRR, no health)
    assert [cell[k].mrr for k in sorted(cell)] == pytest.approx([100, 150, 40, np.nan, 40], nan_ok=True)
    assert rows["health_band"].isna().tolist() == [False, False, False, True, False]
    assert not rows[["new_mrr", "reactivation_mrr", "expansion_mrr", "contraction_mrr", "churn_mrr"]].isna().any().any()


def test_movement_only_cells_have_no_health_and_spot_mode_books_fx_effect():
    # spot mode: customer 1's EUR line gains 10 USD of MRR when the rate moves (fx_effect, February)
    table = lines((1, "2024-01-01", None, 100, 1, "EUR"), (2, "2024-01-01", None, 10, 1, "USD"))
    fx = pd.DataFrame({"currency": "EUR", "date": ["2024-01-01", "2024-02-10"], "rate": [1.10, 1.20]})
    # events of customer 3 only: scored, without billing rows
    events = pd.DataFrame({"customer_id": [3, 3], "timestamp": ["2024-01-05", "2024-02-05"], "event": "login"})
    result = report({"billing": table, "fx": fx, "events": events}, as_of="2024-03-20", html=False,
                    config={"policies": {"fx_mode": "spot"}})  # fmt: skip
    cell = _by_cell(result.customers)
    assert cell["2024-02", 1].fx_effect_mrr == pytest.approx(10)
    assert cell["2024-01", 1].fx_effect_mrr == 0 and cell["2024-01", 1].new_mrr == pytest.approx(110)
    keys = result.customers[["period", "customer_id"]]
    assert keys.equals(keys.sort_values(["period", "customer_id"]).reset_index(drop=True))
    assert not keys.duplicated().any()


@pytest.mark.parametrize("engine", ["pandas", "threads"])
def test_the_rows_are_the_movements_ledger_joined_to_the_scores(sample_tables, engine):
    # the definition, from the public functions: the movements ledger summed per (customer, period,
    # kind), outer-joined to the health scores, ordered by (period, customer_id)
    result = report(sample_tables, html=False, engine=engine)
    as_of = result.manifest["as_of"]
    ledger = csmetrics.mrr_movements(sample_tables["billing"], fx=sample_tables.get("fx"), as_of=as_of)
    moves = ledger.pivot_table(index=["customer_id", "period"], columns="kind", values="amount", aggfunc="sum")
    moves = moves.reindex(columns=["new", "reactivation", "expansion", "contraction", "churn"]).fillna(0.0)
    moves.columns = [f"{k}_mrr" for k in moves.columns]
    scores = csmetrics.HealthScorecard().score(
        **{k: v for k, v in sample_tables.items() if k in ("events", "surveys", "tickets", "billing", "fx")}, as_of=as_of
    )
    scores = scores.rename(columns={"score": "health_score", "band": "health_band"})
    expected = scores[list(result.customers.columns[: -len(moves.columns)])].merge(
        moves.reset_index(), on=["customer_id", "period"], how="outer"
    )
    expected[moves.columns] = expected[moves.columns].fillna(0.0)
    expected = expected.sort_values(["period", "customer_id"]).reset_index(drop=True)
    assert len(expected) > len(scores)  # some cells have movements and no score (churned after their period)
    got = result.customers
    assert list(got.columns) == list(expected.columns)
    pd.testing.assert_frame_equal(got, expected, check_dtype=False, rtol=1e-12)
    np.testing.assert_array_equal(got["components_used"].isna(), got["health_score"].isna() & got["usage"].isna())


def test_threads_merge_buckets_column_by_column_and_buckets_of_other_columns():
    from csmetrics.engines.pandas import ThreadedEngine
    from csmetrics.plans import _sorted

    engine = ThreadedEngine({}, 2)
    day = pd.Timestamp("2024-01-01", tz="UTC")
    one = pd.DataFrame({"customer_id": [2, 4, 2], "period": [day, day, day + pd.Timedelta(days=31)], "x": [1.0, 2.0, 3.0],
                        "band": pd.Series(["red", None, "green"], dtype="str")})  # fmt: skip
    two = pd.DataFrame({"customer_id": [1, 3], "period": [day, day + pd.Timedelta(days=31)], "x": [4.0, 5.0],
                        "band": pd.Series(["yellow", "red"], dtype="str")})  # fmt: skip
    expected = _sorted(pd.concat([one, two], ignore_index=True))
    assert expected["customer_id"].tolist() == [1, 2, 4, 2, 3]
    got = engine.customer_output([one.copy(), two.copy()], None, _sorted, 2)
    pd.testing.assert_frame_equal(got, expected)
    # a bucket with other columns (no movements there): merged as a concatenation, missing cells null
    moves = two.assign(new_mrr=[10.0, 0.0])
    got = engine.customer_output([one.copy(), moves], None, _sorted, 2)
    assert got["new_mrr"].tolist()[:1] == [10.0] and got["new_mrr"].isna().sum() == 3


@pytest.mark.parametrize("threads", [False, True])
def test_a_buckets_rows_in_parts_merge_in_period_customer_order(threads):
    """_customer_rows gives the scored rows as they are and the movement-only rows after them: the
    engines merge every part into (period, customer_id) order, on one bucket and on several."""
    from csmetrics.engines.pandas import PandasEngine, ThreadedEngine
    from csmetrics.plans import _sorted

    day = pd.Timestamp("2024-01-01", tz="UTC")
    head = pd.DataFrame({"customer_id": [2, 4, 2], "period": [day, day, day + pd.Timedelta(days=31)], "x": [1.0, 2.0, 3.0]})
    tail = pd.DataFrame({"customer_id": [3, 1], "period": [day, day + pd.Timedelta(days=31)], "x": [np.nan, np.nan]})
    other = pd.DataFrame({"customer_id": [5], "period": [day], "x": [7.0]})
    expected = _sorted(pd.concat([head, tail, other], ignore_index=True))
    assert expected["customer_id"].tolist() == [2, 3, 4, 5, 1, 2]
    engine = ThreadedEngine({}, 2) if threads else PandasEngine({})
    buckets = [[head.copy(), tail.copy()], [other.copy()]] if threads else [[head.copy(), tail.copy(), other.copy()]]
    pd.testing.assert_frame_equal(engine.customer_output(buckets, None, _sorted, 2), expected)

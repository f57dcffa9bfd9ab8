"""Health over time (METRICS.md §14): change, band change, trend, newly red, active-only scoring."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

import csmetrics
from csmetrics import HealthScorecard


def answers(rows):
    """NPS answers (customer, date, score): the sentiment component is score x 10."""
    return pd.DataFrame(
        {
            "response_id": range(len(rows)),
            "customer_id": [r[0] for r in rows],
            "survey": "nps",
            "score": [float(r[2]) for r in rows],
            "responded_at": [r[1] for r in rows],
        }
    )


def by_period(scores, customer):
    rows = scores[scores["customer_id"] == customer]
    return {p.strftime("%Y-%m"): r for p, r in zip(rows["period"], rows.itertuples())}


def test_change_band_change_and_trend_by_hand():
    # customer 1 answers 9, 5, 2, (April: nothing), 8 -> sentiment 90, 50, 20, -, 80
    surveys = answers([(1, "2024-01-05", 9), (1, "2024-02-05", 5), (1, "2024-03-05", 2), (1, "2024-05-05", 8), (2, "2024-05-06", 3)])
    scores = HealthScorecard().score(surveys=surveys)
    one = by_period(scores, 1)
    # without billing a customer is scored only in periods with an answer (no April row)
    assert sorted(one) == ["2024-01", "2024-02", "2024-03", "2024-05"]
    assert [one[m].score for m in sorted(one)] == [90, 50, 20, 80]
    assert np.isnan(one["2024-01"].score_change)
    assert (one["2024-02"].score_change, one["2024-03"].score_change) == (-40, -30)
    assert np.isnan(one["2024-05"].score_change)  # April not scored: no immediately preceding period
    assert [one[m].band_change for m in sorted(one)] == ["", "green->yellow", "yellow->red", ""]
    # trend over the last 3 periods, least squares in points per period:
    # Jan: 1 point -> NaN; Feb: (90, 50) -> -40; Mar: (90, 50, 20) at x = -2, -1, 0 -> -35;
    # May: scored periods among Mar..May are Mar (x=-2) and May (x=0): (80 - 20) / 2 = 30
    assert np.isnan(one["2024-01"].trend)
    assert (one["2024-02"].trend, one["2024-03"].trend, one["2024-05"].trend) == pytest.approx((-40, -35, 30))
    wide = HealthScorecard(trend_periods=2).score(surveys=surveys)
    assert by_period(wide, 1)["2024-03"].trend == pytest.approx(-30)
    assert np.isnan(by_period(wide, 1)["2024-05"].trend)  # only May among Apr..May


def test_new_red_and_mean_change_aggregates_by_hand():
    surveys = answers([
        (1, "2024-01-05", 9), (1, "2024-02-05", 2),   # green -> red: newly red in Feb, change -70
        (2, "2024-01-06", 3), (2, "2024-02-06", 1),   # red -> red: not new, change -20
        (3, "2024-02-07", 1),                         # first scored in Feb, red: not new (not scored before)
        (4, "2024-01-08", 5), (4, "2024-02-08", 6),   # yellow -> yellow, change +10
    ])  # fmt: skip
    frame = csmetrics.health_metrics(surveys=surveys)
    feb = frame[frame["period"] == pd.Timestamp("2024-02-01", tz="UTC")].set_index("metric")["value"]
    assert feb["health_new_red"] == 1
    assert feb["health_score_change_mean"] == pytest.approx((-70 - 20 + 10) / 3)
    jan = frame[frame["period"] == pd.Timestamp("2024-01-01", tz="UTC")].set_index("metric")["value"]
    assert jan["health_new_red"] == 0 and np.isnan(jan["health_score_change_mean"])


def test_active_only_with_billing_and_at_risk_with_next_renewal():
    billing = pd.DataFrame(
        {
            "customer_id": [1, 2, 2],
            "kind": "recurring",
            "amount": [300.0, 100.0, 100.0],
            # 1 runs Jan-Mar, ends Apr 1 (no renewal known); 2 churns Feb 15 and comes back in April
            "service_start": ["2024-01-01", "2024-01-01", "2024-04-01"],
            "service_end": ["2024-04-01", "2024-02-15", "2024-05-01"],
            "invoiced_at": ["2024-01-01", "2024-01-01", "2024-04-01"],
        }
    )
    surveys = answers([(1, "2024-03-10", 1), (2, "2024-03-11", 0)])
    scores = HealthScorecard().score(billing=billing, surveys=surveys, as_of="2024-03-20")
    assert sorted(by_period(scores, 2)) == ["2024-01", "2024-02"]  # scored in its churn period, not after
    assert sorted(by_period(scores, 1)) == ["2024-01", "2024-02", "2024-03"]
    risky = csmetrics.at_risk(billing=billing, surveys=surveys, as_of="2024-03-20", scorecard=HealthScorecard(weights={"sentiment": 1}))
    assert risky["customer_id"].tolist() == [1]
    row = risky.iloc[0]
    assert row["next_renewal"] == pd.Timestamp("2024-04-01", tz="UTC")
    assert row["renewal_mrr"] == pytest.approx(100.0)
    assert {"score_change", "trend", "band_change"} <= set(risky.columns)


@pytest.mark.parametrize("ids", [[3, 1, 2], [10**12, 5, 77], ["c", "a", "b"]])
def test_changes_whatever_the_row_order_and_id_kind(ids):
    # the same history for three customers (narrow integer, wide integer and text ids): rows given to
    # Scorecard.finish shuffled must score as rows given in (period, customer_id) order
    history = [(0, "2024-01-05", 9), (0, "2024-02-05", 5), (0, "2024-03-05", 2), (1, "2024-01-07", 3),
               (1, "2024-02-07", 8), (2, "2024-02-09", 6), (2, "2024-03-09", 6), (1, "2024-03-07", 10)]
    surveys = answers([(ids[c], day, score) for c, day, score in history])
    card = HealthScorecard().fit(surveys=surveys)
    scores = card.score(surveys=surveys)
    key = scores[["period", "customer_id"]]
    assert key.equals(key.sort_values(["period", "customer_id"]).reset_index(drop=True))
    first = by_period(scores, ids[0])
    assert [first[m].score_change for m in ("2024-02", "2024-03")] == [-40, -30]
    assert by_period(scores, ids[1])["2024-02"].band_change == "red->green"
    assert by_period(scores, ids[2])["2024-03"].band_change == ""
    spine = csmetrics.metrics.health.scores_spine([scores["period"]], "M", "UTC")
    rows = scores[["customer_id", "period", "usage", "sentiment", "revenue", "mrr"]].assign(support_load=np.nan)
    shuffled = rows.sample(frac=1.0, random_state=3)
    pd.testing.assert_frame_equal(card.finish(shuffled, spine), card.finish(rows, spine))
    pd.testing.assert_frame_equal(card.finish(rows, spine), scores[card.finish(rows, spine).columns])

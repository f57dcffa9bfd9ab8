"""Health scorecard (METRICS.md §10)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import csmetrics
from csmetrics.metrics.health import COMPONENTS, band_of, weighted_score

from .helpers import billing, line


def test_gainsight_weighted_example():
    # Gainsight's documented example: weights 20/15/22 on scores 47/59/21 -> 40.122
    score, used, contributions = weighted_score(np.array([[47.0, 59.0, 21.0]]), np.array([20.0, 15.0, 22.0]))
    assert score[0] == pytest.approx(40.122, abs=1e-3)
    assert used[0] == 3 and contributions.sum() == pytest.approx(score[0])


def test_missing_component_renormalises_weights():
    score, used, contributions = weighted_score(np.array([[80.0, np.nan, 40.0, 60.0]]), np.array([1.0, 1.0, 2.0, 0.0]))
    assert score[0] == pytest.approx((80 + 2 * 40) / 3)
    assert used[0] == 2  # sentiment missing, revenue weighs 0
    assert np.isnan(contributions[0, 1]) and np.isnan(contributions[0, 3])


def test_bands():
    assert list(band_of(np.array([39.9, 40, 69.9, 70, np.nan]), (40, 70))) == ["red", "yellow", "yellow", "green", None]


def tables():
    """Customer 1: steady usage, a promoter, no tickets, flat MRR. Customer 2: usage collapses,
    a detractor, many open tickets, MRR halved."""
    events = []
    for m in (1, 2, 3, 4):
        for day in range(1, 11):
            events.append({"customer_id": 1, "timestamp": f"2024-{m:02d}-{day:02d}", "event": "login"})
            if m < 4:
                events.append({"customer_id": 2, "timestamp": f"2024-{m:02d}-{day:02d}", "event": "login"})
    events.append({"customer_id": 2, "timestamp": "2024-04-02", "event": "login"})
    events.append({"customer_id": 2, "timestamp": "2024-04-03", "event": "login"})
    surveys = pd.DataFrame({"response_id": [1, 2], "customer_id": [1, 2], "survey": "nps", "score": [10, 2],
                            "responded_at": ["2024-02-10", "2024-03-10"]})  # fmt: skip
    tickets = pd.DataFrame({"ticket_id": range(6), "customer_id": 2, "created_at": "2024-04-05"})
    b = billing(line(1, "2024-01-01", "2025-01-01", 1200),
                line(2, "2024-01-01", "2024-04-01", 600), line(2, "2024-04-01", "2024-05-01", 100))  # fmt: skip
    return {"events": pd.DataFrame(events), "surveys": surveys, "tickets": tickets, "billing": b, "as_of": "2024-04-20"}


def test_scorecard_by_hand():
    card = csmetrics.HealthScorecard(support_scale=10)
    scores = card.score(**tables())
    april = scores[scores["period"] == pd.Timestamp("2024-04-01", tz="UTC")].set_index("customer_id")
    one, two = april.loc[1], april.loc[2]
    assert one["usage"] == 100 and one["sentiment"] == 100 and one["support"] == 100 and one["revenue"] == 100
    assert one["score"] == 100 and one["band"] == "green" and one["components_used"] == 4
    # customer 2: 2 active days against a baseline of 10 -> 20; NPS 2 -> 20; 6 tickets open of 10 -> 40;
    # MRR 100 against 200 three months before -> 50
    assert two["usage"] == pytest.approx(20)
    assert two["sentiment"] == pytest.approx(20)
    assert two["support"] == pytest.approx(40)
    assert two["revenue"] == pytest.approx(50)
    assert two["score"] == pytest.approx((20 + 20 + 40 + 50) / 4) and two["band"] == "red"
    assert two[[f"contribution_{c}" for c in COMPONENTS]].sum() == pytest.approx(two["score"])
    assert two["weakest_component"] in ("usage", "sentiment")  # both lose 80 points
    # before its first answer a customer has no sentiment: three components, weights renormalised
    january = scores[scores["period"] == pd.Timestamp("2024-01-01", tz="UTC")].set_index("customer_id")
    assert np.isnan(january.loc[1, "sentiment"]) and january.loc[1, "components_used"] == 3


def test_fit_learns_support_scale_and_transform_needs_fit():
    card = csmetrics.HealthScorecard()
    with pytest.raises(RuntimeError, match="not fitted"):
        card.transform(**tables())
    assert card.fit(**tables()) is card
    assert card.support_scale_ >= 1


def test_health_metrics_and_at_risk():
    card = csmetrics.HealthScorecard(support_scale=10)
    frame = csmetrics.health_metrics(scorecard=card, **tables())
    april = frame[frame["period"] == pd.Timestamp("2024-04-01", tz="UTC")].set_index("metric")
    assert april.loc["health_red_share", "value"] == 0.5 and april.loc["health_green_share", "value"] == 0.5
    assert april.loc["health_score_mean", "value"] == pytest.approx((100 + 32.5) / 2)
    risky = csmetrics.at_risk(scorecard=card, **tables())
    assert risky["customer_id"].tolist() == [2] and risky["mrr"].tolist() == [100]


def test_unknown_component_weight_is_an_error():
    with pytest.raises(KeyError, match="unknown health component"):
        csmetrics.HealthScorecard(weights={"nps": 1}).score(**tables())


@settings(max_examples=60, deadline=None)
@given(st.lists(st.lists(st.one_of(st.none(), st.floats(0, 100)), min_size=4, max_size=4), min_size=1, max_size=20),
       st.lists(st.floats(0.1, 10), min_size=4, max_size=4))
def test_property_scores_bounded_and_zero_weight_changes_nothing(rows, weights):
    scores = np.array([[np.nan if v is None else v for v in row] for row in rows])
    w = np.array(weights)
    score, used, _ = weighted_score(scores, w)
    assert np.all(np.isnan(score) | ((score >= 0) & (score <= 100 + 1e-9)))
    with_extra = np.column_stack([scores, np.full(len(scores), 3.0)])
    again, used_again, _ = weighted_score(with_extra, np.append(w, 0.0))
    np.testing.assert_allclose(again, score)
    assert (used_again == used).all()
    bands = band_of(score, (40, 70))
    shares = [np.mean(bands[~np.isnan(score)] == b) for b in ("red", "yellow", "green")] if (~np.isnan(score)).any() else [1.0]
    assert sum(shares) == pytest.approx(1.0)


def test_accessor_entry_points():
    t = tables()
    events = t.pop("events")
    card = csmetrics.HealthScorecard(support_scale=10)
    pd.testing.assert_frame_equal(events.cs.health_scores(scorecard=card, **t), card.score(events=events, **t))
    pd.testing.assert_frame_equal(events.cs.engagement_metrics(as_of="2024-04-20"), csmetrics.engagement_metrics(events, as_of="2024-04-20"))


def test_the_weakest_component_costs_the_most_weighted_points():
    """weight * (100 - score) per component present with a positive weight; the first on ties; none
    where no component is used (worked by hand)."""
    from csmetrics.metrics.health import _weakest, weighted_score

    picked = np.array([[50, 90, np.nan, 10], [100, 100, 100, 100], [np.nan] * 4, [20, 20, 60, 60]], dtype=float)
    weights = np.array([1.0, 2.0, 1.0, 0.0])
    _, used, _ = weighted_score(picked, weights)
    # row 0: usage 50 > sentiment 2 * 10 = 20 (revenue has no weight); row 1: all cost 0 -> the first;
    # row 3: sentiment 2 * 80 = 160 > usage 80 > support 40
    assert _weakest(picked, weights, used).tolist() == [0, 0, -1, 1]
    assert _weakest(np.asfortranarray(picked), np.array([1.0, 2.0, 1.0, 3.0]), used).tolist() == [3, 0, -1, 1]


@pytest.mark.parametrize(("engine", "buckets"), [("pandas", 1), ("threads", 3)])
def test_the_fits_period_ranges_are_the_scores(sample_tables, engine, buckets):
    """The report's health families take each bucket's first and last period from the fit's pass over
    the component rows instead of a pass over the scores: they must be the scores' own, and the health
    frame, at-risk list and movers the same as when found from the scores; unfitted too."""
    from csmetrics import plans
    from csmetrics.engines import open_engine, resolve

    tables = {k: sample_tables[k] for k in ("events", "tickets", "surveys", "billing", "fx", "customers")}
    opened = open_engine(tables, engine=engine, buckets=buckets)[0]
    scored = plans.health_scores(opened, csmetrics.HealthScorecard(), persist=False)
    (found,) = opened.gather(opened.map(plans._period_range, scored.handle))
    assert [list(p) for p in scored.periods] == [list(p) for p in found]
    assert sum(len(p) for p in found) > 0
    unfitted = plans.health_scores(opened, scored.card, fit=False)
    assert [list(p) for p in unfitted.periods] == [list(p) for p in found]
    given = {
        "health": plans.health(opened, scored.handle, periods=scored.periods),
        "movers": plans.health_movers(opened, scored.handle, periods=scored.periods),
    }
    looked_up = {"health": plans.health(opened, scored.handle), "movers": plans.health_movers(opened, scored.handle)}
    a, b = resolve(opened, given), resolve(opened, looked_up)
    pd.testing.assert_frame_equal(a["health"][0], b["health"][0])
    pd.testing.assert_frame_equal(a["health"][1], b["health"][1])
    pd.testing.assert_frame_equal(a["movers"], b["movers"])
    assert len(a["health"][0]) > 0


@pytest.mark.parametrize(("engine", "buckets"), [("pandas", None), ("threads", 3)])
def test_the_report_frees_the_scores_before_merging_customers_parquet(sample_tables, monkeypatch, engine, buckets):
    """customers.parquet's merge is the report's peak of memory (at large 20M scored rows of 17 columns
    and the 20M merged rows): every bucket's scores must be freed by then, not held by a name the
    report keeps (they were, through health_scores' result: 15.4 GiB at large against 13.8 GiB)."""
    import gc
    import weakref

    from csmetrics import plans
    from csmetrics.metrics.health import Scorecard

    made: list[weakref.ref] = []
    alive_at_merge: list[int] = []
    real_finish, real_output = Scorecard.finish, plans.customer_output

    def finish(self, rows, spine):
        scored = real_finish(self, rows, spine)
        made.append(weakref.ref(scored))
        return scored

    def output(*args, **kwargs):
        gc.collect()
        alive_at_merge.append(sum(ref() is not None for ref in made))
        return real_output(*args, **kwargs)

    monkeypatch.setattr(Scorecard, "finish", finish)
    monkeypatch.setattr(plans, "customer_output", output)
    done = csmetrics.report(sample_tables, engine=engine, buckets=buckets)
    assert len(made) == (buckets or 1) and alive_at_merge == [0]
    assert len(done.customers) > 0 and done.customers["health_score"].notna().any()

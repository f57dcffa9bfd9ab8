"""Survey metrics (METRICS.md §7), follow-ups and period comparison."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import csmetrics
from csmetrics.metrics import surveys as survey_family

from .helpers import billing, line, values

JAN, FEB = "2024-01-01", "2024-02-01"


def answers(survey, scores, at="2024-01-10", **extra):
    rows = []
    for i, score in enumerate(scores):
        rows.append({"customer_id": i % 7, "survey": survey, "score": score, "sent_at": "2024-01-05",
                     "responded_at": None if score is None else at, **extra})  # fmt: skip
    return rows


def table(*groups):
    rows = [row for group in groups for row in group]
    frame = pd.DataFrame(rows)
    frame.insert(0, "response_id", range(len(frame)))
    return frame


def test_worked_nps_case():
    frame = csmetrics.survey_metrics(table(answers("nps", [10] * 50 + [7] * 30 + [6] * 20)))
    nps = frame.set_index("metric")
    assert nps.loc["nps", "value"] == 30
    assert round(nps.loc["nps", "ci_low"], 2) == 14.05 and round(nps.loc["nps", "ci_high"], 2) == 44.20
    assert (nps.loc["promoters", "value"], nps.loc["passives", "value"], nps.loc["detractors", "value"]) == (50, 30, 20)


def test_seed_csat_example_and_scales():
    five = table(answers("csat", [5] * 25 + [4] * 15 + [3] * 10))  # 40 positive of 50 on 1-5
    assert values(csmetrics.survey_metrics(five), "csat") == {JAN: 0.8}
    ten = table(answers("csat", [6, 10, 5, 0], scale_min=0, scale_max=10))  # 0-10: positive from 6
    assert values(csmetrics.survey_metrics(ten), "csat") == {JAN: 0.5}
    custom = csmetrics.survey_metrics(ten, csat_thresholds={(0, 10): 9})
    assert values(custom, "csat") == {JAN: 0.25}


def test_answers_of_one_type_on_different_scales_in_one_table():
    """Each answer is classed on its own scale, also where one survey type mixes scales."""
    rows = (
        answers("csat", [4, 3], scale_min=1, scale_max=5)  # 1-5: positive from 4 -> 1 of 2
        + answers("csat", [6, 5, 9], scale_min=0, scale_max=10)  # 0-10: positive from 6 -> 2 of 3
        + answers("ces", [5, 4], scale_min=1, scale_max=7)  # 1-7: easy from 5 -> 1 of 2
        + answers("ces", [3, 2], scale_min=1, scale_max=5)  # 1-5: easy from 3 -> 1 of 2
        + answers("cxi", [3, 2, 1], component="effort", scale_min=1, scale_max=3)  # 1-3: 2 in both boxes
        + answers("cxi", [4, 2], component="effort", scale_min=1, scale_max=5)  # 1-5: top 1, bottom 1
    )
    frame = csmetrics.survey_metrics(table(rows))
    assert values(frame, "csat") == {JAN: pytest.approx(3 / 5)}
    assert values(frame, "ces_easy_rate") == {JAN: pytest.approx(2 / 4)}
    assert values(frame, "ces") == {JAN: pytest.approx(14 / 4)}
    # effort: top two {3, 2} on 1-3 and {4} on 1-5 = 3; bottom two {2, 1} and {2} = 3; (3 - 3) / 5
    assert values(frame, "cxi") == {JAN: pytest.approx(0.0)}
    tilted = csmetrics.survey_metrics(table(rows[:-2] + answers("cxi", [5, 4], component="effort", scale_min=1, scale_max=5)))
    assert values(tilted, "cxi") == {JAN: pytest.approx(100 * (4 - 2) / 5)}  # top 2 + 2, bottom 2 + 0


def test_ces_mean_and_easy_rate():
    frame = csmetrics.survey_metrics(table(answers("ces", [7, 6, 5, 4, 1])))  # default 1-7
    assert values(frame, "ces") == {JAN: pytest.approx(23 / 5)}
    assert values(frame, "ces_easy_rate") == {JAN: pytest.approx(3 / 5)}  # 5, 6, 7 are the top three points


def test_cxi_with_a_missing_component():
    rows = (
        answers("cxi", [5, 4, 1, 3], component="effort")  # top two: 2, bottom two: 1 -> (2 - 1) / 4 = 25
        + answers("cxi", [5, 5], component="empathy")  # 100
        + answers("cxi", [1, 2, 3], component="understanding")  # (0 - 2) / 3 = -66.67
    )  # efficiency has no answers: left out of the mean
    frame = csmetrics.survey_metrics(table(rows))
    assert values(frame, "cxi") == {JAN: pytest.approx((25 + 100 - 200 / 3) / 3)}


def test_response_and_comment_rates_with_unanswered_sends():
    rows = answers("nps", [9, None, None, 3]) + answers("csat", [5, None])
    frame = table(rows)
    frame["comment"] = ["great", None, None, "  ", "ok", None]
    result = csmetrics.survey_metrics(frame)
    assert values(result, "response_rate") == {JAN: pytest.approx(3 / 6)}
    assert values(result, "comment_rate") == {JAN: pytest.approx(2 / 3)}  # a blank comment is no comment
    split = csmetrics.survey_metrics(frame, by="survey")
    assert values(split, "response_rate", survey="nps") == {JAN: 0.5}


def test_each_survey_type_feeds_only_its_own_metrics():
    frame = csmetrics.survey_metrics(table(answers("nps", [10, 0]), answers("csat", [5]), answers("ces", [2])))
    assert values(frame, "nps") == {JAN: 0.0}
    assert values(frame, "csat") == {JAN: 1.0}
    assert values(frame, "ces") == {JAN: 2.0}
    assert np.isnan(values(frame, "cxi")[JAN])


def test_empty_period_is_nan_not_error():
    rows = answers("nps", [10]) + answers("nps", [0], at="2024-03-10")
    frame = csmetrics.survey_metrics(table(rows))
    assert np.isnan(values(frame, "nps")[FEB]) and values(frame, "promoters")[FEB] == 0
    assert np.isnan(values(frame, "nps", "ci_low")[FEB])


def test_followups_ordered_by_current_mrr():
    surveys = table(answers("nps", [3, 9, 6]), answers("csat", [2, 4]))
    surveys["customer_id"] = [1, 2, 3, 4, 5]
    surveys["comment"] = ["slow", "nice", "meh", "broken", "fine"]
    b = billing(line(1, JAN, FEB, 10), line(3, JAN, FEB, 500), line(4, JAN, FEB, 50))
    out = csmetrics.followups(surveys, billing=b)
    assert out["customer_id"].tolist() == [3, 4, 1]  # detractors 1 and 3, unhappy CSAT 4
    assert out["mrr"].tolist() == [500, 50, 10]
    assert out["comment"].tolist() == ["meh", "broken", "slow"]
    no_billing = csmetrics.followups(surveys)
    assert set(no_billing["customer_id"]) == {1, 3, 4} and "mrr" not in no_billing


def test_compare_periods_hand_computed():
    # CSAT 40/100 in January, 60/100 in February: z = 2.828, p = 0.0047
    rows = answers("csat", [5] * 40 + [1] * 60) + answers("csat", [5] * 60 + [1] * 40, at="2024-02-10")
    frame = csmetrics.survey_metrics(table(rows))
    change = csmetrics.compare_periods(frame, "csat")
    change.index = change["period"].dt.strftime("%Y-%m-%d")
    assert np.isnan(change.loc[JAN, "previous"])
    assert change.loc[FEB, "change"] == pytest.approx(0.2)
    assert change.loc[FEB, "z"] == pytest.approx(2.8284, abs=1e-4) and bool(change.loc[FEB, "significant"])
    # NPS: 50/30/20 then 30/30/40, adjusted-Wald variances of both periods
    rows = answers("nps", [10] * 50 + [7] * 30 + [0] * 20) + answers("nps", [10] * 30 + [7] * 30 + [0] * 40, at="2024-02-10")
    nps = csmetrics.compare_periods(csmetrics.survey_metrics(table(rows)), "nps")
    p1, d1 = 50.75 / 103, 20.75 / 103
    p2, d2 = 30.75 / 103, 40.75 / 103
    v1 = (p1 + d1 - (p1 - d1) ** 2) / 103
    v2 = (p2 + d2 - (p2 - d2) ** 2) / 103
    assert nps["z"].iloc[1] == pytest.approx(((p2 - d2) - (p1 - d1)) / np.sqrt(v1 + v2))
    assert nps["change"].iloc[1] == pytest.approx(-40.0) and bool(nps["significant"].iloc[1])
    with pytest.raises(ValueError):
        csmetrics.compare_periods(frame, "ces")


@st.composite
def survey_tables(draw):
    rows = []
    base = pd.Timestamp("2024-01-01", tz="UTC")
    for i in range(draw(st.integers(1, 60))):
        survey = draw(st.sampled_from(["nps", "csat", "ces", "cxi"]))
        low, high = {"nps": (0, 10), "csat": (1, 5), "ces": (1, 7), "cxi": (1, 5)}[survey]
        score = draw(st.one_of(st.none(), st.integers(low, high)))
        sent = base + pd.Timedelta(hours=draw(st.integers(0, 24 * 80)))
        rows.append({"response_id": i, "customer_id": draw(st.integers(1, 5)), "survey": survey, "score": score,
                     "sent_at": sent, "responded_at": None if score is None else sent + pd.Timedelta(hours=draw(st.integers(0, 300))),
                     "component": draw(st.sampled_from(["effort", "empathy", "understanding", "efficiency"])) if survey == "cxi" else None,
                     "touchpoint": draw(st.sampled_from(["web", "support", None])),
                     "comment": draw(st.sampled_from([None, "", "text"]))})  # fmt: skip
    return pd.DataFrame(rows)


SETTINGS = settings(max_examples=50, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@SETTINGS
@given(survey_tables())
def test_property_ranges_and_intervals(surveys):
    frame = csmetrics.survey_metrics(surveys)
    wide = csmetrics.to_wide(frame)
    assert wide["nps"].dropna().between(-100, 100).all()
    assert wide["cxi"].dropna().between(-100, 100).all()
    for rate in ("csat", "ces_easy_rate", "response_rate", "comment_rate"):
        assert wide[rate].dropna().between(0, 1).all(), rate
    csat = frame[(frame["metric"] == "csat") & frame["value"].notna()]
    assert ((csat["ci_low"] <= csat["value"] + 1e-12) & (csat["value"] <= csat["ci_high"] + 1e-12)).all()
    nps = frame[(frame["metric"] == "nps") & frame["value"].notna()]
    assert (nps["ci_low"] <= nps["ci_high"]).all()


@SETTINGS
@given(survey_tables(), st.integers(0, 2**16))
def test_property_segments_and_splits_recombine(surveys, seed):
    whole = csmetrics.survey_metrics(surveys)
    by_touchpoint = csmetrics.reaggregate(csmetrics.survey_metrics(surveys, by="touchpoint")).set_index(["period", "metric"])
    expected = whole.set_index(["period", "metric"])
    for metric in ("nps", "csat", "ces", "ces_easy_rate", "response_rate", "comment_rate", "promoters"):
        a = by_touchpoint.xs(metric, level="metric")[["value", "numerator", "denominator"]]
        b = expected.xs(metric, level="metric")[["value", "numerator", "denominator"]]
        pd.testing.assert_frame_equal(a, b, check_exact=False, rtol=1e-9, atol=1e-9)
    prepared, context = survey_family.prepare(csmetrics.validate(surveys, "surveys"), by="touchpoint")
    mask = np.random.default_rng(seed).random(len(prepared)) < 0.5
    parts = [survey_family.partial(prepared[m], context) for m in (mask, ~mask)]
    split = survey_family.finalize(survey_family.combine(parts, context.by, survey_family.PARTIAL_COLUMNS), context)
    pd.testing.assert_frame_equal(split, csmetrics.survey_metrics(surveys, by="touchpoint"))
